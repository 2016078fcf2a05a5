"""The batch template path's assembly: a planned plain conversation -> its chunks and weights.

Why: assembling message by message (which chunks, whether each is trained, its weight) redoes
for every conversation what only its shape decides. :class:`Assembly` works that out once per
:class:`~cookbook.renderers.batch_template.Layout` (and, in CUSTOMIZED mode, per set of
trainable flags) as a recipe: the fixed chunks (BOS, headers, lead, close, stop overlap) in
place, a hole per output chunk, each chunk's weight; a conversation is then its recipe with its
output chunks put in the holes and one ``repeat`` of the recipe's weights. One chunk per
distinct text, made on first use (a text that is only ever part of a joined chunk gets none).
:func:`texts_to_encode` lists the texts to encode before that (headers once per layout).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import tinker

from cookbook.renderers.base import OUTPUT_IS_TRAINED, Renderer
from cookbook.renderers.batch_memo import TokenMemo
from cookbook.renderers.batch_template import Layout, MessageTexts, Texts
from cookbook.renderers.types import Example, Message, TrainOnWhat, model_input, text_chunk

# Chunks by text(s), and the memo table of their ids.
_Table = tuple[dict[Texts, tinker.EncodedTextChunk], Mapping[str, list[int]]]


class _Recipe:
    """A shape's example: ``parts`` with None where each output goes (``outputs``: position,
    chunk table or None where the renderer's ``split`` method divides header and output, which
    then fill the position before too), the weight of each part (``weights``, and as an array
    in the example's dtype), and the outputs' positions that are left out when empty."""

    __slots__ = ("array", "drops", "outputs", "parts", "weights")

    def __init__(
        self,
        parts: list[tinker.EncodedTextChunk | None],
        weights: list[int | float],
        outputs: list[tuple[int, _Table | None, str | None]],
        drops: list[int],
        dtype: type[np.generic],
    ) -> None:
        self.parts = parts
        self.weights = weights
        self.array = np.array(weights, dtype=dtype)
        self.outputs = outputs
        self.drops = drops


class Assembly:
    """One batch's examples of planned plain conversations, from ``memo``'s ids (filled with
    every text of their plans before the first example is asked for)."""

    def __init__(self, renderer: Renderer, memo: TokenMemo, train_on_what: TrainOnWhat) -> None:
        self._renderer = renderer
        self.memo = memo
        self._plain: _Table = ({}, memo.ids)
        self._split: _Table = ({}, memo.split_ids)
        bos = renderer._bos_tokens
        self._bos = text_chunk(list(bos)) if bos else None
        # torch.tensor() of the reference: the BOS weight 0.0 (or no data) makes it float32.
        self._dtype = np.float32 if bos else np.int64
        self._is_trained = OUTPUT_IS_TRAINED[train_on_what]
        self._customized = train_on_what == TrainOnWhat.CUSTOMIZED
        self._header_weight = int(train_on_what == TrainOnWhat.ALL_TOKENS)
        self._recipes: dict[object, _Recipe] = {}
        self._divided: dict[tuple[str, str], tuple[tinker.EncodedTextChunk, ...]] = {}
        self.splits: dict[tuple[str, str], int] = {}
        """(prefix, text) -> where the renderer's ``split`` method divides the text's ids,
        where the encoding side worked it out already (the pipeline's worker does, with the
        text's encode: the method may use the tokenizer)."""

    def example(
        self, rendered: list[Message], texts: list[MessageTexts], layout: Layout
    ) -> Example:
        """The example of a conversation that renders as ``rendered``, planned as ``texts``."""
        key: object = layout
        if self._customized:  # the only mode where a message's own field sets its weight
            is_trained = self._is_trained
            key = (layout, tuple([is_trained(m, False, False) for m in rendered]))
        recipe = self._recipes.get(key)
        if recipe is None:
            recipe = self._recipes[key] = self._recipe(rendered, layout)
        parts = recipe.parts.copy()
        for (header, output, _), (at, table, method) in zip(texts, recipe.outputs, strict=True):
            if table is None:
                parts[at - 1], parts[at] = self._divide(output, method, header)  # type: ignore[arg-type]
            else:
                found = table[0].get(output)
                parts[at] = found if found is not None else _new_chunk(output, table)
        weights = recipe.array
        if recipe.drops:  # no chunk where such an output has no ids
            empty = {at for at in recipe.drops if not parts[at].tokens}  # type: ignore[union-attr]
            if empty:
                parts = [part for at, part in enumerate(parts) if at not in empty]
                weights = np.array(
                    [w for at, w in enumerate(recipe.weights) if at not in empty], weights.dtype
                )
        weight_array = weights.repeat([len(part.tokens) for part in parts])  # type: ignore[union-attr]
        if not weight_array.size:
            weight_array = weight_array.astype(np.float32)
        return model_input(parts), weight_array

    def _recipe(self, rendered: list[Message], layout: Layout) -> _Recipe:
        """The recipe of ``rendered``'s shape. The renderers on the template path find the last
        assistant turn from the roles alone where messages are plain (the base rule, Kimi K2's
        and DeepSeek V4.1's), so one conversation answers for its shape."""
        last = len(rendered) - 1
        turn_start = self._renderer._last_assistant_turn_start_index(rendered[:-1])
        header_weight, fixed = self._header_weight, self._fixed
        parts: list[tinker.EncodedTextChunk | None] = []
        weights: list[int | float] = []
        if self._bos is not None:
            parts.append(self._bos)
            weights.append(0.0)
        outputs: list[tuple[int, _Table | None, str | None]] = []
        drops: list[int] = []
        for i, (message, slot) in enumerate(zip(rendered, layout.slots, strict=True)):
            mt = slot.template
            trained = int(self._is_trained(message, i == last, i >= turn_start))
            if mt.split is not None:
                parts += (None, None)
                weights += (header_weight, trained)
                outputs.append((len(parts) - 1, None, mt.split))
            else:
                if slot.header is not None:
                    parts.append(fixed(slot.header))
                    weights.append(header_weight)
                if mt.lead_chunk is not None:
                    parts.append(fixed(mt.lead_chunk))
                    weights.append(trained)
                parts.append(None)
                weights.append(trained)
                outputs.append(
                    (len(parts) - 1, self._split if mt.encode_split else self._plain, None)
                )
            if mt.drop_empty_output:
                drops.append(len(parts) - 1)
            if mt.close_chunk is not None:
                parts.append(fixed(mt.close_chunk))
                weights.append(trained)
            if mt.stop_overlap is not None and i == last:
                parts.append(fixed(mt.stop_overlap))
                weights.append(trained)
        return _Recipe(parts, weights, outputs, drops, self._dtype)

    def _fixed(self, texts: Texts) -> tinker.EncodedTextChunk:
        found = self._plain[0].get(texts)
        return found if found is not None else _new_chunk(texts, self._plain)

    def _divide(self, text: str, method: str, prefix: str) -> tuple[tinker.EncodedTextChunk, ...]:
        """(header, output) of one text split by the renderer, once per distinct text."""
        found = self._divided.get((prefix, text))
        if found is None:
            ids = self.memo.ids[text]
            at = self.splits.get((prefix, text))
            if at is None:
                self.memo.settle()  # the renderer's method may use the tokenizer
                at = getattr(self._renderer, method)(prefix, ids)
            found = self._divided[(prefix, text)] = (text_chunk(ids[:at]), text_chunk(ids[at:]))
        return found


def texts_to_encode(
    plans: Iterable[tuple[object, object, list[MessageTexts], Layout] | None],
    fixed: Iterable[str],
) -> tuple[dict[str, None], dict[str, None]]:
    """Every distinct text that ``plans`` (:meth:`ChatTemplate.plan`'s, None for a conversation
    that is not plain) and the ``fixed`` chunks need, as ``_encode`` and as ``_encode_split``
    encodes them. Headers are fixed per layout, so they are gathered once per layout."""
    texts: dict[str, None] = dict.fromkeys(fixed)
    split_texts: dict[str, None] = {}
    layouts: set[Layout] = set()
    for plan in plans:
        if plan is None:
            continue
        layout = plan[3]
        if layout not in layouts:
            layouts.add(layout)
            for slot in layout.slots:
                if slot.header is not None and not slot.split:
                    texts.update(dict.fromkeys(_each(slot.header)))
        for _, output, template in plan[2]:
            into = split_texts if template.encode_split else texts
            if isinstance(output, str):
                into[output] = None
            else:
                into.update(dict.fromkeys(output))
    return texts, split_texts


def _each(texts: Texts) -> tuple[str, ...]:
    return (texts,) if isinstance(texts, str) else texts


def _new_chunk(texts: Texts, table: _Table) -> tinker.EncodedTextChunk:
    """The chunk of a text (sharing the memo's id list) or of several (their ids joined),
    kept in ``table``: one per distinct text(s) in a batch."""
    chunks, ids = table
    if isinstance(texts, str):
        found = chunks[texts] = text_chunk(ids[texts])
        return found
    first, *rest = texts
    joined = ids[first].copy()  # list concatenation: memcpy and increfs, no Python per id
    for text in rest:
        joined += ids[text]
    found = chunks[texts] = text_chunk(joined)
    return found


__all__ = ["Assembly", "texts_to_encode"]
