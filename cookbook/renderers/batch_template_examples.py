"""The batch renderer's template fast path, its assembly: plain conversations planned by a
:class:`~cookbook.renderers.batch_template.ChatTemplate`, their texts encoded in one batch per
encoding hook, one chunk per distinct text, weights with numpy.

A large batch goes in parts (``PART`` conversations), pipelined (``encode_pipeline.py``): the
Rust encode of one part runs in a worker thread, GIL released, while this thread plans the next
part and assembles the one before, so on two cores the wall time approaches the CPU time over
two instead of Python plus encode. Every tokenizer call of this thread (a conversation the
renderer renders itself, a memo miss, a header split) first waits for the encodes in flight.

A conversation that is not plain is rendered by the renderer where it stands in the batch, so
its examples, errors and warnings come in the order one-at-a-time rendering gives them.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterator, Sequence
from itertools import chain

import numpy as np
import tinker

from cookbook.renderers.base import OUTPUT_IS_TRAINED, Renderer
from cookbook.renderers.batch_memo import SPOT_CHECKS, TokenMemo, encode_many, memo_view
from cookbook.renderers.batch_template import ChatTemplate, MessageTexts, Texts
from cookbook.renderers.encode_pipeline import (
    INLINE,
    EncodePipeline,
    Executor,
    shared_worker,
    usable_cores,
)
from cookbook.renderers.types import Example, Message, TrainOnWhat, model_input, text_chunk

# The messages the generation-prompt check gets, the rendered messages and their texts.
Plan = tuple[list[Message], list[Message], list[MessageTexts]]

# Conversations per part of a pipelined batch, and the smallest batch pipelined (one part below
# it: a thread hand-off per part costs more than the overlap saves there). Measured on 64
# conversations: parts of 8 cost 7-10% more CPU than one part, of 16 1-5%, of 32 ~0%.
PART = 16
PIPELINED_FROM = 32


def _each(texts: Texts) -> tuple[str, ...]:
    return (texts,) if isinstance(texts, str) else texts


def template_examples(
    template: ChatTemplate,
    renderer: Renderer,
    conversations: Sequence[list[Message]],
    train_on_what: TrainOnWhat,
    executor: Executor | None = None,
) -> list[Example]:
    """``[renderer.build_supervised_example(m, train_on_what) for m in conversations]``, the
    plain ones from the template.

    Conversations are planned, encoded and assembled in parts of ``PART`` (one part below
    ``PIPELINED_FROM``), the encode of one part in ``executor`` (the shared worker thread by
    default) while this thread plans the next and assembles the one before
    (``encode_pipeline.py``)."""
    pipelined = len(conversations) >= PIPELINED_FROM and usable_cores() > 1
    part = PART if pipelined else max(1, len(conversations))
    if executor is None:
        executor = shared_worker() if pipelined else INLINE
    leading = template.leading_messages(renderer)
    # Everything that uses the tokenizer before any encode is in flight.
    bos = renderer._bos_tokens
    with EncodePipeline(executor) as pipe:
        memo = TokenMemo(renderer, before_miss=pipe.drain)
        tables = _Tables(memo)
        planned = _planned(
            template, renderer, conversations, train_on_what, leading, part, pipe, tables
        )
        return _assembled(template, renderer, train_on_what, bos, planned, pipe, tables)


class _Tables:
    """The memo and the chunk per distinct text, filled as each part's encode finishes."""

    def __init__(self, memo: TokenMemo):
        self.memo = memo
        self.chunks: dict[Texts, tinker.EncodedTextChunk] = {}
        self.split_chunks: dict[Texts, tinker.EncodedTextChunk] = {}
        self.divisions: dict[tuple[str, str], int] = {}
        """(prefix, text) -> where the renderer splits the text's ids (``MessageTemplate.split``),
        worked out in the worker: the renderer's method may use the tokenizer."""

    def add(self, encoded: _Encoded) -> None:
        ids, split_ids, divisions = encoded
        self.divisions.update(divisions)
        self.memo.ids.update(ids)
        self.memo.split_ids.update(split_ids)
        self.chunks.update((text, text_chunk(t)) for text, t in ids.items())
        self.split_chunks.update((text, text_chunk(t)) for text, t in split_ids.items())


