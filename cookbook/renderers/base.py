"""The Renderer protocol: conversations -> tokens + per-token loss weights.

Same public surface and semantics as ``tinker_cookbook.renderers.base.Renderer`` (0.5.8), with
one deliberate difference: weights are ``numpy`` arrays, not ``torch`` tensors, so the renderer
and parity path needs no torch (``torch.from_numpy(weights)`` converts without a copy).

The supervised half (``build_supervised_example(s)``, segments and weights) lives in
:mod:`cookbook.renderers.supervised_example`, which :class:`Renderer` mixes in; its names are
importable from here too, where the reference keeps them.
"""

from __future__ import annotations

import pickle
from abc import ABC, abstractmethod
from collections.abc import Iterator

import tinker

from cookbook.exceptions import RendererError
from cookbook.renderers.encoding import encode_text
from cookbook.renderers.openai_format import (
    add_openai_tool_fields,
    openai_message_with_inline_thinking,
    openai_message_with_reasoning,
)
from cookbook.renderers.supervised_example import (
    OUTPUT_IS_TRAINED,
    Segment,
    SegmentKind,
    SupervisedExampleMixin,
    _last_user_index,
)
from cookbook.renderers.types import (
    Message,
    ParseTermination,
    RenderContext,
    RenderedMessage,
    Role,
    ToolSpec,
    TrainOnWhat,
    text_chunk,
)
from cookbook.tokenizers import Tokenizer


