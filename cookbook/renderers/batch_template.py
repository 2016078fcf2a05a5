"""The batch renderer's template fast path: plain conversations of renderers whose text per
message is a fixed frame around the message's own content, written as data.

Why: the generic path runs the renderer's own Python twice per message (a recording pass and
the real one), which on short chat turns costs as much as encoding the text. A renderer whose
plain message (string content, no tool calls or other fields) is ``header`` + ``prefix +
content + suffix`` (+ ``stop_overlap`` when last; the content trimmed or with a fixed note, the
suffix or the frame chosen by position: first, last, last user message, neighbours' roles)
needs none of it: its texts are planned here, encoded in one batch, and each distinct text
becomes one shared chunk.

One :class:`ChatTemplate` per renderer class (exact types: a subclass may override anything),
each proven equal to the renderer by ``tests/test_batch.py`` and ``tests/test_batch_parity.py``
(every golden case and generated conversations, errors included). A conversation with anything
else (a multimodal or structured content, tool calls, a role the template does not list) is
handed to the renderer itself, in order, so errors are its own.

Where the frame depends on more than the role and first place, a template also names the
renderer's own reshaping of the conversation (``reshape``) and picks a message template per
message (``choose``: the last message, the previous role, the last user turn). Families with
more than a line of data keep it in a module of their own (``batch_templates_<family>.py``);
``batch.TEMPLATES`` joins them with the ones here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain
from typing import NamedTuple

import numpy as np
import tinker

from cookbook.renderers.base import OUTPUT_IS_TRAINED, Renderer, _last_user_index
from cookbook.renderers.batch_memo import TokenMemo, memo_view
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
    last_suffix: str | None = None
    """The suffix instead of ``suffix`` when the message is the conversation's last (gpt-oss
    ends the last answer with ``<|return|>``, an earlier one with ``<|end|>``)."""
    strip: bool = False
    """Whether the content (with ``content_suffix``) is stripped first: a chat template's
    ``content|trim`` (Nemotron 3)."""
    content_suffix: str = ""
    """Text the renderer appends to the content itself, before any strip (Nemotron 3's
    reasoning-effort note on the last user message)."""
    end_token: str | None = None
    """A special token whose id the renderer appends to the output ids, not to the text,
    unless the output text is empty (DeepSeek's end of sentence after non-empty content,
    GLM-5.3's terminator, the next turn's role token, after ``</think>{content}``)."""
    end_on_empty: bool = False
    """Append ``end_token`` after an empty output text too (DeepSeek V4.1)."""
    lead: str | None = None
    """Text encoded on its own, its ids put before the output's (DeepSeek V3's ``<think></think>``
    on a last turn that did not reason)."""
    split: str | None = None
    """A renderer method ``(prefix, ids) -> int``: the header text is not encoded on its own but
    as the start of the output text, and the ids split where the method says (DeepSeek V4.1's
    system turn, where BPE merges across the boundary)."""
    drop_empty_output: bool = False
    """No output chunk where the output has no ids (DeepSeek V4.1 and GLM-5.3 leave empty
    chunks out)."""


@dataclass(frozen=True)
class ChatTemplate:
    roles: Mapping[str, MessageTemplate]
    """By role; ``"*"`` for every role not listed (a template without it takes no other)."""
    first_roles: Mapping[str, MessageTemplate] = field(default_factory=dict)
    """By role, for the conversation's first message, looked up before ``roles``."""
    last_user: MessageTemplate | None = None
    """For the conversation's last user message, looked up before ``roles``."""
    after: Mapping[str, Mapping[str, MessageTemplate]] = field(default_factory=dict)
    """By the previous message's role, then role; looked up before ``roles`` (GLM-5.3's user
    turn after an assistant turn, whose terminator already wrote its header)."""
    before: Mapping[str, Mapping[str, MessageTemplate]] = field(default_factory=dict)
    """By the next message's role, then role; looked up after ``after`` (GLM-5.3's assistant
    turn before a user turn: it owns the terminator)."""
    default_system_attribute: str | None = None
    """The renderer attribute holding the system prompt it puts first when the conversation
    does not open with a system message (Kimi K2's ``DEFAULT_SYSTEM_PROMPT``)."""
    default_system_text: str | None = None
    """The same, a fixed text (Nemotron 3 always writes a system turn, empty by default)."""
    refused: tuple[str, ...] = ()
    """Content containing any of these is not plain (DeepSeek strips think blocks from it)."""
    reshape: Callable[[Renderer, list[Message]], list[Message]] | None = None
    """The renderer's own reshaping of the caller's conversation into the messages it renders
    (DeepSeek V4.1's template turns); may raise where the template does not apply."""
    choose: Callable[[Renderer, list[Message]], Sequence[str]] | None = None
    """Keys into ``roles``, one per rendered message, where the template depends on more than
    the role and position ``first_roles``/``last_user``/``after``/``before`` express (DeepSeek
    V4.1's reasoning kept or dropped); may raise where it does not apply. Replaces that lookup."""
    scope: str | None = None
    """A renderer method: a context manager over the caller's messages within which the
    renderer renders them (DeepSeek V4.1's ``_template_turns``, which fixes where reasoning is
    dropped); the generation-prompt check runs inside it, as in the renderer."""
    leading_message_method: str | None = None
    """The renderer method returning the message (or None) it renders before every
    conversation inside its own supervised path (gpt-oss's dated system prompt): asked once
    per batch, planned as the first message, and left out of the conversation handed to the
    generation-prompt check, which the renderer's own override adds it to."""
    warning_method: str | None = None
    """The renderer method its ``build_supervised_example`` calls with each conversation for
    its warnings (gpt-oss's about a system message next to its own); called likewise."""

    def message_texts(
        self,
        messages: list[Message],
        index: int,
        customized: bool,
        last_user: int,
        template: MessageTemplate | None = None,
    ) -> MessageTexts:
        """Texts of ``messages[index]`` (``last_user``: the index of the last user message), by
        ``template`` if given, else by role and position.

        Raises on anything not plain; the caller then lets the renderer render it."""
        message = messages[index]
        if ("trainable" in message) != customized or not _PLAIN_FIELDS.issuperset(message):
            raise ValueError("not a plain message")
        content, role = message["content"], message["role"]
        if not isinstance(content, str) or not isinstance(role, str):
            raise ValueError("not a plain message")
        if any(text in content for text in self.refused):
            raise ValueError("not a plain message")
        last = index == len(messages) - 1
        if template is None:
            template = (
                (index == 0 and self.first_roles.get(role))
                or (index == last_user and self.last_user)
                or (index > 0 and self.after.get(messages[index - 1]["role"], {}).get(role))
                or (not last and self.before.get(messages[index + 1]["role"], {}).get(role))
                or self.roles.get(role)
                or self.roles["*"]
            )
        header = _header(template.header, role)
        suffix = template.suffix
        if last and template.last_suffix is not None:
            suffix = template.last_suffix
        text = content + template.content_suffix
        output: Texts = template.prefix + (text.strip() if template.strip else text) + suffix
        if template.split is not None:
            assert isinstance(header, str)
            split = (template.split, header)
            return MessageTexts(None, header + output, None, split, template.drop_empty_output)
        end = template.end_token is not None and (output or template.end_on_empty)
        if template.lead is not None:
            output = (template.lead, output)
        if end:
            output = (*((output,) if isinstance(output, str) else output), template.end_token)
        return MessageTexts(header, output, template.stop_overlap, None, template.drop_empty_output)

    def plan(
        self, renderer: Renderer, messages: list[Message], customized: bool, leading: list[Message]
    ) -> tuple[list[Message], list[Message], list[MessageTexts]]:
        """The messages the generation-prompt check gets, the rendered messages (``leading``
        first) and their texts; raises where the conversation is not plain."""
        checked = self.conversation(renderer, messages)
        rendered = [*leading, *checked] if leading else checked
        last_user = _last_user_index(rendered)
        texts = self.message_texts
        if self.choose is None:
            return (
                checked,
                rendered,
                [texts(rendered, i, customized, last_user) for i in range(len(rendered))],
            )
        roles = self.roles
        keys = self.choose(renderer, rendered)
        return (
            checked,
            rendered,
            [texts(rendered, i, customized, last_user, roles[key]) for i, key in enumerate(keys)],
        )

    def usable(self, renderer: Renderer) -> bool:
        """Whether each end token is one id, as the renderer unpacks it (else it raises)."""
        by_neighbour = (*self.after.values(), *self.before.values())
        templates = [
            *self.roles.values(),
            *self.first_roles.values(),
            self.last_user,
            *(template for by_role in by_neighbour for template in by_role.values()),
        ]
        ends = {t.end_token for t in templates if t is not None}
        return all(len(renderer._encode(end)) == 1 for end in ends if end is not None)

    def leading_messages(self, renderer: Renderer) -> list[Message]:
        """What :attr:`leading_message_method` puts first in every conversation."""
        if self.leading_message_method is None:
            return []
        message = getattr(renderer, self.leading_message_method)()
        return [] if message is None else [message]

    def conversation(self, renderer: Renderer, messages: list[Message]) -> list[Message]:
        """The messages the renderer's base supervised path renders (before any leading
        message): reshaped as the renderer does, or the default system message put first if
        due."""
        if not messages:
            raise ValueError("empty conversation")  # the renderer's own business
        if self.reshape is not None:
            return self.reshape(renderer, messages)
        if messages[0]["role"] == "system":
            return messages
        if self.default_system_attribute is not None:
            prompt = getattr(renderer, self.default_system_attribute)
        elif self.default_system_text is not None:
            prompt = self.default_system_text
        else:
            return messages
        return [Message(role="system", content=prompt), *messages]