# A part's ids by text, by text for the split hook, and its divisions (see _Tables).
_Encoded = tuple[dict[str, list[int]], dict[str, list[int]], dict[tuple[str, str], int]]


def _encode(
    renderer: Renderer,
    texts: list[str],
    split_texts: list[str],
    divisions: dict[tuple[str, str], str],
    checks: int,
) -> _Encoded:
    """One part's texts -> ids, in the worker: both hooks' batches (``encode_many``), each
    with ``checks`` spot checks; then the divisions (prefix, text) -> renderer method of the
    texts just encoded."""
    ids = dict(zip(texts, encode_many(renderer, texts, spot_checks=checks), strict=True))
    split_ids = encode_many(renderer, split_texts, split=True, spot_checks=checks)
    divided = {
        (prefix, text): getattr(renderer, method)(prefix, ids[text])
        for (prefix, text), method in divisions.items()
        if text in ids
    }
    return ids, dict(zip(split_texts, split_ids, strict=True)), divided


def _planned(
    template: ChatTemplate,
    renderer: Renderer,
    conversations: Sequence[list[Message]],
    train_on_what: TrainOnWhat,
    leading: list[Message],
    part_size: int,
    pipe: EncodePipeline,
    tables: _Tables,
) -> Iterator[tuple[list[Message], Plan | None]]:
    """Each conversation and its plan (None: not plain), a part at a time once that part's
    texts are in ``tables``: plan part 0, submit its encode, plan part 1, submit, wait for 0,
    yield it, plan part 2... After an encode failed, every conversation from that part on is
    yielded as not plain, for the renderer to render (or raise) on its own."""
    customized = train_on_what == TrainOnWhat.CUSTOMIZED
    requested: set[str] = set()
    requested_split: set[str] = set()
    ready: deque[tuple[int, list[tuple[list[Message], Plan | None]]]] = deque()
    starts = range(0, len(conversations), part_size)
    for index, start in enumerate(starts):
        part: list[tuple[list[Message], Plan | None]] = []
        texts: dict[str, None] = {} if start else dict.fromkeys(template.fixed_texts())
        split_texts: dict[str, None] = {}
        divisions: dict[tuple[str, str], str] = {}
        for messages in conversations[start : start + part_size]:
            try:
                plan = template.plan(renderer, messages, customized, leading)
            except Exception:
                part.append((messages, None))
                continue
            part.append((messages, plan))
            for header, output, message_template in plan[2]:
                if header is not None and message_template.split is None:
                    texts.update(dict.fromkeys(_each(header)))
                elif message_template.split is not None:
                    divisions[(header, output)] = message_template.split  # type: ignore[index]
                into = split_texts if message_template.encode_split else texts
                into.update(dict.fromkeys(_each(output)))
        new = [text for text in texts if text not in requested]
        new_split = [text for text in split_texts if text not in requested_split]
        requested.update(new)
        requested_split.update(new_split)
        # The batch's spot checks spread over its first parts: each re-encodes a whole text.
        checks = len(range(index, SPOT_CHECKS, len(starts)))
        job = pipe.submit(tables.add, _encode, renderer, new, new_split, divisions, checks)
        ready.append((job, part))
        if len(ready) > 1:
            yield from _finished(ready.popleft(), pipe)
    while ready:
        yield from _finished(ready.popleft(), pipe)


def _finished(
    job: tuple[int, list[tuple[list[Message], Plan | None]]], pipe: EncodePipeline
) -> list[tuple[list[Message], Plan | None]]:
    number, part = job
    pipe.wait(number)
    if pipe.failed is not None:
        return [(messages, None) for messages, _ in part]
    return part