class Renderer(SupervisedExampleMixin, ABC):
    """Base class of every renderer; subclasses implement the three abstract methods."""

    tokenizer: Tokenizer
    disables_thinking: bool = False
    # Whether ``_encode`` lets the tokenizer add its special tokens (BOS...): the reference's
    # Kimi K2 renderer calls ``tokenizer.encode(text)`` with the defaults; the others do not.
    _encode_adds_special_tokens: bool = False
    supports_streaming: bool = False

    # Pickle metadata, stamped by get_renderer(); class-level so subclasses that skip
    # super().__init__() still have them.
    _renderer_name: str | None = None
    _model_name: str | None = None
    _has_image_processor: bool = False

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer

    def __reduce__(self) -> tuple:
        """Pickle as (renderer name, model name): unpickling rebuilds the renderer through
        get_renderer() over the (cached) tokenizer, as the reference does."""
        if self._renderer_name is None or self._model_name is None:
            raise pickle.PicklingError(
                f"Cannot pickle {type(self).__name__}: _renderer_name or _model_name not set. "
                "Renderers must be created via get_renderer() to be pickleable, "
                "or set _renderer_name and _model_name manually."
            )
        return (
            _unpickle_renderer,
            (self._renderer_name, self._model_name, self._has_image_processor),
        )

    def __copy__(self) -> Renderer:
        """An attribute-for-attribute copy (the batch renderer copies renderers to hook their
        encoders), not a rebuild through ``__reduce__``: the reference's copy.copy goes through
        pickling's rebuild and so fails on a renderer that get_renderer did not make."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        return clone

    @property
    def has_extension_property(self) -> bool:
        """True if each successive generation prompt is a token prefix of the next."""
        return False

    def _encode(self, text: str) -> list[int]:
        """Encode message text; with ``_encode_split``, the only tokenizer calls renderers make,
        so the batch path (``renderers/batch.py``) can serve both from one batched encode.

        ``tokenizer.encode(text, add_special_tokens=self._encode_adds_special_tokens)`` through
        the direct route of ``renderers/encoding.py``: same ids, without ``transformers``'
        per-call overhead."""
        return encode_text(
            self.tokenizer,
            text,
            add_special_tokens=self._encode_adds_special_tokens,
            split_special_tokens=None,
        )

    def _encode_fixed(self, text: str, *, split: bool = False) -> list[int]:
        """``_encode`` (``_encode_split`` if ``split``) for text that recurs across
        conversations: what the renderer writes the same way every time (role headers, a
        built-in system prompt, a header carrying a fixed preamble) and system messages (a
        dataset's rows share a few system prompts). Such text is encoded once per tokenizer (up
        to ``encoding.FIXED_TEXT_CHARS``). A subclass that overrides the hook, or a copy whose
        hook is replaced (the batch path's recording copies), is asked each time."""
        if split:
            if type(self)._encode_split is not Renderer._encode_split or (
                "_encode_split" in self.__dict__
            ):
                return self._encode_split(text)
        elif type(self)._encode is not Renderer._encode or "_encode" in self.__dict__:
            return self._encode(text)
        return encode_text(
            self.tokenizer,
            text,
            add_special_tokens=False if split else self._encode_adds_special_tokens,
            split_special_tokens=True if split else None,
            fixed=True,
        )

    def _encode_split(self, text: str) -> list[int]:
        """Encode text whose special-token strings must stay text (a user typing ``<|im_end|>``
        must not close the turn): special-token parsing off for this call only."""
        return encode_text(
            self.tokenizer, text, add_special_tokens=False, split_special_tokens=True
        )

    @property
    def _bos_tokens(self) -> list[int]:
        return []

    @abstractmethod
    def get_stop_sequences(self) -> list[str] | list[int]: ...

    @abstractmethod
    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage: ...

    @abstractmethod
    def parse_response(self, response: list[int]) -> tuple[Message, ParseTermination]: ...

    # -- streaming parse (cookbook/renderers/streaming.py) -----------------------------------

    def _normalize_response_tokens(self, response: list[int]) -> list[int]:
        """Restore what the generation prompt prefilled, so parsing sees the whole turn."""
        return response

    @property
    def _end_message_token(self) -> int:
        raise NotImplementedError(
            f"{type(self).__name__} must define _end_message_token to support streaming"
        )

    def _parse_response_for_streaming(
        self, response: list[int]
    ) -> tuple[Message, ParseTermination]:
        """The Message a streaming parse ends with; renderers whose parse_response stops at a
        missing stop token override this to parse the content anyway."""
        return self.parse_response(response)

    def parse_response_streaming(self, response: list[int]) -> Iterator[MessageDelta]:
        """A header, text/thinking deltas as the tokens arrive, then the complete Message;
        NotImplementedError unless the renderer sets ``supports_streaming``."""
        return streaming.parse_response_streaming(self, response)

    def create_conversation_prefix_with_tools(
        self, tools: list[ToolSpec], system_prompt: str = ""
    ) -> list[Message]:
        raise NotImplementedError(f"{type(self).__name__} does not support tool calling")

    def to_openai_message(self, message: Message) -> dict:
        """The message in OpenAI chat format, as ``apply_chat_template`` and OpenAI APIs take it.

        Thinking is written inline as ``<think>...</think>``; renderers whose templates read a
        separate ``reasoning_content`` field override this.
        """
        return openai_message_with_inline_thinking(message)

    # -- generation -----------------------------------------------------------------------

    def _get_generation_suffix(self, role: Role, ctx: RenderContext) -> list[int]:
        rendered = self.render_message(Message(role=role, content=""), ctx)
        return list(rendered.header.tokens) if rendered.header else []

    def _contexts(self, messages: list[Message], turn_start: int) -> list[RenderContext]:
        last_user = _last_user_index(messages)
        n = len(messages)
        # Positional: (idx, is_last, prev_message, next_message, last_user_index,
        # in_last_assistant_turn); keywords cost a tenth of the loop.
        return [
            RenderContext(
                idx,
                idx == n - 1,
                messages[idx - 1] if idx > 0 else None,
                messages[idx + 1] if idx + 1 < n else None,
                last_user,
                idx >= turn_start,
            )
            for idx in range(n)
        ]

    def build_generation_prompt(
        self, messages: list[Message], role: Role = "assistant", prefill: str | None = None
    ) -> tinker.ModelInput:
        """Tokens to sample the next ``role`` message from (plus optional prefill text)."""
        chunks: list[tinker.ModelInputChunk] = []
        if self._bos_tokens:
            chunks.append(text_chunk(self._bos_tokens))
        contexts = self._contexts(messages, self._last_assistant_turn_start_index(messages))
        for message, ctx in zip(messages, contexts, strict=True):
            rendered = self.render_message(message, ctx)
            # Empty text chunks are dropped: the sampler rejects them with a 400.
            if rendered.header and _non_empty(rendered.header):
                chunks.append(rendered.header)
            chunks.extend(chunk for chunk in rendered.output if _non_empty(chunk))
        suffix_ctx = RenderContext(
            idx=len(messages),
            is_last=True,
            prev_message=messages[-1] if messages else None,
            last_user_index=_last_user_index(messages),
            in_last_assistant_turn=True,
        )
        suffix = self._get_generation_suffix(role, suffix_ctx)
        if suffix:
            chunks.append(text_chunk(suffix))
        if prefill:
            chunks.append(text_chunk(self._encode(prefill)))
        return tinker.ModelInput(chunks=chunks)

    def _last_assistant_turn_start_index(self, messages: list[Message]) -> int:
        return _last_user_index(messages) + 1


def _non_empty(chunk: tinker.ModelInputChunk) -> bool:
    return not isinstance(chunk, tinker.EncodedTextChunk) or bool(chunk.tokens)


def parse_response_for_stop_token(
    response: list[int], tokenizer: Tokenizer, stop_token: int
) -> tuple[Message, ParseTermination]:
    """Split a sampled response on its single stop token; none is MALFORMED, two an error."""
    count = response.count(stop_token)
    if count == 0:
        return Message(role="assistant", content=str(tokenizer.decode(response))), (
            ParseTermination.MALFORMED
        )
    if count == 1:
        text = str(tokenizer.decode(response[: response.index(stop_token)]))
        return Message(role="assistant", content=text), ParseTermination.STOP_SEQUENCE
    raise RendererError(
        f"When parsing response, expected to split into 1 or 2 pieces using stop tokens, but got "
        f"{count}. You probably are using the wrong stop tokens when sampling"
    )


def _unpickle_renderer(renderer_name: str, model_name: str, has_image_processor: bool) -> Renderer:
    """Rebuild a pickled renderer from its name and model name (tokenizers are cached)."""
    from cookbook.image_processing_utils import get_image_processor
    from cookbook.renderers import get_renderer
    from cookbook.tokenizer_utils import get_tokenizer

    image_processor = get_image_processor(model_name) if has_image_processor else None
    return get_renderer(
        renderer_name, get_tokenizer(model_name), image_processor, model_name=model_name
    )


# The reference's base module holds all of these; code importing them from here keeps working.
from cookbook.renderers import streaming  # noqa: E402
from cookbook.renderers.content import (  # noqa: E402
    ParseFailureKind,
    classify_parse_failure,
    content_to_jsonable,
    ensure_list,
    format_content_as_string,
    get_text_content,
    message_to_jsonable,
)
from cookbook.renderers.images import ImageProcessorProtocol, image_to_chunk  # noqa: E402
from cookbook.renderers.parsing import (  # noqa: E402
    PARSE_FAILURE_DETAIL_MAX_CHARS,
    UNTERMINATED_TOOL_BLOCK_ERROR,
    detect_unterminated_tool_block,
    has_thinking,
    parse_content_blocks,
    parse_think_blocks,
    remove_thinking,
)
from cookbook.renderers.streaming import (  # noqa: E402
    MessageDelta,
    ReasoningStreamingParser,
    StreamingMessageHeader,
    StreamingParser,
    StreamingTextDelta,
    StreamingThinkingDelta,
    Utf8TokenDecoder,
    _longest_matching_suffix_prefix,
)
from cookbook.renderers.types import (  # noqa: E402
    Content,
    ContentPart,
    ImagePart,
    TextPart,
    ThinkingPart,
    ToolCall,
    UnparsedToolCall,
    ensure_text,
)

__all__ = [
    "OUTPUT_IS_TRAINED",
    "PARSE_FAILURE_DETAIL_MAX_CHARS",
    "UNTERMINATED_TOOL_BLOCK_ERROR",
    "Content",
    "ContentPart",
    "ImagePart",
    "ImageProcessorProtocol",
    "Message",
    "MessageDelta",
    "ParseFailureKind",
    "ParseTermination",
    "ReasoningStreamingParser",
    "RenderContext",
    "RenderedMessage",
    "Renderer",
    "Role",
    "Segment",
    "SegmentKind",
    "StreamingMessageHeader",
    "StreamingParser",
    "StreamingTextDelta",
    "StreamingThinkingDelta",
    "TextPart",
    "ThinkingPart",
    "ToolCall",
    "ToolSpec",
    "TrainOnWhat",
    "UnparsedToolCall",
    "Utf8TokenDecoder",
    "_longest_matching_suffix_prefix",
    "add_openai_tool_fields",
    "classify_parse_failure",
    "content_to_jsonable",
    "detect_unterminated_tool_block",
    "ensure_list",
    "ensure_text",
    "format_content_as_string",
    "get_text_content",
    "has_thinking",
    "image_to_chunk",
    "message_to_jsonable",
    "openai_message_with_reasoning",
    "parse_content_blocks",
    "parse_response_for_stop_token",
    "parse_think_blocks",
    "remove_thinking",
]
