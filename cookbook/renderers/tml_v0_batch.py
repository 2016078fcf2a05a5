"""Inkling's (``tml_v0``) plain conversations, many at once: the batch renderer's route for it.

Why: ``PlainFrame.examples`` already frames one plain conversation with one
``encode_ordinary`` per message, but its Python runs per message (checks, header, content, end,
spans, weights): 1.5x the bare encode of the same text over a batch. Here that work runs once
per batch, in C-level maps, or once per conversation *shape*:

* checks for the whole batch at once (types, fields, roles, by ``map`` and ``set``); a batch
  that fails them is halved until the plain conversations are found;
* every distinct content encoded once;
* a conversation's frame depends only on its roles (and, in CUSTOMIZED mode, on which
  assistant messages are trainable): a :class:`_Layout` per shape holds its fixed token runs
  with slots for the contents, its cut after the last trained message and its weight runs;
  a conversation is then its layout with the contents slotted in, joined in C;
* the weights of the whole batch come from one ``numpy.repeat``, each example's a slice of it.

Conversations that are not plain (and plain ones with nothing to train, or a content the
tokenizer refuses) are left as None: the renderer renders them itself, in order, so their
examples, errors and warnings are its own. ``tests/test_tml_v0_batch.py`` pins this path to the
per-conversation one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce
from itertools import accumulate, chain, pairwise
from operator import iadd, itemgetter, truth
from typing import Any

import numpy as np

from cookbook.renderers.tml_v0_plain import (
    AUTHORS,
    PLAIN_FIELDS,
    PlainFrame,
    assistant_target_indices,
    millieffort_of,
    plain_options,
)
from cookbook.renderers.types import Example, Message, TrainOnWhat, model_input, text_chunk

_ROLE = itemgetter("role")
_CONTENT = itemgetter("content")
_ROLES = frozenset(AUTHORS)
# Layouts kept per renderer and (mode, effort): a dataset has few conversation shapes, but a
# batch of endless ones must not grow the cache without bound.
_MAX_LAYOUTS = 4096


@dataclass(frozen=True, slots=True)
class _Layout:
    """One conversation shape's example: the messages up to the last trained one, framed.

    ``parts`` is the token runs between the contents with None where each content goes
    (fixed, content, fixed, ..., content, fixed); ``runs`` the lengths of the weight runs,
    three per message (the effort message before it, its fixed tokens, its content: None,
    filled per conversation) and ``weights`` each run's weight (float32 bytes: joined in C).
    """

    messages: int
    parts: list[list[int] | None]
    runs: list[int | None]
    weights: bytes


class PlainBatch:
    """Examples of many plain conversations at once, framed as :class:`PlainFrame` frames
    one; the layouts of the shapes seen are kept per mode and effort."""

    def __init__(self, frame: PlainFrame) -> None:
        self._frame = frame
        self._layouts: dict[tuple[TrainOnWhat, int], dict[Any, _Layout | None]] = {}

    def examples(
        self, conversations: Sequence[Any], train_on_what: Any, effort: float
    ) -> list[Example | None]:
        """Each conversation's one example, or None where the renderer must render it."""
        results: list[Example | None] = [None] * len(conversations)
        if not conversations or not plain_options(train_on_what, effort):
            return results
        whole = _checked(conversations)
        if whole is not None:
            self._frame_all(
                conversations, range(len(conversations)), whole, train_on_what, effort, results
            )
            return results
        indices = _plain_indices(conversations, 0, len(conversations))
        if indices:
            subset = [conversations[i] for i in indices]
            found = _checked(subset)
            assert found is not None  # every part passed the same checks
            self._frame_all(subset, indices, found, train_on_what, effort, results)
        return results

    def _frame_all(
        self,
        conversations: Sequence[list[Message]],
        indices: Sequence[int],
        checked: tuple[list[Message], tuple[str, ...], list[str]],
        train_on_what: TrainOnWhat,
        effort: float,
        results: list[Example | None],
    ) -> None:
        """Fill ``results[indices[k]]`` with the example of ``conversations[k]`` (all plain)."""
        flat, roles, contents = checked
        encoded = _encode_distinct(self._frame.encode, contents)
        refused = None in encoded.values()
        tokens = list(map(encoded.__getitem__, contents))  # None: a content it refused
        del encoded
        lengths = [len(ids or ()) for ids in tokens] if refused else list(map(len, tokens))
        flags = None  # CUSTOMIZED: the assistant messages' flags (tml_v0 reads no other)
        if train_on_what == TrainOnWhat.CUSTOMIZED:
            flags = [
                m.get("trainable", True) if role == "assistant" else True
                for m, role in zip(flat, roles, strict=True)
            ]
        layouts = self._layouts_for(train_on_what, effort)
        bounds = list(accumulate(map(len, conversations), initial=0))
        examples: list[tuple[int, list[int]]] = []  # (index into results, ids)
        runs: list[int | None] = []
        weights = bytearray()
        for k, (start, stop) in enumerate(pairwise(bounds)):
            if refused and None in tokens[start:stop]:
                continue  # tml-renderers refuses it, after the cut too
            key: Any = roles[start:stop]
            if flags is not None:
                try:  # tml_v0 reads the flags by truth value
                    key = (key, tuple(map(truth, flags[start:stop])))
                except Exception:  # a flag without one: the renderer's business
                    continue
            layout = layouts.get(key, _MISSING)
            if layout is _MISSING:
                layout = layouts[key] = self._layout(conversations[k], key, train_on_what, effort)
            if layout is None:
                continue
            end = start + layout.messages
            parts = layout.parts.copy()
            parts[1::2] = tokens[start:end]
            examples.append((indices[k], reduce(iadd, parts, [])))
            message_runs = layout.runs.copy()
            message_runs[2::3] = lengths[start:end]
            runs += message_runs
            weights += layout.weights
        del tokens  # before the examples are built: the ids are all that is kept
        all_weights = np.repeat(np.frombuffer(weights, dtype=np.float32), runs)
        stop = 0
        for index, ids in examples:
            start, stop = stop, stop + len(ids)
            results[index] = (model_input([text_chunk(ids)]), all_weights[start:stop])

    def _layouts_for(self, train_on_what: TrainOnWhat, effort: float) -> dict[Any, Any]:
        key = (TrainOnWhat(train_on_what), millieffort_of(effort))
        layouts = self._layouts.get(key)
        if layouts is None or len(layouts) > _MAX_LAYOUTS:
            layouts = self._layouts[key] = {}
        return layouts

    def _layout(
        self, messages: list[Message], key: Any, train_on_what: TrainOnWhat, effort: float
    ) -> _Layout | None:
        """The layout of ``messages``' shape (None: nothing trained, no example)."""
        roles: tuple[str, ...] = key if train_on_what != TrainOnWhat.CUSTOMIZED else key[0]
        assistants = [i for i, role in enumerate(roles) if role == "assistant"]
        targets = assistant_target_indices(messages, train_on_what, assistants)
        if not targets:
            return None
        frame, trained = self._frame, set(targets)
        parts: list[list[int] | None] = []
        runs: list[int | None] = []
        weights: list[float] = []
        between: list[int] = []  # the previous message's end, then this one's lead
        lead = True
        for i, role in enumerate(roles[: targets[-1] + 1]):
            effort_message: list[int] = []
            if lead and role != "system":  # the effort message follows the leading systems
                effort_message, lead = frame.effort_tokens(effort), False
            header = list(frame.headers[role])
            end = [frame.end, frame.end_sampling] if role == "assistant" else [frame.end]
            parts += [between + effort_message + header, None]
            between = end
            weight = float(i in trained)
            runs += [len(effort_message), len(header) + len(end), None]
            weights += [0.0, weight, weight]
        parts.append(between)
        return _Layout(targets[-1] + 1, parts, runs, np.array(weights, np.float32).tobytes())


