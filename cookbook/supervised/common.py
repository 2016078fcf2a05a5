"""Rendered conversations -> training datums, and the NLL / bits-per-byte metrics over them.

Same semantics as ``tinker_cookbook.supervised.common`` (0.5.8), on numpy instead of torch: the
renderers here return numpy weights. Where the reference computes in float32 tensors (the mean
reduction, the NLL dot products, the per-datum BPB sums) this module computes in float32 too,
so values agree to the last bit or, for long reductions whose summation order differs between
torch and numpy, to float32 rounding.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import tinker

from cookbook.exceptions import DataFormatError
from cookbook.renderers import Message, Renderer, TrainOnWhat
from cookbook.renderers.batch import build_supervised_examples_batch
from cookbook.renderers.types import text_chunk
from cookbook.tokenizers import Tokenizer

logger = logging.getLogger(__name__)

Reduction = Literal["none", "mean"]
_IMAGE_CHUNKS = (tinker.types.ImageChunk, tinker.types.ImageAssetPointerChunk)


def _truncate_right(
    chunks: list[tinker.ModelInputChunk], max_length: int
) -> list[tinker.ModelInputChunk]:
    """Cut the sequence to ``max_length`` tokens from the end; a non-text chunk goes whole."""
    total = sum(chunk.length for chunk in chunks)
    while total > max_length and chunks:
        last = chunks[-1]
        overflow = total - max_length
        if isinstance(last, tinker.EncodedTextChunk) and overflow < last.length:
            chunks[-1] = text_chunk(list(last.tokens[:-overflow]))
            total = max_length
        else:
            chunks.pop()
            total -= last.length
    return chunks


def _shift(chunks: list[tinker.ModelInputChunk]) -> tuple[tinker.ModelInput, list[int]]:
    """Inputs = every token but the last (chunk boundaries kept); targets = every token but the
    first, with image positions as 0 (images carry no loss)."""
    if sum(chunk.length for chunk in chunks) < 2:
        raise DataFormatError("a supervised example needs at least 2 tokens (input and target)")
    if not isinstance(chunks[-1], tinker.EncodedTextChunk):
        raise DataFormatError(
            f"the last chunk of a supervised example must be text, not {type(chunks[-1]).__name__}"
        )
    last = chunks[-1]
    inputs = chunks[:-1]
    if last.length > 1:
        inputs.append(text_chunk(list(last.tokens[:-1])))
    tokens: list[int] = []
    for chunk in chunks:
        if isinstance(chunk, tinker.EncodedTextChunk):
            tokens.extend(chunk.tokens)
        else:
            tokens.extend([0] * chunk.length)
    # Chunk instances, nothing to validate (validation was a fifth of a datum's cost).
    return tinker.ModelInput.model_construct(chunks=inputs), tokens[1:]


def datum_from_model_input_weights(
    model_input: tinker.ModelInput,
    weights: np.ndarray,
    max_length: int | None = None,
    reduction: Reduction = "none",
) -> tinker.Datum:
    """A cross-entropy datum: right-shifted inputs, left-shifted targets, aligned weights.

    Truncation happens before the shift, so the datum holds at most ``max_length - 1`` tokens,
    as in the reference. ``reduction="mean"`` makes each example's weights sum to 1, so every
    example contributes its mean token NLL whatever its length.
    """
    if reduction not in ("none", "mean"):
        raise ValueError(f"Unknown reduction mode: {reduction!r}")
    chunks = list(model_input.chunks)
    if max_length is not None:
        chunks = _truncate_right(chunks, max_length)
    # An empty assistant message renders an empty chunk; left at the end it would stop the
    # shift from dropping the last real token.
    chunks = [c for c in chunks if not (isinstance(c, tinker.EncodedTextChunk) and c.length == 0)]
    while chunks and isinstance(chunks[-1], _IMAGE_CHUNKS):
        chunks.pop()
    inputs, targets = _shift(chunks)

    sliced = np.asarray(weights)[1 : len(targets) + 1]
    if reduction == "mean":
        total = float(sliced.sum())
        # float32 like the reference's torch division (an int64 tensor divides into float32).
        weights_f32 = sliced.astype(np.float32)
        if total > 0:
            weights_f32 = weights_f32 / np.float32(total)
    else:
        weights_f32 = sliced.astype(np.float32)
    return tinker.Datum(
        model_input=inputs,
        loss_fn_inputs={
            "weights": tinker.TensorData(
                data=weights_f32, dtype="float32", shape=list(weights_f32.shape)
            ),
            "target_tokens": tinker.TensorData(data=targets, dtype="int64", shape=[len(targets)]),
        },
    )


def conversation_to_datum(
    conversation: list[Message],
    renderer: Renderer,
    max_length: int | None,
    train_on_what: TrainOnWhat = TrainOnWhat.ALL_ASSISTANT_MESSAGES,
    reduction: Reduction = "mean",
) -> tinker.Datum:
    """Render and shift one conversation; SFT's default is the per-example mean reduction."""
    model_input, weights = renderer.build_supervised_example(
        conversation, train_on_what=train_on_what
    )
    return datum_from_model_input_weights(model_input, weights, max_length, reduction=reduction)