@lru_cache(maxsize=1024)
def _header(pattern: Texts | None, role: str) -> Texts | None:
    """A header pattern filled in for a role: once per pattern and role, not per message."""
    if isinstance(pattern, str):
        return pattern.format(role=role, Role=role.capitalize())
    if pattern is None:
        return None
    return tuple(part.format(role=role, Role=role.capitalize()) for part in pattern)


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
    # A plan: the messages the generation-prompt check gets, the rendered messages, their
    # texts and the caller's messages; or, for a conversation that is not plain, the renderer's
    # own example (or its error, raised in conversation order).
    plans: list[tuple[list[Message], list[Message], list[MessageTexts], list[Message]] | Example]
    plans = []
    leading = template.leading_messages(renderer)
    warn = None if template.warning_method is None else getattr(renderer, template.warning_method)
    for messages in conversations:
        try:
            plan = template.plan(renderer, messages, customized, leading)
        except Exception:
            plans.append(renderer.build_supervised_example(messages, train_on_what))
            continue
        if warn is not None:
            warn(messages)
        plans.append((*plan, messages))

    memo = TokenMemo(renderer)
    memo.prefetch(
        text
        for plan in plans
        if isinstance(plan[0], list)
        for message_texts in plan[2]
        for texts in message_texts[:3]
        if texts is not None
        for text in ((texts,) if isinstance(texts, str) else texts)
    )
    chunks: dict[Texts, tinker.EncodedTextChunk] = {
        text: text_chunk(ids) for text, ids in memo.ids.items()
    }

    def chunk(texts: Texts) -> tinker.EncodedTextChunk:
        found = chunks.get(texts)
        if found is None:  # several texts: their ids joined (in C), once per distinct tuple
            ids = list(chain.from_iterable(memo.ids[text] for text in texts))
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
        checked, rendered, texts, messages = plan
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
                    checked, train_on_what, example_input, weight_array
                )
        examples.append((example_input, weight_array))
    return examples


__all__ = ["ChatTemplate", "MessageTemplate", "MessageTexts", "template_examples"]