def _assembled(
    template: ChatTemplate,
    renderer: Renderer,
    train_on_what: TrainOnWhat,
    bos: list[int],
    planned: Iterator[tuple[list[Message], Plan | None]],
    pipe: EncodePipeline,
    tables: _Tables,
) -> list[Example]:
    """The examples of ``planned``'s conversations, in order."""
    memo, chunks, split_chunks = tables.memo, tables.chunks, tables.split_chunks

    def chunk(texts: Texts, split: bool = False) -> tinker.EncodedTextChunk:
        table = split_chunks if split else chunks
        found = table.get(texts)
        if found is None:  # several texts: their ids joined (in C), once per distinct tuple
            ids = memo.split_ids if split else memo.ids
            found = table[texts] = text_chunk(list(chain.from_iterable(ids[t] for t in texts)))
        return found

    divided: dict[tuple[str, str], tuple[tinker.EncodedTextChunk, tinker.EncodedTextChunk]] = {}

    def divide(text: str, method: str, prefix: str) -> tuple[tinker.EncodedTextChunk, ...]:
        """(header, output) of one text split by the renderer, once per distinct text."""
        found = divided.get((prefix, text))
        if found is None:
            ids = memo.ids[text]
            at = tables.divisions.get((prefix, text))
            if at is None:  # the text was encoded in an earlier part, with another prefix
                pipe.drain()  # the renderer's method may use the tokenizer
                at = getattr(renderer, method)(prefix, ids)
            found = divided[(prefix, text)] = (text_chunk(ids[:at]), text_chunk(ids[at:]))
        return found

    bos_chunk = text_chunk(list(bos))
    is_trained = OUTPUT_IS_TRAINED[train_on_what]
    header_weight = int(train_on_what == TrainOnWhat.ALL_TOKENS)
    # Only these two modes can zero a generation prompt (Renderer._first_trained_message_index).
    check_prompt = train_on_what in (
        TrainOnWhat.LAST_ASSISTANT_MESSAGE,
        TrainOnWhat.LAST_ASSISTANT_TURN,
    )
    warn = None if template.warning_method is None else getattr(renderer, template.warning_method)
    view: Renderer | None = None

    examples: list[Example] = []
    for messages, plan in planned:
        if plan is None:
            pipe.drain()  # the renderer uses the tokenizer
            examples.append(renderer.build_supervised_example(messages, train_on_what))
            continue
        checked, rendered, message_texts = plan
        if warn is not None:
            warn(messages)
        renderer._warn_if_prefixes_differ(train_on_what)
        last = len(rendered) - 1
        turn_start = renderer._last_assistant_turn_start_index(rendered[:-1])
        conv_chunks = [bos_chunk] if bos else []
        weights: list[int | float] = [0.0] if bos else []
        for i, (message, (header, output, mt)) in enumerate(
            zip(rendered, message_texts, strict=True)
        ):
            trained = int(is_trained(message, i == last, i >= turn_start))
            if mt.split is not None:
                head, out = divide(output, mt.split, header)  # type: ignore[arg-type]
                conv_chunks.append(head)
                weights.append(header_weight)
            else:
                if header is not None:
                    conv_chunks.append(chunk(header))
                    weights.append(header_weight)
                if mt.lead_chunk is not None:
                    conv_chunks.append(chunks[mt.lead_chunk])
                    weights.append(trained)
                out = chunk(output, mt.encode_split)
            if out.tokens or not mt.drop_empty_output:
                conv_chunks.append(out)
                weights.append(trained)
            if mt.close_chunk is not None:
                conv_chunks.append(chunks[mt.close_chunk])
                weights.append(trained)
            if mt.stop_overlap is not None and i == last:
                conv_chunks.append(chunks[mt.stop_overlap])
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


__all__ = ["template_examples"]