def conversations_to_datums(
    conversations: Sequence[list[Message]],
    renderer: Renderer,
    max_length: int | None,
    train_on_what: TrainOnWhat = TrainOnWhat.ALL_ASSISTANT_MESSAGES,
    reduction: Reduction = "mean",
) -> list[tinker.Datum]:
    """``[conversation_to_datum(c, ...) for c in conversations]``, rendered as one batch.

    Why: a training batch renders every conversation anyway; the batch renderer
    (``cookbook/renderers/batch.py``) encodes all their texts in one tokenizer call. Same datums,
    same exception for the first conversation that fails.
    """
    examples = build_supervised_examples_batch(renderer, conversations, train_on_what)
    return [
        datum_from_model_input_weights(model_input, weights, max_length, reduction=reduction)
        for model_input, weights in examples
    ]


def compute_mean_nll(
    logprobs_list: Sequence[tinker.TensorData], weights_list: Sequence[tinker.TensorData]
) -> float:
    """``-sum(logprobs * weights) / sum(weights)`` over the whole batch; nan without weight."""
    weighted = np.float32(0.0)
    total = np.float32(0.0)
    for logprobs, weights in zip(logprobs_list, weights_list, strict=True):
        w = weights.to_numpy().astype(np.float32, copy=False)
        weighted += np.dot(logprobs.to_numpy().astype(np.float32, copy=False), w)
        total += w.sum(dtype=np.float32)
    if total == 0:
        logger.warning("No valid weights found for NLL computation")
        return float("nan")
    return float(-weighted / total)


def _special_ids(tokenizer: Tokenizer) -> frozenset[int]:
    ids = getattr(tokenizer, "all_special_ids", None) or []
    return frozenset(int(i) for i in ids if i is not None)


def _is_special(token_id: int, tokenizer: Tokenizer, special_ids: frozenset[int]) -> bool:
    if token_id in special_ids:
        return True
    method = getattr(tokenizer, "is_special_token", None)
    return callable(method) and bool(method(token_id))


def _decoded_bytes(token_ids: list[int], tokenizer: Tokenizer) -> int:
    text: Any = tokenizer.decode(token_ids, skip_special_tokens=False)
    if isinstance(text, list):  # some tokenizers decode to a list of pieces
        text = "".join(text)
    return len(text.encode("utf-8"))


def counted_byte_count(token_ids: list[int], counted: list[bool], tokenizer: Tokenizer) -> int:
    """UTF-8 bytes of the counted tokens, each contiguous run decoded on its own.

    Decoding runs separately keeps text across an uncounted gap from merging (a byte-level BPE
    piece split by the gap would otherwise decode to different bytes).
    """
    total = 0
    run: list[int] = []
    for token_id, is_counted in zip(token_ids, counted, strict=True):
        if is_counted:
            run.append(token_id)
        elif run:
            total += _decoded_bytes(run, tokenizer)
            run = []
    if run:
        total += _decoded_bytes(run, tokenizer)
    return total


_counted_byte_count = counted_byte_count
"""The reference's (private) name, which its tests import."""


def compute_bpb(
    logprobs_list: Sequence[tinker.TensorData],
    weights_list: Sequence[tinker.TensorData],
    target_tokens_list: Sequence[tinker.TensorData],
    tokenizer: Tokenizer,
) -> float:
    """Bits per UTF-8 byte of the trained, non-special target text; nan if it has no bytes.

    Unlike mean NLL it is comparable across tokenizers. Weights are only a ``> 0`` mask (so
    mean-reduced weights give the same value as 0/1 ones), and special tokens such as
    ``<|eot_id|>`` are left out of both the nats and the bytes: they carry no text, and their
    number depends on the chat template.
    """
    special_ids = _special_ids(tokenizer)
    total_nats = 0.0
    total_bytes = 0
    for logprobs, weights, target_tokens in zip(
        logprobs_list, weights_list, target_tokens_list, strict=True
    ):
        token_ids = [int(t) for t in target_tokens.data]
        counted = [
            w > 0 and not _is_special(t, tokenizer, special_ids)
            for w, t in zip(weights.data, token_ids, strict=True)
        ]
        lp = logprobs.to_numpy().astype(np.float32, copy=False)
        total_nats += float(-lp[np.asarray(counted, dtype=bool)].sum(dtype=np.float32))
        total_bytes += counted_byte_count(token_ids, counted, tokenizer)
    if total_bytes == 0:
        logger.warning("No target bytes found for BPB computation")
        return float("nan")
    return total_nats / (math.log(2) * total_bytes)


__all__ = [
    "compute_bpb",
    "compute_mean_nll",
    "conversation_to_datum",
    "conversations_to_datums",
    "counted_byte_count",
    "datum_from_model_input_weights",
]
