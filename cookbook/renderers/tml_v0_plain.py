"""Inkling's (``tml_v0``) plain conversations framed here, token for token as tml-renderers.

Why: ``render_for_sft`` is not the expensive part of a tml_v0 example - getting there is. Each
conversation is converted to OpenAI-style messages, expanded to native ones, closed and given
the effort message, rendered, and its spans read back out, several Python <-> extension
crossings per message, costing 5x the tokenizer's encode of the same text. A plain
conversation needs none of it: every message is the fixed frame ``<|message_{author}|>
<|content_text|>`` + the content's ordinary tokens + ``<|end_message|>`` (a model message then
``<|content_model_end_sampling|>``), the effort message comes after the leading system
messages, and the example ends with the last trained model message (none trained: no example).

Plain means: a list of dicts with string content, no fields but ``role``, ``content`` and
``trainable``, roles ``system``, ``user``, ``assistant`` and ``tool``, text UTF-8 can encode
(no lone surrogates), a supported ``train_on_what`` and a valid effort (a float or int in
[0, 1)). Anything else returns None and the renderer goes through tml-renderers, errors
included. ``tests/test_tml_v0_plain.py`` pins this path to that one on
generated conversations for every ``TrainOnWhat``; the goldens check both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from cookbook.renderers.types import Example, Message, TrainOnWhat, model_input, text_chunk
from cookbook.tokenizers.tml import TmlTokenizer

# The special token naming each role's author (tml_renderers' AuthorKind).
AUTHORS = {
    "system": "message_system",
    "user": "message_user",
    "assistant": "message_model",
    "tool": "message_tool",
}
PLAIN_FIELDS = frozenset({"role", "content", "trainable"})
_ONE = np.float32(1.0).tobytes()  # the weights are built as bytes: numpy slices cost more
SUPPORTED = (
    TrainOnWhat.ALL_ASSISTANT_MESSAGES,
    TrainOnWhat.LAST_ASSISTANT_MESSAGE,
    TrainOnWhat.CUSTOMIZED,
)


def assistant_target_indices(
    messages: Sequence[Message], train_on_what: TrainOnWhat, assistants: list[int] | None = None
) -> list[int]:
    """The assistant messages ``train_on_what`` trains (the others get zero weight), in order;
    ``assistants``: the assistant messages' indices where the caller has them."""
    if assistants is None:
        assistants = [i for i, message in enumerate(messages) if message["role"] == "assistant"]
    if train_on_what == TrainOnWhat.ALL_ASSISTANT_MESSAGES:
        return assistants
    if train_on_what == TrainOnWhat.LAST_ASSISTANT_MESSAGE:
        return assistants[-1:]
    if train_on_what == TrainOnWhat.CUSTOMIZED:
        return [i for i in assistants if messages[i].get("trainable", True)]
    raise NotImplementedError(
        f"tml_v0 currently supports {TrainOnWhat.ALL_ASSISTANT_MESSAGES.value}, "
        f"{TrainOnWhat.LAST_ASSISTANT_MESSAGE.value}, and {TrainOnWhat.CUSTOMIZED.value}; "
        f"got {TrainOnWhat(train_on_what).value!r}"
    )


def plain_options(train_on_what: Any, effort: Any) -> bool:
    """Whether the plain path serves ``train_on_what`` at ``effort`` (else tml-renderers,
    which raises for an invalid one)."""
    return train_on_what in SUPPORTED and type(effort) in (float, int) and 0.0 <= effort < 1.0


def millieffort_of(effort: float) -> int:
    """All of the effort tml-renderers sees: tml_v0 hands it ThinkingEffort(round(effort *
    1000))."""
    return round(effort * 1000)


class PlainFrame:
    """The per-tokenizer constants of the frame, and examples of plain conversations.

    ``render`` is tml-renderers' path: the token ids of a conversation's one example at an
    effort. The effort message is cut out of its rendering of an empty model message, since
    tml-renderers decides how an effort is written; it is kept per millieffort, all of the
    effort that tml-renderers sees.
    """

    def __init__(
        self, tokenizer: TmlTokenizer, render: Callable[[list[Message], float], list[int]]
    ) -> None:
        special = tokenizer.encode_special
        content_text = special("content_text")
        self.headers = {role: (special(author), content_text) for role, author in AUTHORS.items()}
        """Each role's message header: its author token, then ``<|content_text|>``."""
        self.end = special("end_message")
        self.end_sampling = special("content_model_end_sampling")
        """What follows a model message's ``end``: the trained stop token."""
        self.encode = tokenizer.encode_ordinary
        self._render = render
        self._efforts: dict[int, list[int]] = {}

    def examples(self, messages: Any, train_on_what: Any, effort: float) -> list[Example] | None:
        """The examples ``render_for_sft`` makes of ``messages``, or None if not plain."""
        if type(messages) is not list or not messages or not plain_options(train_on_what, effort):
            return None
        headers, encode = self.headers, self.encode
        end, end_sampling = self.end, self.end_sampling
        ids: list[int] = []
        spans: dict[int, tuple[int, int]] = {}  # each assistant message's tokens, by index
        leading_system = True
        # One pass: a message that is not plain is found before anything is returned.
        for i, message in enumerate(messages):
            if type(message) is not dict:
                return None
            role, content = message.get("role"), message.get("content")
            if type(role) is not str or type(content) is not str:
                return None
            if len(message) != 2 and not message.keys() <= PLAIN_FIELDS:  # 2: role, content
                return None
            header = headers.get(role)
            if header is None:
                return None
            if leading_system and role != "system":
                ids += self.effort_tokens(effort)
                leading_system = False
            start = len(ids)
            ids += header
            try:
                ids += encode(content)
            except UnicodeEncodeError:  # lone surrogates: tml_renderers refuses the content
                return None
            ids.append(end)
            if role == "assistant":
                ids.append(end_sampling)
                spans[i] = (start, len(ids))
        targets = assistant_target_indices(messages, train_on_what, list(spans))
        if not targets:
            return []
        stop = spans[targets[-1]][1]
        del ids[stop:]
        weights = bytearray(4 * stop)
        for target in targets:
            start, end_index = spans[target]
            weights[4 * start : 4 * end_index] = _ONE * (end_index - start)
        return [(model_input([text_chunk(ids)]), np.frombuffer(weights, dtype=np.float32))]

    def effort_tokens(self, effort: float) -> list[int]:
        """The effort message's tokens (a list kept here: not to be changed)."""
        millieffort = millieffort_of(effort)
        tokens = self._efforts.get(millieffort)
        if tokens is None:
            empty_model_message = [*self.headers["assistant"], self.end, self.end_sampling]
            rendered = self._render([Message(role="assistant", content="")], effort)
            tokens = rendered[: -len(empty_model_message)]
            if tokens + empty_model_message != rendered:
                raise RuntimeError(
                    "tml_renderers no longer ends an example with the empty model message "
                    f"{empty_model_message}: {rendered}"
                )
            self._efforts[millieffort] = tokens
        return tokens


__all__ = [
    "AUTHORS",
    "PLAIN_FIELDS",
    "SUPPORTED",
    "PlainFrame",
    "assistant_target_indices",
    "millieffort_of",
    "plain_options",
]
