"""The batch renderer's template fast path, its assembly: plain conversations planned by a
:class:`~cookbook.renderers.batch_template.ChatTemplate`, their texts encoded in one batch per
encoding hook, one chunk per distinct text, weights with numpy
(:class:`~cookbook.renderers.batch_template_assembly.Assembly`).

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

from cookbook.renderers.base import Renderer
from cookbook.renderers.batch_memo import SPOT_CHECKS, TokenMemo, encode_many, memo_view
from cookbook.renderers.batch_template import ChatTemplate, Layout, MessageTexts
from cookbook.renderers.batch_template_assembly import Assembly, texts_to_encode
from cookbook.renderers.encode_pipeline import (
    INLINE,
    EncodePipeline,
    Executor,
    shared_worker,
    usable_cores,
)
from cookbook.renderers.types import Example, Message, TrainOnWhat

# The messages the generation-prompt check gets, the rendered messages, their texts and layout.
Plan = tuple[list[Message], list[Message], list[MessageTexts], Layout]
Planned = tuple[list[Message], Plan | None]

# Conversations per part of a pipelined batch, and the smallest batch pipelined (one part below
# it: a thread hand-off per part costs more than the overlap saves there). Measured on 64
# conversations: parts of 8 cost 7-10% more CPU than one part, of 16 1-5%, of 32 ~0%.
PART = 16
PIPELINED_FROM = 32


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
    with EncodePipeline(executor) as pipe:
        memo = TokenMemo(renderer, settle=pipe.drain)
        # Built before any encode is in flight: it asks the renderer for its BOS tokens.
        assembly = Assembly(renderer, memo, train_on_what)
        planned = _planned(
            template, renderer, conversations, train_on_what, leading, part, pipe, assembly
        )
        return _assembled(template, renderer, train_on_what, planned, pipe, assembly)


# A part's ids by text, by text for the split hook, and its header splits (Assembly.splits).
_Encoded = tuple[dict[str, list[int]], dict[str, list[int]], dict[tuple[str, str], int]]


def _encode(
    renderer: Renderer,
    texts: list[str],
    split_texts: list[str],
    divisions: dict[tuple[str, str], str],
    checks: int,
) -> _Encoded:
    """One part's texts -> ids, in the worker: both hooks' batches (``encode_many``), each
    with ``checks`` spot checks; then where the renderer's method (``MessageTemplate.split``)
    divides each (prefix, text) just encoded."""
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
    assembly: Assembly,
) -> Iterator[Planned]:
    """Each conversation and its plan (None: not plain), a part at a time once that part's
    texts are in the memo: plan part 0, submit its encode, plan part 1, submit, wait for 0,
    yield it, plan part 2... After an encode failed, every conversation from that part on is
    yielded as not plain, for the renderer to render (or raise) on its own."""
    customized = train_on_what == TrainOnWhat.CUSTOMIZED
    memo = assembly.memo

    def add(encoded: _Encoded) -> None:
        ids, split_ids, splits = encoded
        memo.ids.update(ids)
        memo.split_ids.update(split_ids)
        assembly.splits.update(splits)

    requested: set[str] = set()
    requested_split: set[str] = set()
    ready: deque[tuple[int, list[Planned]]] = deque()
    starts = range(0, len(conversations), part_size)
    for index, start in enumerate(starts):
        part: list[Planned] = []
        divisions: dict[tuple[str, str], str] = {}
        for messages in conversations[start : start + part_size]:
            try:
                plan = template.plan(renderer, messages, customized, leading)
            except Exception:
                part.append((messages, None))
                continue
            part.append((messages, plan))
            if plan[3].splits:
                for header, output, message_template in plan[2]:
                    if message_template.split is not None:
                        divisions[(header, output)] = message_template.split  # type: ignore[index]
        texts, split_texts = texts_to_encode(
            (plan for _, plan in part), () if index else template.fixed_texts()
        )
        new = [text for text in texts if text not in requested]
        new_split = [text for text in split_texts if text not in requested_split]
        requested.update(new)
        requested_split.update(new_split)
        # The batch's spot checks spread over its first parts: each re-encodes a whole text.
        checks = len(range(index, SPOT_CHECKS, len(starts)))
        job = pipe.submit(add, _encode, renderer, new, new_split, divisions, checks)
        ready.append((job, part))
        if len(ready) > 1:
            yield from _finished(ready.popleft(), pipe)
    while ready:
        yield from _finished(ready.popleft(), pipe)


def _finished(job: tuple[int, list[Planned]], pipe: EncodePipeline) -> list[Planned]:
    number, part = job
    pipe.wait(number)
    if pipe.failed is not None:
        return [(messages, None) for messages, _ in part]
    return part


def _assembled(
    template: ChatTemplate,
    renderer: Renderer,
    train_on_what: TrainOnWhat,
    planned: Iterator[Planned],
    pipe: EncodePipeline,
    assembly: Assembly,
) -> list[Example]:
    """The examples of ``planned``'s conversations, in order."""
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
        checked, rendered, message_texts, layout = plan
        if warn is not None:
            warn(messages)
        renderer._warn_if_prefixes_differ(train_on_what)
        example_input, weight_array = assembly.example(rendered, message_texts, layout)
        if check_prompt:
            if view is None:
                view = memo_view(renderer, assembly.memo)
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
