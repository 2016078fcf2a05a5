"""The batch renderer's template fast path, its assembly: plain conversations planned by a
:class:`~cookbook.renderers.batch_template.ChatTemplate`, their texts encoded in one batch per
encoding hook, one chunk per distinct text, weights with numpy.

A conversation that is not plain is rendered by the renderer where it stands in the batch, so
its examples, errors and warnings come in the order one-at-a-time rendering gives them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from itertools import chain

import numpy as np
import tinker

from cookbook.renderers.base import OUTPUT_IS_TRAINED, Renderer
from cookbook.renderers.batch_memo import TokenMemo, memo_view
from cookbook.renderers.batch_template import ChatTemplate, MessageTexts, Texts
from cookbook.renderers.types import Example, Message, TrainOnWhat, model_input, text_chunk

# The messages the generation-prompt check gets, the rendered messages and their texts.
Plan = tuple[list[Message], list[Message], list[MessageTexts]]


def _each(texts: Texts) -> tuple[str, ...]:
    return (texts,) if isinstance(texts, str) else texts


def template_examples(
    template: ChatTemplate,
    renderer: Renderer,
    conversations: Sequence[list[Message]],
    train_on_what: TrainOnWhat,
) -> list[Example]:
    """``[renderer.build_supervised_example(m, train_on_what) for m in conversations]``, the
    plain ones from the template."""
    customized = train_on_what == TrainOnWhat.CUSTOMIZED
    leading = template.leading_messages(renderer)
    # The caller's messages and their plan, or None for a conversation that is not plain.
    plans: list[tuple[list[Message], Plan | None]] = []
    for messages in conversations:
        try:
            plans.append((messages, template.plan(renderer, messages, customized, leading)))
        except Exception:
            plans.append((messages, None))

    texts: dict[str, None] = dict.fromkeys(template.fixed_texts())
    split_texts: dict[str, None] = {}
    for _, plan in plans:
        for header, output, message_template in plan[2] if plan else ():
            if header is not None and message_template.split is None:
                texts.update(dict.fromkeys(_each(header)))
            into = split_texts if message_template.encode_split else texts
            into.update(dict.fromkeys(_each(output)))
    memo = TokenMemo(renderer)
    memo.prefetch(texts)
    memo.prefetch(split_texts, split=True)
    chunks = {text: text_chunk(ids) for text, ids in memo.ids.items()}
    split_chunks = {text: text_chunk(ids) for text, ids in memo.split_ids.items()}

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
            at = getattr(renderer, method)(prefix, ids)
            found = divided[(prefix, text)] = (text_chunk(ids[:at]), text_chunk(ids[at:]))
        return found

    bos = renderer._bos_tokens
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
    for messages, plan in plans:
        if plan is None:
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
