"""The batch renderer's template fast path: plain conversations of renderers whose text per
message is a fixed frame around the message's own content, written as data.

Why: the generic path runs the renderer's own Python twice per message (a recording pass and
the real one), which on short chat turns costs as much as encoding the text. A renderer whose
plain message (string content, no tool calls or other fields) is ``header`` + ``prefix +
content + suffix`` (+ ``stop_overlap`` when last) needs none of it: its texts are planned here,
encoded in one batch, and each distinct text becomes one shared chunk. What varies with the
message's place (:class:`Variant`: the last message, a turn after the last user message), a
content rule (trimmed), extra fixed output chunks, split encoding, a renderer's own
conversation rewrite and the renderer attributes a template assumes are data too.

One :class:`ChatTemplate` per renderer class (exact types: a subclass may override anything),
each proven equal to the renderer by ``tests/test_batch.py`` and ``tests/test_batch_parity.py``
(every golden case and generated conversations, errors included). A conversation with anything
else (a multimodal or structured content, tool calls, a role the template does not list) is
handed to the renderer itself, in order, so errors are its own. Families' templates live in
their own modules (``batch_templates_qwen.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import tinker

from cookbook.renderers import deepseek_v3, role_colon
from cookbook.renderers.base import OUTPUT_IS_TRAINED, Renderer, _last_user_index
from cookbook.renderers.batch_memo import TokenMemo, memo_view
from cookbook.renderers.kimi_k2 import KimiK2Renderer
from cookbook.renderers.llama3 import Llama3Renderer
from cookbook.renderers.types import Message, TrainOnWhat, model_input, text_chunk

Example = tuple[tinker.ModelInput, np.ndarray]

# A chunk's text, or texts whose ids the renderer concatenates (encoded one by one, as it does).
Texts = str | tuple[str, ...]

# Conditions a Variant may put on a message's place: (its index, the last index, the index of
# the conversation's last user message or -1) -> whether it holds.
_CONDITIONS: dict[str, Callable[[int, int, int], bool]] = {
    "last": lambda index, last, last_user: index == last,
    "after_last_user": lambda index, last, last_user: index > last_user,
    "user_seen": lambda index, last, last_user: last_user >= 0,
}

# Fields a plain message may have: any other (tool_calls, name, thinking...) may change the text.
_PLAIN_FIELDS = frozenset({"role", "content", "trainable"})


@dataclass(frozen=True)
class MessageTemplate:
    """How the renderer writes a plain message of one role: chunks ``header``, ``lead``,
    ``prefix + content + suffix``, ``close`` (+ ``stop_overlap`` when last)."""

    header: Texts | None
    """``str.format`` pattern(s) over ``{role}`` and ``{Role}`` (``role.capitalize()``); several
    where the renderer joins their ids; None: no header chunk (DeepSeek's leading system)."""
    prefix: str = ""
    suffix: str = ""
    stop_overlap: str | None = None
    """Used only when the message is the conversation's last, as
    ``Renderer.supervised_segments`` does."""
    end_token: str | None = None
    """A special token whose id the renderer appends to the output ids, not to the text,
    unless the content is empty (DeepSeek's end of sentence)."""
    content: Callable[[str], str] | None = None
    """What the renderer does to the content before framing it (Qwen3.5's ``str.strip``)."""
    split: bool = False
    """The output is encoded with special-token parsing off (``Renderer._encode_split``)."""
    lead: str | None = None
    """A fixed text encoded as an output chunk of its own before the output (the part of
    Qwen3.5's produced-turn header that the generation prompt does not prefill)."""
    close: str | None = None
    """A fixed text encoded as an output chunk of its own after the output (Qwen3's
    ``<|im_end|>``)."""
    refused: tuple[str, ...] = ()
    """Content containing any of these is not plain in this template (Qwen3's produced turn
    normalizes inline think blocks; other turns write them as they are)."""


@dataclass(frozen=True)
class Variant:
    """A role's template where the message's place in the conversation changes its text."""

    role: str
    when: tuple[str, ...]
    """Names of ``_CONDITIONS`` that must all hold."""
    template: MessageTemplate | None
    """None: such a message is not plain (the renderer renders, or refuses, the conversation)."""

    def __post_init__(self) -> None:
        if unknown := set(self.when) - _CONDITIONS.keys():
            raise ValueError(f"unknown variant conditions: {sorted(unknown)}")


# (header, output, template) of one message: the template says how the output is encoded and
# which fixed chunks go around it.
MessageTexts = tuple[Texts | None, Texts, MessageTemplate]


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
    variants: tuple[Variant, ...] = ()
    """Looked up in order before ``first_roles`` and ``roles``: the first for the message's
    role whose conditions all hold (Qwen's produced turn)."""
    separator: str = ""
    """Put before the header of every message but the first (Qwen's newline between turns)."""
    normalizer: str | None = None
    """The renderer method that reshapes the conversation before rendering it (Qwen3.5's
    ``_normalize_messages``, which adds Qwen3.8's reasoning-effort system message), once, as
    the renderer's supervised path does."""
    attributes: Mapping[str, object] = field(default_factory=dict)
    """Renderer attribute values the template was written for: a renderer with other values
    (``strip_thinking_from_history=False``) is not served by it."""

    def message_texts(
        self, message: Message, customized: bool, index: int, last: int, last_user: int
    ) -> MessageTexts:
        """Raises on anything not plain; the caller then lets the renderer render it."""
        if ("trainable" in message) != customized or not _PLAIN_FIELDS.issuperset(message):
            raise ValueError("not a plain message")
        content, role = message["content"], message["role"]
        if not isinstance(content, str) or not isinstance(role, str):
            raise ValueError("not a plain message")
        if any(text in content for text in self.refused):
            raise ValueError("not a plain message")
        for variant in self.variants:
            if variant.role == role and all(
                _CONDITIONS[condition](index, last, last_user) for condition in variant.when
            ):
                if variant.template is None:
                    raise ValueError("not a plain message")
                template = variant.template
                break
        else:
            template = (
                (index == 0 and self.first_roles.get(role))
                or self.roles.get(role)
                or self.roles["*"]
            )
        if any(text in content for text in template.refused):
            raise ValueError("not a plain message")
        header = template.header
        if isinstance(header, str):
            header = header.format(role=role, Role=role.capitalize())
            if index:
                header = self.separator + header
        elif header is not None:
            header = tuple(part.format(role=role, Role=role.capitalize()) for part in header)
            if index:
                header = (self.separator + header[0], *header[1:])
        if template.content is not None:
            content = template.content(content)
        output: Texts = template.prefix + content + template.suffix
        if template.end_token is not None and content:
            output = (output, template.end_token)
        return header, output, template

    def _templates(self) -> list[MessageTemplate]:
        variants = [v.template for v in self.variants if v.template is not None]
        return [*self.roles.values(), *self.first_roles.values(), *variants]

    def fixed_texts(self) -> list[str]:
        """The texts of the fixed chunks (lead, close, stop overlap) the templates may add."""
        texts = (t for m in self._templates() for t in (m.lead, m.close, m.stop_overlap))
        return [text for text in texts if text is not None]

    def usable(self, renderer: Renderer) -> bool:
        """Whether the renderer has the attributes the template was written for, and each end
        token is one id, as the renderer unpacks it (else it raises)."""
        if any(
            getattr(renderer, name, _MISSING) != value for name, value in self.attributes.items()
        ):
            return False
        ends = {t.end_token for t in self._templates()}
        return all(len(renderer._encode(end)) == 1 for end in ends if end is not None)

    def conversation(self, renderer: Renderer, messages: list[Message]) -> list[Message]:
        """The messages the renderer renders: reshaped by its normalizer, the default system
        message put first if due."""
        if not messages:
            raise ValueError("empty conversation")  # the renderer's own business
        if self.normalizer is not None:
            messages = getattr(renderer, self.normalizer)(messages)
        if self.default_system_attribute is None or messages[0]["role"] == "system":
            return messages
        prompt = getattr(renderer, self.default_system_attribute)
        return [Message(role="system", content=prompt), *messages]


_MISSING = object()


def template_examples(
    template: ChatTemplate,
    renderer: Renderer,
    conversations: Sequence[list[Message]],
    train_on_what: TrainOnWhat,
) -> list[Example]:
    """Examples of plain conversations from the template: texts planned directly, encoded in
    one batch per hook, one chunk per distinct text, weights with numpy. A conversation that is
    not plain is rendered by the renderer where it stands, so errors come in order."""
    bos = renderer._bos_tokens
    customized = train_on_what == TrainOnWhat.CUSTOMIZED
    is_trained = OUTPUT_IS_TRAINED[train_on_what]
    # A plan: the rendered messages and their texts; or the caller's messages and None for a
    # conversation that is not plain.
    plans: list[tuple[list[Message], list[MessageTexts] | None]] = []
    plan = template.message_texts
    for messages in conversations:
        try:
            rendered = template.conversation(renderer, messages)
            last, last_user = len(rendered) - 1, _last_user_index(rendered)
            plans.append(
                (
                    rendered,
                    [plan(m, customized, i, last, last_user) for i, m in enumerate(rendered)],
                )
            )
        except Exception:
            plans.append((messages, None))

    texts: dict[str, None] = dict.fromkeys(template.fixed_texts())
    split_texts: dict[str, None] = {}
    for _, message_texts in plans:
        for header, output, message_template in message_texts or ():
            if header is not None:
                texts.update(dict.fromkeys((header,) if isinstance(header, str) else header))
            into = split_texts if message_template.split else texts
            into.update(dict.fromkeys((output,) if isinstance(output, str) else output))
    memo = TokenMemo(renderer)
    memo.prefetch(texts)
    memo.prefetch(split_texts, split=True)
    chunks: dict[Texts, tinker.EncodedTextChunk] = {
        text: text_chunk(ids) for text, ids in memo.ids.items()
    }
    split_chunks: dict[Texts, tinker.EncodedTextChunk] = {
        text: text_chunk(ids) for text, ids in memo.split_ids.items()
    }

    def chunk(texts: Texts, split: bool) -> tinker.EncodedTextChunk:
        table = split_chunks if split else chunks
        found = table.get(texts)
        if found is None:  # several texts: their ids joined, once per distinct tuple
            ids = memo.split_ids if split else memo.ids
            found = table[texts] = text_chunk([i for text in texts for i in ids[text]])
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
    for rendered, message_texts in plans:
        if message_texts is None:
            examples.append(renderer.build_supervised_example(rendered, train_on_what))
            continue
        renderer._warn_if_prefixes_differ(train_on_what)
        last = len(rendered) - 1
        turn_start = renderer._last_assistant_turn_start_index(rendered[:-1])
        conv_chunks = [bos_chunk] if bos else []
        weights: list[int | float] = [0.0] if bos else []
        for i, (message, (header, output, message_template)) in enumerate(
            zip(rendered, message_texts, strict=True)
        ):
            trained = int(is_trained(message, i == last, i >= turn_start))
            if header is not None:
                conv_chunks.append(chunk(header, False))
                weights.append(header_weight)
            if message_template.lead is not None:
                conv_chunks.append(chunks[message_template.lead])
                weights.append(trained)
            conv_chunks.append(chunk(output, message_template.split))
            weights.append(trained)
            if message_template.close is not None:
                conv_chunks.append(chunks[message_template.close])
                weights.append(trained)
            if message_template.stop_overlap is not None and i == last:
                conv_chunks.append(chunks[message_template.stop_overlap])
                weights.append(trained)
        lengths = [len(c.tokens) for c in conv_chunks]
        example_input = model_input(conv_chunks)
        # torch.tensor() of the reference: the BOS weight 0.0 (or no data) makes it float32.
        dtype = np.float32 if bos or not any(lengths) else np.int64
        weight_array = np.repeat(np.array(weights, dtype=dtype), lengths)
        if check_prompt:
            if view is None:
                view = memo_view(renderer, memo)
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
