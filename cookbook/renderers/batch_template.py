"""The batch renderer's template fast path, its data model: how a renderer writes a plain
message, as data.

Why: the generic path runs the renderer's own Python twice per message (a recording pass and
the real one), which on short chat turns costs as much as encoding the text. A renderer whose
plain message (string content, no tool calls or other fields) is ``header`` + ``prefix +
content + suffix`` (+ ``stop_overlap`` when last) needs none of it: its texts are planned here,
encoded in one batch (``batch_template_examples.py``), and each distinct text becomes one
shared chunk. What varies with the message's place (:class:`Variant`: first, last, the last
user message, after it, the neighbours' roles), a content rule (trimmed, a note appended),
fixed chunks around the output, split encoding, the renderer's own reshaping of the
conversation and the renderer attributes a template assumes are data too; where the choice
needs the renderer's own logic (DeepSeek V4.1's dropped reasoning), ``choose`` picks the
template per message.

One :class:`ChatTemplate` per renderer class (exact types: a subclass may override anything),
kept in ``batch_templates_core.py`` and one ``batch_templates_<family>.py`` per family and
joined in ``batch.TEMPLATES``; each is proven equal to the renderer by ``tests/test_batch.py``,
``tests/test_batch_parity.py`` and ``tests/test_batch_templates*.py`` (every golden case and
generated conversations, errors and warnings included). A conversation with anything else (a
multimodal or structured content, tool calls, a role the template does not list) is handed to
the renderer itself, in order, so errors are its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache

from cookbook.renderers.base import Renderer, _last_user_index
from cookbook.renderers.types import Message

# A chunk's text, or texts whose ids the renderer concatenates (encoded one by one, as it does).
Texts = str | tuple[str, ...]

# Conditions a Variant may put on a message's place: (the rendered messages, its index, the
# index of the last user message or -1) -> whether it holds. "after:ROLE" and "before:ROLE"
# test the previous and the next message's role.
Condition = Callable[[Sequence[Message], int, int], bool]
_CONDITIONS: dict[str, Condition] = {
    "first": lambda messages, index, last_user: index == 0,
    "last": lambda messages, index, last_user: index == len(messages) - 1,
    "last_user": lambda messages, index, last_user: index == last_user,
    "after_last_user": lambda messages, index, last_user: index > last_user,
    "user_seen": lambda messages, index, last_user: last_user >= 0,
}


@cache
def _condition(name: str) -> Condition:
    if name in _CONDITIONS:
        return _CONDITIONS[name]
    where, _, role = name.partition(":")
    if where == "after" and role:
        return lambda messages, index, _: index > 0 and messages[index - 1]["role"] == role
    if where == "before" and role:
        return lambda messages, index, _: (
            index + 1 < len(messages) and messages[index + 1]["role"] == role
        )
    raise ValueError(f"unknown variant condition: {name!r}")


# Fields a plain message may have: any other (tool_calls, name, thinking...) may change the text.
_PLAIN_FIELDS = frozenset({"role", "content", "trainable"})


@dataclass(frozen=True)
class MessageTemplate:
    """How the renderer writes a plain message: chunks ``header``, ``lead_chunk``, ``lead`` +
    ``prefix + content + suffix`` + ``end_token``, ``close_chunk`` (+ ``stop_overlap`` when
    last)."""

    header: Texts | None
    """``str.format`` pattern(s) over ``{role}`` and ``{Role}`` (``role.capitalize()``); several
    where the renderer joins their ids; None: no header chunk (DeepSeek's leading system)."""
    prefix: str = ""
    suffix: str = ""
    stop_overlap: str | None = None
    """Used only when the message is the conversation's last, as
    ``Renderer.supervised_segments`` does."""
    last_suffix: str | None = None
    """The suffix instead of ``suffix`` when the message is the conversation's last (gpt-oss
    ends the last answer with ``<|return|>``, an earlier one with ``<|end|>``)."""
    content_suffix: str = ""
    """Text the renderer appends to the content itself, before ``content`` (Nemotron 3's
    reasoning-effort note on the last user message)."""
    content: Callable[[str], str] | None = None
    """What the renderer does to the content before framing it (``str.strip``: a chat
    template's ``content|trim``)."""
    end_token: str | None = None
    """A special token whose id the renderer appends to the output ids, not to the text,
    unless the output text is empty (DeepSeek's end of sentence after non-empty content,
    GLM-5.3's terminator, the next turn's role token, after ``</think>{content}``)."""
    end_on_empty: bool = False
    """Append ``end_token`` after an empty output text too (DeepSeek V4.1)."""
    lead: str | None = None
    """Text encoded on its own, its ids put before the output's in the same chunk (DeepSeek
    V3's ``<think></think>`` on a last turn that did not reason)."""
    lead_chunk: str | None = None
    """A fixed text encoded as an output chunk of its own before the output (the part of
    Qwen3.5's produced-turn header that the generation prompt does not prefill)."""
    close_chunk: str | None = None
    """A fixed text encoded as an output chunk of its own after the output (Qwen3's
    ``<|im_end|>``)."""
    encode_split: bool = False
    """The output is encoded with special-token parsing off (``Renderer._encode_split``)."""
    split: str | None = None
    """A renderer method ``(prefix, ids) -> int``: the header text is not encoded on its own but
    as the start of the output text, and the ids split where the method says (DeepSeek V4.1's
    system turn, where BPE merges across the boundary)."""
    drop_empty_output: bool = False
    """No output chunk where the output has no ids (DeepSeek V4.1 and GLM-5.3 leave empty
    chunks out)."""
    refused: tuple[str, ...] = ()
    """Content containing any of these is not plain in this template (Qwen3's produced turn
    normalizes inline think blocks; other turns write them as they are)."""


@dataclass(frozen=True)
class Variant:
    """A role's template where the message's place in the conversation changes its text."""

    role: str
    when: tuple[str, ...]
    """Conditions that must all hold: ``first``, ``last``, ``last_user``, ``after_last_user``,
    ``user_seen``, ``after:ROLE``, ``before:ROLE``."""
    template: MessageTemplate | None
    """None: such a message is not plain (the renderer renders, or refuses, the conversation)."""

    def __post_init__(self) -> None:
        for name in self.when:
            _condition(name)  # raises on an unknown name, when the template is written

    def holds(self, messages: Sequence[Message], index: int, last_user: int) -> bool:
        return all(_condition(name)(messages, index, last_user) for name in self.when)


# One message's texts and the template that says how they become chunks: (header, output,
# template). The header text(s); with ``template.split``, the header text that starts
# ``output``. A plain tuple, not a named one: built once per message and unpacked twice, and
# only an exact tuple takes the interpreter's fast path for both.
MessageTexts = tuple[Texts | None, Texts, MessageTemplate]


class Slot:
    """A message's template where its shape puts it, with what that decides worked out: its
    header, its suffix and the texts that make its content not plain."""

    __slots__ = (
        "content",
        "content_suffix",
        "end",
        "end_on_empty",
        "header",
        "lead",
        "prefix",
        "refused",
        "split",
        "suffix",
        "template",
    )

    def __init__(
        self,
        template: MessageTemplate,
        header: Texts | None,
        suffix: str,
        refused: tuple[str, ...],
    ) -> None:
        self.template = template
        self.header = header
        self.suffix = suffix
        self.refused = refused
        self.prefix = template.prefix
        self.content_suffix = template.content_suffix
        self.content = template.content
        self.lead = template.lead
        self.end = template.end_token
        self.end_on_empty = template.end_on_empty
        self.split = template.split is not None
        if self.split:
            assert isinstance(header, str)

    def texts(self, content: str) -> MessageTexts:
        """The message's texts, from its (plain) content."""
        if self.content_suffix:
            content += self.content_suffix
        if self.content is not None:
            content = self.content(content)
        output: Texts = self.prefix + content + self.suffix
        if self.split:
            output = self.header + output  # type: ignore[operator]
        elif self.end is not None and (output or self.end_on_empty):
            output = (output, self.end) if self.lead is None else (self.lead, output, self.end)
        elif self.lead is not None:
            output = (self.lead, output)
        return (self.header, output, self.template)


class Layout:
    """What a conversation's shape decides, one :class:`Slot` per rendered message: worked
    out once per shape (its roles; with ``choose``, its keys too), not once per message.
    Compared by identity: the assembly keys its own per-shape work on it."""

    __slots__ = ("slots", "splits")

    def __init__(self, slots: tuple[Slot, ...]) -> None:
        self.slots = slots
        self.splits = any(slot.split for slot in slots)  # a header the renderer divides


@dataclass(frozen=True)
class ChatTemplate:
    roles: Mapping[str, MessageTemplate]
    """By role; ``"*"`` for every role not listed (a template without it takes no other)."""
    variants: tuple[Variant, ...] = ()
    """Looked up in order before ``roles``: the first for the message's role whose conditions
    all hold."""
    separator: str = ""
    """Put before the header of every message but the first (Qwen's newline between turns)."""
    default_system_attribute: str | None = None
    """The renderer attribute holding the system prompt it puts first when the conversation
    does not open with a system message (Kimi K2's ``DEFAULT_SYSTEM_PROMPT``)."""
    default_system_text: str | None = None
    """The same, a fixed text (Nemotron 3 always writes a system turn, empty by default)."""
    refused: tuple[str, ...] = ()
    """Content containing any of these is not plain (DeepSeek strips think blocks from it)."""
    attributes: Mapping[str, object] = field(default_factory=dict)
    """Renderer attribute values the template was written for: a renderer with other values
    (``strip_thinking_from_history=False``) is not served by it."""
    reshape: Callable[[Renderer, list[Message]], list[Message]] | None = None
    """The renderer's own reshaping of the caller's conversation into the messages it renders,
    once, as its supervised path does (Qwen3.5's ``_normalize_messages``, DeepSeek V4.1's
    template turns); may raise where the template does not apply."""
    choose: Callable[[Renderer, list[Message]], Sequence[str]] | None = None
    """Keys into ``roles``, one per rendered message, where the choice needs the renderer's
    own logic (DeepSeek V4.1's reasoning kept or dropped); may raise where it does not apply.
    Replaces the ``variants``/``roles``/``"*"`` lookup."""
    scope: str | None = None
    """A renderer method: a context manager over the caller's messages within which the
    renderer renders them (DeepSeek V4.1's ``_template_turns``); the generation-prompt check
    runs inside it, as in the renderer."""
    leading_message_method: str | None = None
    """The renderer method returning the message (or None) it renders before every
    conversation inside its own supervised path (gpt-oss's dated system prompt): asked once
    per batch, planned as the first message, and left out of the conversation handed to the
    generation-prompt check, which the renderer's own override adds it to."""
    warning_method: str | None = None
    """The renderer method its ``build_supervised_example`` calls with each conversation for
    its warnings (gpt-oss's about a system message next to its own); called likewise."""
    _layouts: dict[object, Layout | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    """Shape -> layout (None: not plain), filled as shapes are seen."""

    def templates(self) -> list[MessageTemplate]:
        """Every message template this chat template may use."""
        variants = [v.template for v in self.variants if v.template is not None]
        return [*self.roles.values(), *variants]

    def fixed_texts(self) -> list[str]:
        """The texts of the fixed chunks (lead, close, stop overlap) the templates may add."""
        texts = (t for m in self.templates() for t in (m.lead_chunk, m.close_chunk, m.stop_overlap))
        return [text for text in texts if text is not None]

    def usable(self, renderer: Renderer) -> bool:
        """Whether the renderer has the attributes the template was written for, and each end
        token is one id, as the renderer unpacks it (else it raises). Asked on every batch
        call: the end tokens are fixed texts, encoded once per tokenizer."""
        if any(
            getattr(renderer, name, _MISSING) != value for name, value in self.attributes.items()
        ):
            return False
        ends = {t.end_token for t in self.templates()}
        return all(len(renderer._encode_fixed(end)) == 1 for end in ends if end is not None)

    def leading_messages(self, renderer: Renderer) -> list[Message]:
        """What :attr:`leading_message_method` puts first in every conversation."""
        if self.leading_message_method is None:
            return []
        message = getattr(renderer, self.leading_message_method)()
        return [] if message is None else [message]

    def conversation(self, renderer: Renderer, messages: list[Message]) -> list[Message]:
        """The messages the renderer's base supervised path renders (before any leading
        message): reshaped as the renderer does, the default system message put first if due."""
        if not messages:
            raise ValueError("empty conversation")  # the renderer's own business
        if self.reshape is not None:
            messages = self.reshape(renderer, messages)
        if messages[0]["role"] == "system":
            return messages
        if self.default_system_attribute is not None:
            prompt = getattr(renderer, self.default_system_attribute)
        elif self.default_system_text is not None:
            prompt = self.default_system_text
        else:
            return messages
        return [Message(role="system", content=prompt), *messages]

    def plan(
        self, renderer: Renderer, messages: list[Message], customized: bool, leading: list[Message]
    ) -> tuple[list[Message], list[Message], list[MessageTexts], Layout]:
        """The messages the generation-prompt check gets, the rendered messages (``leading``
        first), their texts and their shape's layout; raises where the conversation is not
        plain."""
        checked = self.conversation(renderer, messages)
        rendered = [*leading, *checked] if leading else checked
        layout = self.layout(renderer, rendered)
        texts = []
        for message, slot in zip(rendered, layout.slots, strict=True):
            if ("trainable" in message) != customized or not _PLAIN_FIELDS.issuperset(message):
                raise ValueError("not a plain message")
            content = message["content"]
            if not isinstance(content, str):
                raise ValueError("not a plain message")
            for text in slot.refused:
                if text in content:
                    raise ValueError("not a plain message")
            texts.append(slot.texts(content))
        return checked, rendered, texts, layout

    def layout(self, renderer: Renderer, messages: list[Message]) -> Layout:
        """The layout of the conversation's shape, worked out on its first sight (raises where
        the shape is not plain: a role the template does not take, a variant without one)."""
        roles = tuple([message["role"] for message in messages])
        key = roles if self.choose is None else (roles, tuple(self.choose(renderer, messages)))
        layouts = self._layouts
        found = layouts.get(key, _MISSING)
        if found is _MISSING:
            if len(layouts) >= _MAX_LAYOUTS:
                layouts.clear()
            found = layouts[key] = self._new_layout(messages, key)
        if found is None:
            raise ValueError("not a plain conversation")
        return found

    def _new_layout(self, messages: list[Message], key: object) -> Layout | None:
        """Each message's template, header and suffix by role and place (conditions read only
        roles and indices, ``choose`` keys are part of ``key``); None where one is not plain."""
        keys = None if self.choose is None else key[1]  # type: ignore[index]
        last_user = _last_user_index(messages)
        slots = []
        for index, message in enumerate(messages):
            role = message["role"]
            if not isinstance(role, str):
                return None
            try:
                template = (
                    self._template(messages, index, role, last_user)
                    if keys is None
                    else self.roles[keys[index]]
                )
            except (KeyError, ValueError):
                return None
            suffix = template.suffix
            if template.last_suffix is not None and index == len(messages) - 1:
                suffix = template.last_suffix
            header = _header(template.header, role, self.separator if index else "")
            slots.append(Slot(template, header, suffix, self.refused + template.refused))
        return Layout(tuple(slots))

    def _template(
        self, messages: list[Message], index: int, role: str, last_user: int
    ) -> MessageTemplate:
        for variant in self.variants:
            if variant.role == role and variant.holds(messages, index, last_user):
                if variant.template is None:
                    raise ValueError("not a plain message")
                return variant.template
        found = self.roles.get(role)
        return self.roles["*"] if found is None else found


_MISSING = object()
# Layouts kept per template: a dataset has few conversation shapes, but a batch of endless ones
# must not grow the cache without bound.
_MAX_LAYOUTS = 4096


def _header(pattern: Texts | None, role: str, separator: str) -> Texts | None:
    """A header pattern filled in for a role (once per layout, not per message)."""
    if pattern is None:
        return None
    if isinstance(pattern, str):
        return separator + pattern.format(role=role, Role=role.capitalize())
    first, *rest = (part.format(role=role, Role=role.capitalize()) for part in pattern)
    return (separator + first, *rest)


__all__ = [
    "ChatTemplate",
    "Layout",
    "MessageTemplate",
    "MessageTexts",
    "Slot",
    "Texts",
    "Variant",
]