_MISSING: Any = object()


def _checked(
    conversations: Sequence[Any],
) -> tuple[list[Message], tuple[str, ...], list[str]] | None:
    """Every message of ``conversations`` (all plain, else None), their roles and contents.

    ``PlainFrame.examples``' checks, over the whole batch at once: lists of dicts with string
    ``role`` and ``content``, no other field but ``trainable``, a role tml_v0 frames."""
    if set(map(type, conversations)) != {list} or not all(conversations):
        return None
    flat: list[Any] = list(chain.from_iterable(conversations))
    if set(map(type, flat)) != {dict}:
        return None
    # Two fields are role and content (else a lookup below fails); more: which ones.
    if set(map(len, flat)) != {2} and not set().union(*flat) <= PLAIN_FIELDS:
        return None
    try:
        roles = tuple(map(_ROLE, flat))
        contents = list(map(_CONTENT, flat))
    except KeyError:
        return None
    if (
        set(map(type, roles)) != {str}
        or not _ROLES.issuperset(roles)
        or set(map(type, contents)) != {str}
    ):
        return None
    return flat, roles, contents


def _plain_indices(conversations: Sequence[Any], start: int, stop: int) -> list[int]:
    """The indices in [start, stop) of the conversations that pass :func:`_checked`, found by
    halving: a few checks of the whole batch each, where only some are not plain."""
    if _checked(conversations[start:stop]) is not None:
        return list(range(start, stop))
    if stop - start == 1:
        return []
    middle = (start + stop) // 2
    return [
        *_plain_indices(conversations, start, middle),
        *_plain_indices(conversations, middle, stop),
    ]


def _encode_distinct(encode: Any, contents: list[str]) -> dict[str, list[int] | None]:
    """Each distinct content's tokens, None for one the tokenizer refuses (lone surrogates:
    tml-renderers refuses them too)."""
    distinct = dict.fromkeys(contents)
    try:
        return dict(zip(distinct, map(encode, distinct), strict=True))
    except UnicodeEncodeError:
        return {text: _encode_or_none(encode, text) for text in distinct}


def _encode_or_none(encode: Any, text: str) -> list[int] | None:
    try:
        return encode(text)
    except UnicodeEncodeError:
        return None


__all__ = ["PlainBatch"]
