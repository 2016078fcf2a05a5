"""The batch renderer's template fast path: plain conversations of renderers whose text per
message is a fixed frame around the message's own content, written as data.

Why: the generic path runs the renderer's own Python twice per message (a recording pass and
the real one), which on short chat turns costs as much as encoding the text. A renderer whose
plain message (string content, no tool calls or other fields) is ``header`` + ``prefix +
content + suffix`` (+ ``stop_overlap`` when last) needs none of it: its texts are planned here,
encoded in one batch, and each distinct text becomes one shared chunk.

One :class:`ChatTemplate` per renderer class (exact types: a subclass may override anything),
each proven equal to the renderer by ``tests/test_batch.py`` and ``tests/test_batch_parity.py``
(every golden case and generated conversations, errors included). A conversation with anything
else (a multimodal or structured content, tool calls, a role the template does not list) is
handed to the renderer itself, in order, so errors are its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import tinker

from cookbook.renderers import role_colon
from cookbook.renderers.base import Renderer
from cookbook.renderers.batch_memo import TokenMemo, memo_view
from cookbook.renderers.kimi_k2 import KimiK2Renderer
from cookbook.renderers.llama3 import Llama3Renderer
from cookbook.renderers.types import Message, TrainOnWhat, text_chunk

Example = tuple[tinker.ModelInput, np.ndarray]

# (header, output, stop_overlap) text of one message; the stop_overlap is used only when the
# message is the conversation's last, as Renderer.supervised_segments does.
MessageTexts = tuple[str, str, str | None]

# Fields a plain message may have: any other (tool_calls, name, thinking...) may change the text.
_PLAIN_FIELDS = frozenset({"role", "content", "trainable"})


@dataclass(frozen=True)
class MessageTemplate:
    """How the renderer writes a plain message of one role."""

    header: str
    """``str.format`` pattern over ``{role}`` and ``{Role}`` (``role.capitalize()``)."""
    prefix: str = ""
    suffix: str = ""
    stop_overlap: str | None = None


@dataclass(frozen=True)
class ChatTemplate:
    roles: Mapping[str, MessageTemplate]
    """By role; ``"*"`` for every role not listed (a template without it takes no other)."""
    default_system_attribute: str | None = None
    """The renderer attribute holding the system prompt it puts first when the conversation
    does not open with a system message (Kimi K2's ``DEFAULT_SYSTEM_PROMPT``)."""

    def message_texts(self, message: Message, customized: bool) -> MessageTexts:
        """Raises on anything not plain; the caller then lets the renderer render it."""
        if ("trainable" in message) != customized or not _PLAIN_FIELDS.issuperset(message):
            raise ValueError("not a plain message")
        content, role = message["content"], message["role"]
        if not isinstance(content, str) or not isinstance(role, str):
            raise ValueError("not a plain message")
        template = self.roles.get(role) or self.roles["*"]
        header = template.header.format(role=role, Role=role.capitalize())
        return header, template.prefix + content + template.suffix, template.stop_overlap

    def conversation(self, renderer: Renderer, messages: list[Message]) -> list[Message]:
        """The messages the renderer renders: the default system message put first if due."""
        if not messages:
            raise ValueError("empty conversation")  # the renderer's own business
        if self.default_system_attribute is None or messages[0]["role"] == "system":
            return messages
        prompt = getattr(renderer, self.default_system_attribute)
        return [Message(role="system", content=prompt), *messages]


def _output_is_trained(
    train_on_what: TrainOnWhat, message: Message, is_last: bool, in_last_turn: bool
) -> bool:
    """``Renderer._output_is_trained`` without building a ``RenderContext`` per message."""
    is_assistant = message["role"] == "assistant"
    match train_on_what:
        case TrainOnWhat.LAST_ASSISTANT_MESSAGE:
            return is_last and is_assistant
        case TrainOnWhat.LAST_ASSISTANT_TURN:
            return is_assistant and in_last_turn
        case TrainOnWhat.ALL_ASSISTANT_MESSAGES:
            return is_assistant
        case TrainOnWhat.ALL_MESSAGES | TrainOnWhat.ALL_TOKENS:
            return True
        case TrainOnWhat.ALL_USER_AND_SYSTEM_MESSAGES:
            return message["role"] in ("user", "system")
        case TrainOnWhat.CUSTOMIZED:
            return bool(message.get("trainable", False))
    raise AssertionError(f"unhandled train_on_what: {train_on_what}")


def template_examples(
    template: ChatTemplate,
    renderer: Renderer,
    conversations: Sequence[list[Message]],
    train_on_what: TrainOnWhat,
) -> list[Example]:
    """Examples of plain conversations from the template: texts planned directly, encoded in
    one batch, one chunk per distinct text, weights with numpy."""
    bos = renderer._bos_tokens
    customized = train_on_what == TrainOnWhat.CUSTOMIZED
    plans: list[tuple[list[Message], list[MessageTexts]] | None] = []
    for messages in conversations:
        try:
            rendered = template.conversation(renderer, messages)
            plans.append((rendered, [template.message_texts(m, customized) for m in rendered]))
        except Exception:
            # The renderer raises its own error (type and message) for this conversation, in
            # conversation order; should it not, its own result is used for this one.
            renderer.build_supervised_example(messages, train_on_what)
            plans.append(None)

    memo = TokenMemo(renderer)
    memo.prefetch(text for plan in plans if plan for texts in plan[1] for text in texts if text)
    chunks = {text: text_chunk(ids) for text, ids in memo.ids.items()}
    bos_chunk = text_chunk(list(bos))
    header_weight = int(train_on_what == TrainOnWhat.ALL_TOKENS)
    # Only these two modes can zero a generation prompt (Renderer._first_trained_message_index).
    check_prompt = train_on_what in (
        TrainOnWhat.LAST_ASSISTANT_MESSAGE,
        TrainOnWhat.LAST_ASSISTANT_TURN,
    )
    view: Renderer | None = None

    examples: list[Example] = []
    for messages, plan in zip(conversations, plans, strict=True):
        if plan is None:
            examples.append(renderer.build_supervised_example(messages, train_on_what))
            continue
        rendered, texts = plan
        renderer._warn_if_prefixes_differ(train_on_what)
        last = len(rendered) - 1
        turn_start = renderer._last_assistant_turn_start_index(rendered[:-1])
        conv_chunks = [bos_chunk] if bos else []
        weights: list[int | float] = [0.0] if bos else []
        for i, (message, (header, output, overlap)) in enumerate(zip(rendered, texts, strict=True)):
            trained = int(_output_is_trained(train_on_what, message, i == last, i >= turn_start))
            conv_chunks += (chunks[header], chunks[output])
            weights += (header_weight, trained)
            if overlap is not None and i == last:
                conv_chunks.append(chunks[overlap])
                weights.append(trained)
        lengths = [len(chunk.tokens) for chunk in conv_chunks]
        model_input = tinker.ModelInput.model_construct(chunks=conv_chunks)
        # torch.tensor() of the reference: the BOS weight 0.0 (or no data) makes it float32.
        dtype = np.float32 if bos or not any(lengths) else np.int64
        weight_array = np.repeat(np.array(weights, dtype=dtype), lengths)
        if check_prompt:
            if view is None:
                view = memo_view(renderer, memo)
            weight_array = view._train_after_the_generation_prompt(
                rendered, train_on_what, model_input, weight_array
            )
        examples.append((model_input, weight_array))
    return examples


_LLAMA3 = ChatTemplate(
    {"*": MessageTemplate("<|start_header_id|>{role}<|end_header_id|>\n\n", suffix="<|eot_id|>")}
)

_ROLE_COLON_FRAME = {"prefix": role_colon._CONTENT_PREFIX, "suffix": role_colon._CONTENT_SUFFIX}
_ROLE_COLON = ChatTemplate(
    {
        "assistant": MessageTemplate(
            "{Role}:", **_ROLE_COLON_FRAME, stop_overlap=role_colon._STOP_OVERLAP
        ),
        "*": MessageTemplate(
            "{Role}:", **_ROLE_COLON_FRAME, stop_overlap=role_colon._UNUSED_OVERLAP
        ),
    }
)

# String content never carries reasoning, so history and the last turn alike get the empty
# think block (KimiK2Renderer._assistant_text).
_KIMI_K2 = ChatTemplate(
    {
        "user": MessageTemplate("<|im_user|>user<|im_middle|>", suffix="<|im_end|>"),
        "assistant": MessageTemplate(
            "<|im_assistant|>assistant<|im_middle|>", prefix="<think></think>", suffix="<|im_end|>"
        ),
        "system": MessageTemplate("<|im_system|>system<|im_middle|>", suffix="<|im_end|>"),
    },
    default_system_attribute="DEFAULT_SYSTEM_PROMPT",
)

TEMPLATES: dict[type[Renderer], ChatTemplate] = {
    Llama3Renderer: _LLAMA3,
    role_colon.RoleColonRenderer: _ROLE_COLON,
    KimiK2Renderer: _KIMI_K2,
}

__all__ = ["TEMPLATES", "ChatTemplate", "MessageTemplate", "template_examples"]
