"""Inkling's chat format (``tml_v0``): the reference's integration of ``tml_renderers.v0``.

TMLv0 framing is owned by the ``tml-renderers`` package (a compiled renderer, the same one the
reference delegates to): every message is ``<|message_{author}|><|content_{kind}|>..
<|end_message|>``, a model turn ends with ``<|content_model_end_sampling|>`` (the stop token),
and a system message states the thinking effort. What cookbook owns - and what the goldens
check against the reference - is the integration around it: cookbook messages (text, thinking,
tool calls, images, audio) converted to OpenAI-style messages, the effort message inserted
after the leading system messages, assistant turns outside ``train_on_what`` given zero
training weight, ``(ModelInput, weights)`` built from the spans (``tml_v0_results``), and
replies parsed back into cookbook messages. Plain conversations skip the conversion and are
framed directly (``tml_v0_plain``), token for token as tml_renderers frames them. tml_renderers
is imported lazily (its import pulls in torch).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from importlib import import_module
from typing import Any

import numpy as np
import tinker

from cookbook.renderers.base import Renderer
from cookbook.renderers.tml_media import audio_part_to_openai, normalize_cookbook_media
from cookbook.renderers.tml_v0_batch import PlainBatch
from cookbook.renderers.tml_v0_plain import PlainFrame, assistant_target_indices
from cookbook.renderers.tml_v0_results import (
    example_to_model_input_and_weights,
    parsed_to_cookbook_message,
)
from cookbook.renderers.types import (
    Message,
    ParseTermination,
    RenderContext,
    RenderedMessage,
    Role,
    ToolSpec,
    TrainOnWhat,
)
from cookbook.tokenizers import Tokenizer
from cookbook.tokenizers.tml import (
    SupportsTmlTokenizer,
    TmlTokenizer,
    ensure_tml_renderers_importable,
)

DEFAULT_EFFORT: float = 0.9
"""Thinking effort of prompts and examples unless given; must be in [0, 1)."""
_MINIMUM_TORCH_VERSION = (2, 10)

TmlRenderInput = Any
"""What ``tml_renderers.v0.Renderer`` takes: native ``chat.Message``s, ``OpenAIMessage``s or a
``MessageList`` (typed loosely: tml_renderers is imported lazily)."""

# The reference's private name for it, which its own tests call.
_audio_part_to_openai = audio_part_to_openai


def __getattr__(name: str) -> Any:
    """``tml_v0.torch``, imported on first use rather than with cookbook.renderers."""
    if name == "torch":
        import torch

        return torch
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _chat() -> Any:
    """``tml_renderers.chat`` through this module's ``import_module`` on every call, never
    cached: the reference's own tests replace ``tml_v0.import_module`` with a fake and expect
    every later use to see it (a cached module leaked one test's fake into the next)."""
    return import_module("tml_renderers.chat")


def _validate_torch_version() -> None:
    """tml-renderers needs PyTorch 2.10+; say so before its import fails obscurely."""
    import torch

    try:
        version = tuple(int(p) for p in torch.__version__.split("+", 1)[0].split(".")[:2])
    except (TypeError, ValueError) as exc:
        raise RuntimeError(
            f"TmlV0Renderer could not determine the installed PyTorch version: "
            f"{torch.__version__!r}"
        ) from exc
    if version < _MINIMUM_TORCH_VERSION:
        raise RuntimeError(
            f"TmlV0Renderer requires PyTorch 2.10 or newer; found {torch.__version__}. "
            'Run `pip install "torch>=2.10"`.'
        )


def _is_tml_renderers_input(messages: object) -> bool:
    chat = _chat()
    if isinstance(messages, chat.MessageList):
        return True
    native = (chat.Message, chat.OpenAIMessage)
    return isinstance(messages, list) and all(isinstance(message, native) for message in messages)


def _messages_to_render_input(messages: Sequence[Message] | TmlRenderInput) -> TmlRenderInput:
    """Native tml_renderers input unchanged; cookbook messages as ``OpenAIMessage``s."""
    if _is_tml_renderers_input(messages):
        return messages
    chat = _chat()
    return chat.OpenAIMessage.from_oss_messages(normalize_cookbook_media(messages))


def _cookbook_messages_to_sft_input(
    messages: Sequence[Message] | TmlRenderInput, train_on_what: TrainOnWhat
) -> TmlRenderInput:
    """Render input whose untrained model messages carry zero training weight.

    The weights live on tml_renderers' native messages, so the conversation is expanded
    message by message; an assistant turn outside ``train_on_what`` gets zero-weight metadata
    on every model message it became (thinking, text, tool calls).
    """
    if train_on_what == TrainOnWhat.ALL_ASSISTANT_MESSAGES:
        return _messages_to_render_input(messages)
    if _is_tml_renderers_input(messages):
        raise NotImplementedError(
            "tml_v0 only supports selective train_on_what modes for cookbook/OpenAI message "
            "dictionaries. Pass train_on_what=ALL_ASSISTANT_MESSAGES when using native "
            "tml_renderers.chat.Message, OpenAIMessage, or MessageList inputs."
        )
    chat = _chat()
    converted = chat.OpenAIMessage.from_oss_messages(normalize_cookbook_media(messages))
    targets = set(assistant_target_indices(messages, train_on_what))
    untrained = chat.MessageMetadata(training_metadata=chat.TrainingMetadata(0.0, False))
    flattened: list[Any] = []
    for idx, (message, openai_message) in enumerate(zip(messages, converted, strict=True)):
        natives = list(openai_message.to_messages())
        if message["role"] == "assistant" and idx not in targets:
            natives = [
                native.copy(message_metadata=untrained)
                if native.author.kind == chat.AuthorKind.Model
                else native
                for native in natives
            ]
        flattened.extend(natives)
    return flattened


def _validate_effort(effort: float) -> None:
    if not math.isfinite(effort) or not 0.0 <= effort < 1.0:
        raise ValueError(f"thinking effort must be a finite number in [0, 1), got {effort}")


def _ensure_model_end_sampling(messages: list[Any], chat: Any) -> list[Any]:
    """Close every run of model messages with ``ModelEndSampling`` (idempotent).

    That boundary is the trained stop token: without it a native model turn would train no
    end. ``from_oss_messages`` writes it for dict input; native input may lack it. Only the
    last message of a run decides (an earlier one is followed by a model message), so only its
    content is read: each read copies the message out of tml_renderers.
    """
    model = chat.AuthorKind.Model
    kinds = [message.author.kind for message in messages]
    result: list[Any] = []
    for i, message in enumerate(messages):
        result.append(message)
        if (
            kinds[i] == model
            and (i + 1 == len(messages) or kinds[i + 1] != model)
            and not isinstance(message.content, chat.ModelEndSampling)
        ):
            end = chat.ModelEndSampling()
            result.append(chat.Message(content=end, author=chat.Author(model)))
    return result


def _prepare_sft_input(messages: TmlRenderInput, effort: float) -> list[Any]:
    """Native messages for ``render_for_sft``: expanded, model turns closed, and the effort
    message inserted after the leading system messages - where completion rendering puts it,
    so an example's prompt is the generation prompt token for token."""
    _validate_effort(effort)
    chat = _chat()
    source = messages.messages if isinstance(messages, chat.MessageList) else messages
    natives: list[Any] = []
    for message in source:
        if isinstance(message, chat.OpenAIMessage):
            natives.extend(message.to_messages())
        else:
            natives.append(message)
    natives = _ensure_model_end_sampling(natives, chat)
    # ThinkingEffort counts thousandths; tml_renderers decides how it is written.
    effort_message = chat.Message(
        content=chat.ThinkingEffort(round(effort * 1000)),
        author=chat.Author(chat.AuthorKind.System),
    )
    position = 0
    while position < len(natives) and natives[position].author.kind == chat.AuthorKind.System:
        position += 1
    natives.insert(position, effort_message)
    return natives


def _unwrap_tml_tokenizer(tokenizer: Tokenizer) -> TmlTokenizer:
    if isinstance(tokenizer, SupportsTmlTokenizer):
        return tokenizer.tml_tokenizer
    raise TypeError(
        "TmlV0Renderer requires the TML tokenizer adapter. Use "
        "get_tokenizer('thinkingmachines/Inkling') or another tml-renderers-backed model name."
    )


class TmlV0Renderer(Renderer):
    """Renderer of Inkling models, over ``tml_renderers.v0.Renderer``."""

    supports_streaming = False
    supported_train_on_what = (
        TrainOnWhat.ALL_ASSISTANT_MESSAGES,
        TrainOnWhat.LAST_ASSISTANT_MESSAGE,
        TrainOnWhat.CUSTOMIZED,
    )
    """The modes it renders; the others raise NotImplementedError, as in the reference."""
    renders_whole_conversations = True
    """No per-message rendering: the batch renderer calls ``_batch_examples``."""

    def __init__(self, tokenizer: Tokenizer):
        super().__init__(tokenizer)
        _validate_torch_version()
        ensure_tml_renderers_importable()
        self._tml_tokenizer = _unwrap_tml_tokenizer(tokenizer)
        self._tml_renderer = import_module("tml_renderers.v0").Renderer(self._tml_tokenizer)
        self._plain = PlainFrame(self._tml_tokenizer, self._rendered_ids)
        self._plain_batch = PlainBatch(self._plain)

    @property
    def has_extension_property(self) -> bool:
        """Messages are framed independently (nothing stripped or re-headered by position)."""
        return True

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        raise NotImplementedError(
            "TmlV0Renderer renders whole conversations through tml_renderers.v0.Renderer"
        )

    def supervised_segments(self, messages: list[Message], train_on_what: TrainOnWhat) -> list:
        raise NotImplementedError(
            "TmlV0Renderer has no per-message segments: tml_renderers renders whole conversations"
        )

    @staticmethod
    def _validate_generation_options(role: Role, prefill: str | None) -> None:
        if role != "assistant":
            raise NotImplementedError("tml_v0 only supports assistant generation")
        if prefill is not None:
            raise NotImplementedError(
                "TMLv0 sampling does not accept partial assistant messages. Pass complete "
                "messages and let the model start a new assistant response."
            )

    def build_generation_prompt(
        self,
        messages: list[Message] | TmlRenderInput,
        role: Role = "assistant",
        prefill: str | None = None,
        effort: float = DEFAULT_EFFORT,
    ) -> tinker.ModelInput:
        """The prompt, with tml_renderers' system message stating ``effort`` (in [0, 1))."""
        self._validate_generation_options(role, prefill)
        _validate_effort(effort)
        spans, _parser = self._tml_renderer.render_for_completion_with_effort(
            _messages_to_render_input(messages), effort
        )
        return import_module("tml_renderers.tinker").token_spans_to_tinker_model_input(spans)

    def build_supervised_examples(
        self,
        messages: list[Message] | TmlRenderInput,
        train_on_what: TrainOnWhat = TrainOnWhat.ALL_ASSISTANT_MESSAGES,
        effort: float = DEFAULT_EFFORT,
    ) -> list[tuple[tinker.ModelInput, np.ndarray]]:
        """Examples (unshifted input, float32 weights) at ``effort``, whose prompt part equals
        ``build_generation_prompt(..., effort=effort)``; one unless tml_renderers splits.
        Plain conversations are framed directly (``tml_v0_plain``), the rest by tml_renderers."""
        plain = self._plain.examples(messages, train_on_what, effort)
        if plain is not None:
            return plain
        return self._tml_renderers_examples(messages, train_on_what, effort)

    def _tml_renderers_examples(
        self,
        messages: list[Message] | TmlRenderInput,
        train_on_what: TrainOnWhat,
        effort: float,
    ) -> list[tuple[tinker.ModelInput, np.ndarray]]:
        render_input = _cookbook_messages_to_sft_input(messages, train_on_what)
        return [
            example_to_model_input_and_weights(example)
            for example in self._tml_renderer.render_for_sft(
                _prepare_sft_input(render_input, effort)
            )
        ]

    def _rendered_ids(self, messages: list[Message], effort: float) -> list[int]:
        """The ids of tml_renderers' one example of ``messages``, every assistant trained."""
        ((example, _weights),) = self._tml_renderers_examples(
            messages, TrainOnWhat.ALL_ASSISTANT_MESSAGES, effort
        )
        return example.to_ints()

    def build_supervised_example(
        self,
        messages: list[Message] | TmlRenderInput,
        train_on_what: TrainOnWhat = TrainOnWhat.ALL_ASSISTANT_MESSAGES,
        effort: float = DEFAULT_EFFORT,
    ) -> tuple[tinker.ModelInput, np.ndarray]:
        examples = self.build_supervised_examples(messages, train_on_what, effort=effort)
        if len(examples) != 1:
            raise NotImplementedError(
                "tml_v0 produced multiple SFT examples; use build_supervised_examples"
            )
        return examples[0]

    def _batch_examples(
        self, conversations: Sequence[list[Message]], train_on_what: TrainOnWhat, plain: bool
    ) -> list[tuple[tinker.ModelInput, np.ndarray]]:
        """``build_supervised_example`` of each conversation, for the batch renderer: the plain
        ones framed together (``tml_v0_batch``) unless ``plain`` is False (a method replaced on
        the instance) or this is a subclass (which may override anything), the rest in order."""
        planned = (
            self._plain_batch.examples(conversations, train_on_what, DEFAULT_EFFORT)
            if plain and type(self) is TmlV0Renderer
            else [None] * len(conversations)
        )
        return [
            self.build_supervised_example(messages, train_on_what) if example is None else example
            for example, messages in zip(planned, conversations, strict=True)
        ]

    def get_stop_sequences(self) -> list[int]:
        stop = self._tml_renderer.stop()
        if not isinstance(stop, list) or not all(isinstance(token, int) for token in stop):
            raise TypeError(f"Expected tml_renderers.v0 stop() to return list[int], got {stop!r}")
        return stop

    def create_conversation_prefix_with_tools(
        self, tools: list[ToolSpec], system_prompt: str = ""
    ) -> list[Message]:
        """The system prompt, then a ``tool_declare`` message of the tools as compact OpenAI
        function JSON, which tml_renderers renders as its tool declaration."""
        prefix: list[Message] = []
        if system_prompt:
            prefix.append(Message(role="system", content=system_prompt))
        if tools:
            declared = [
                {
                    "type": "function",
                    "function": {
                        "name": tool["name"],
                        "description": tool["description"],
                        "parameters": tool["parameters"],
                    },
                }
                for tool in tools
            ]
            prefix.append(
                Message(role="tool_declare", content=json.dumps(declared, separators=(",", ":")))
            )
        return prefix

    def _decode_or_empty(self, response: list[int]) -> str:
        try:
            return str(self.tokenizer.decode(response))
        except Exception:  # ids the tokenizer cannot decode: nothing readable to return
            return ""

    def parse_response(self, response: list[int]) -> tuple[Message, ParseTermination]:
        """The reply (which writes its own message headers) through tml_renderers' parser.

        A dropped ``ModelEndSampling`` is the stop; without it the reply was truncated
        (MALFORMED). A reply the parser rejects (cut mid-structure) is MALFORMED with its
        decoded text, never an exception.
        """
        _spans, parser = self._tml_renderer.render_for_completion([])
        parse_error = import_module("tml_renderers.v0").ParseError
        try:
            parsed = parser.parse_tokens(response)
        except parse_error:
            message = Message(role="assistant", content=self._decode_or_empty(response))
            return message, ParseTermination.MALFORMED
        chat = _chat()
        content = [m for m in parsed if not isinstance(m.content, chat.ModelEndSampling)]
        stopped = len(content) != len(parsed)
        message = parsed_to_cookbook_message(content) if content else None
        if message is None:
            message = Message(role="assistant", content=self._decode_or_empty(response))
        return message, ParseTermination.STOP_SEQUENCE if stopped else ParseTermination.MALFORMED
