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

Where the frame depends on more than the role and first place, a template also names the
renderer's own reshaping of the conversation (``reshape``) and picks a message template per
message (``choose``: the last message, the previous role, the last user turn). Family modules
(``batch_templates_kimi.py``, ``batch_templates_deepseek.py``) hold such templates;
``batch.TEMPLATES`` joins them with the ones here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import tinker

from cookbook.renderers import deepseek_v3, role_colon
from cookbook.renderers.base import OUTPUT_IS_TRAINED, Renderer
from cookbook.renderers.batch_memo import TokenMemo, memo_view
from cookbook.renderers.kimi_k2 import KimiK2Renderer
from cookbook.renderers.llama3 import Llama3Renderer
from cookbook.renderers.types import Message, TrainOnWhat, model_input, text_chunk

Example = tuple[tinker.ModelInput, np.ndarray]

# A chunk's text, or texts whose ids the renderer concatenates (encoded one by one, as it does).
Texts = str | tuple[str, ...]


class MessageTexts(NamedTuple):
    """What one message's chunks are made of."""

    header: Texts | None
    output: Texts
    stop_overlap: str | None
    """Used only when the message is the conversation's last, as Renderer.supervised_segments
    does."""
    split: tuple[str, str] | None = None
    """(renderer method, header text) where ``output`` is header and output in one text."""
    drop_empty_output: bool = False


# Fields a plain message may have: any other (tool_calls, name, thinking...) may change the text.
_PLAIN_FIELDS = frozenset({"role", "content", "trainable"})


@dataclass(frozen=True)
class MessageTemplate:
    """How the renderer writes a plain message of one role."""

    header: Texts | None
    """``str.format`` pattern(s) over ``{role}`` and ``{Role}`` (``role.capitalize()``); several
    where the renderer joins their ids; None: no header chunk (DeepSeek's leading system)."""
    prefix: str = ""
    suffix: str = ""
    stop_overlap: str | None = None
    end_token: str | None = None
    """A special token whose id the renderer appends to the output ids, not to the text,
    unless the content is empty (DeepSeek's end of sentence)."""
    end_on_empty: bool = False
    """Append ``end_token`` after empty content too (DeepSeek V4.1)."""
    lead: str | None = None
    """Text encoded on its own, its ids put before the output's (DeepSeek V3's ``<think></think>``
    on a last turn that did not reason)."""
    split: str | None = None
    """A renderer method ``(prefix, ids) -> int``: the header text is not encoded on its own but
    as the start of the output text, and the ids split where the method says (DeepSeek V4.1's
    system turn, where BPE merges across the boundary)."""
    drop_empty_output: bool = False
    """No output chunk where the output has no ids (DeepSeek V4.1 leaves empty chunks out)."""


@dataclass(frozen=True)
class ChatTemplate:
    roles: Mapping[str, MessageTemplate]
    """By role; ``"*"`` for every role not listed (a template without it takes no other)."""
    first_roles: Mapping[str, MessageTemplate] = field(default_factory=dict)
    """By role, for the conversation's first message, looked up before ``roles``."""
    default_system_attribute: str | None = None
    """The renderer attribute holding the system prompt it puts first when the conversation
    does not open with a system message (Kimi K2's ``DEFAULT_SYSTEM_PROMPT``)."""
    refused: tuple[str, ...] = ()
    """Content containing any of these is not plain (DeepSeek strips think blocks from it)."""
    reshape: Callable[[Renderer, list[Message]], list[Message]] | None = None
    """The renderer's own reshaping of the caller's conversation into the messages it renders
    (DeepSeek V4.1's template turns); may raise where the template does not apply."""
    choose: Callable[[Renderer, list[Message]], Sequence[str]] | None = None
    """Keys into ``roles``, one per rendered message, where the template depends on more than
    the role and first place (the last message, the previous role, the last user turn); may
    raise where it does not apply. Replaces the ``first_roles``/``roles``/``"*"`` lookup."""
    scope: str | None = None
    """A renderer method: a context manager over the caller's messages within which the
    renderer renders them (DeepSeek V4.1's ``_template_turns``, which fixes where reasoning is
    dropped); the generation-prompt check runs inside it, as in the renderer."""

    def message_texts(
        self,
        message: Message,
        customized: bool,
        first: bool,
        template: MessageTemplate | None = None,
    ) -> MessageTexts:
        """Raises on anything not plain; the caller then lets the renderer render it."""
        if ("trainable" in message) != customized or not _PLAIN_FIELDS.issuperset(message):
            raise ValueError("not a plain message")
        content, role = message["content"], message["role"]
        if not isinstance(content, str) or not isinstance(role, str):
            raise ValueError("not a plain message")
        if any(text in content for text in self.refused):
            raise ValueError("not a plain message")
        if template is None:
            template = (first and self.first_roles.get(role)) or self.roles.get(role)
        if template is None:
            template = self.roles["*"]
        header = template.header
        if isinstance(header, str):
            header = header.format(role=role, Role=role.capitalize())
        elif header is not None:
            header = tuple(part.format(role=role, Role=role.capitalize()) for part in header)
        output: Texts = template.prefix + content + template.suffix
        if template.split is not None:
            assert isinstance(header, str)
            split = (template.split, header)
            return MessageTexts(None, header + output, None, split, template.drop_empty_output)
        if template.lead is not None:
            output = (template.lead, output)
        if template.end_token is not None and (content or template.end_on_empty):
            output = (*((output,) if isinstance(output, str) else output), template.end_token)
        return MessageTexts(header, output, template.stop_overlap, None, template.drop_empty_output)

    def plan(
        self, renderer: Renderer, messages: list[Message], customized: bool
    ) -> tuple[list[Message], list[MessageTexts]]:
        """The rendered messages and their texts; raises where the conversation is not plain."""
        rendered = self.conversation(renderer, messages)
        texts = self.message_texts
        if self.choose is None:
            return rendered, [texts(m, customized, i == 0) for i, m in enumerate(rendered)]
        keys = self.choose(renderer, rendered)
        roles = self.roles
        return rendered, [
            texts(m, customized, i == 0, roles[key])
            for i, (m, key) in enumerate(zip(rendered, keys, strict=True))
        ]

    def usable(self, renderer: Renderer) -> bool:
        """Whether each end token is one id, as the renderer unpacks it (else it raises)."""
        ends = {t.end_token for t in (*self.roles.values(), *self.first_roles.values())}
        return all(len(renderer._encode(end)) == 1 for end in ends if end is not None)

    def conversation(self, renderer: Renderer, messages: list[Message]) -> list[Message]:
        """The messages the renderer renders: the default system message put first if due."""
        if not messages:
            raise ValueError("empty conversation")  # the renderer's own business
        if self.reshape is not None:
            return self.reshape(renderer, messages)
        if self.default_system_attribute is None or messages[0]["role"] == "system":
            return messages
        prompt = getattr(renderer, self.default_system_attribute)
        return [Message(role="system", content=prompt), *messages]


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
    is_trained = OUTPUT_IS_TRAINED[train_on_what]
    # A plan: the rendered messages and their texts; or, for a conversation that is not plain,
    # the renderer's own example (or its error, raised in conversation order).
    plans: list[tuple[list[Message], list[MessageTexts], list[Message]] | Example] = []
    for messages in conversations:
        try:
            plans.append((*template.plan(renderer, messages, customized), messages))
        except Exception:
            plans.append(renderer.build_supervised_example(messages, train_on_what))

    memo = TokenMemo(renderer)
    memo.prefetch(
        text
        for plan in plans
        if isinstance(plan[0], list)
        for message_texts in plan[1]
        for texts in message_texts[:3]
        if texts is not None
        for text in ((texts,) if isinstance(texts, str) else texts)
    )
    chunks: dict[Texts, tinker.EncodedTextChunk] = {
        text: text_chunk(ids) for text, ids in memo.ids.items()
    }

    def chunk(texts: Texts) -> tinker.EncodedTextChunk:
        found = chunks.get(texts)
        if found is None:  # several texts: their ids joined, once per distinct tuple
            ids: list[int] = []
            for text in texts:
                ids += memo.ids[text]  # list.extend: no Python step per token
            found = chunks[texts] = text_chunk(ids)
        return found

    split_chunks: dict[tuple[str, str], tuple[tinker.EncodedTextChunk, ...]] = {}

    def split_chunk(text: str, method: str, prefix: str) -> tuple[tinker.EncodedTextChunk, ...]:
        """(header, output) of one text split by the renderer, once per distinct text."""
        found = split_chunks.get((prefix, text))
        if found is None:
            ids = memo.ids[text]
            at = getattr(renderer, method)(prefix, ids)
            found = split_chunks[(prefix, text)] = (text_chunk(ids[:at]), text_chunk(ids[at:]))
        return found

    bos_chunk = text_chunk(list(bos))
    header_weight = int(train_on_what == TrainOnWhat.ALL_TOKENS)
    # Only these two modes can zero a generation prompt (Renderer._first_trained_message_index).
    check_prompt = train_on_what in (
        TrainOnWhat.LAST_ASSISTANT_MESSAGE,
        TrainOnWhat.LAST_ASSISTANT_TURN,
    )
    view: Renderer | None = None

    examples: list[Example] = []
    for plan in plans:
        if not isinstance(plan[0], list):
            examples.append(plan)  # type: ignore[arg-type]
            continue
        rendered, texts, messages = plan
        renderer._warn_if_prefixes_differ(train_on_what)
        last = len(rendered) - 1
        turn_start = renderer._last_assistant_turn_start_index(rendered[:-1])
        conv_chunks = [bos_chunk] if bos else []
        weights: list[int | float] = [0.0] if bos else []
        for i, (message, message_texts) in enumerate(zip(rendered, texts, strict=True)):
            header, output, overlap, split, drop_empty = message_texts
            trained = int(is_trained(message, i == last, i >= turn_start))
            if split is not None:
                head, out = split_chunk(output, *split)  # type: ignore[arg-type]
                conv_chunks.append(head)
                weights.append(header_weight)
            else:
                if header is not None:
                    conv_chunks.append(chunk(header))
                    weights.append(header_weight)
                out = chunk(output)
            if out.tokens or not drop_empty:
                conv_chunks.append(out)
                weights.append(trained)
            if overlap is not None and i == last:
                conv_chunks.append(chunks[overlap])
                weights.append(trained)
        lengths = [len(c.tokens) for c in conv_chunks]
        example_input = model_input(conv_chunks)
        # torch.tensor() of the reference: the BOS weight 0.0 (or no data) makes it float32.
        dtype = np.float32 if bos or not any(lengths) else np.int64
        weight_array = np.repeat(np.array(weights, dtype=dtype), lengths)
        if check_prompt:
            if view is None:
                view = memo_view(renderer, memo)
            scope = (
                contextlib.nullcontext()
                if template.scope is None
                else getattr(view, template.scope)(messages)
            )
            with scope:
                weight_array = view._train_after_the_generation_prompt(
                    rendered, train_on_what, example_input, weight_array
                )
        examples.append((example_input, weight_array))
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

# DeepSeekV3DisableThinkingRenderer: no header on a leading system message (a later one is
# refused or rendered as a user turn: not plain), ``</think>`` encoded after the assistant
# marker, the end-of-sentence id after non-empty assistant content, think blocks stripped from
# assistant content (not plain).
_DEEPSEEK_V3_DISABLE_THINKING = ChatTemplate(
    {
        "user": MessageTemplate(deepseek_v3.special("User")),
        "assistant": MessageTemplate(
            (deepseek_v3.special("Assistant"), "</think>"), end_token=deepseek_v3.EOS
        ),
    },
    first_roles={"system": MessageTemplate(None)},
    refused=("<think>",),
)

TEMPLATES: dict[type[Renderer], ChatTemplate] = {
    deepseek_v3.DeepSeekV3DisableThinkingRenderer: _DEEPSEEK_V3_DISABLE_THINKING,
    Llama3Renderer: _LLAMA3,
    role_colon.RoleColonRenderer: _ROLE_COLON,
    KimiK2Renderer: _KIMI_K2,
}

__all__ = ["TEMPLATES", "ChatTemplate", "MessageTemplate", "template_examples"]
