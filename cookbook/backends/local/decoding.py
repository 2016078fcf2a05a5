"""Token choice for the local sampling client: several samples' rows at once, each its own draw.

:func:`pick` chooses one token per row of a ``[rows, vocab]`` logits tensor. The
vocabulary-wide arithmetic (log-softmax, temperature, top-k, top-p, softmax) runs on all rows
together; row-wise operations only, so a row's values are those it would have alone. The draw
itself stays per row, with that row's ``torch.Generator``: ``torch.multinomial`` on the row's
probabilities, exactly as a one-row call draws it.

:func:`head_logits` is the LM head for several rows. ``F.linear(h, W)`` (what the model's own
head runs) is a matrix-vector product for one row but, for 2-16 rows, a path 4-6x slower on
this CPU than the same product written ``W @ h.T``; both read the vocabulary-sized weight
once, which is what a decode step costs. Its float32 results can differ from the model's head
in the last bits (another summation order), which is why one row keeps the model's head.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from tinker import types

from cookbook.backends.local.model import _Head
from cookbook.exceptions import ConfigurationError


def parse_stops(stop: Any) -> tuple[set[int], list[str]]:
    """``SamplingParams.stop`` as (token ids, strings)."""
    if stop is None:
        return set(), []
    items = [stop] if isinstance(stop, str) else list(stop)
    ids = {s for s in items if isinstance(s, int)}
    strings = [s for s in items if isinstance(s, str)]
    if "" in strings:
        raise ConfigurationError("sample: an empty stop string would stop before any token")
    return ids, strings


def pick(
    logits: torch.Tensor, params: types.SamplingParams, generators: Sequence[torch.Generator]
) -> tuple[list[int], list[float]]:
    """One token per row of ``logits`` (``[rows, vocab]``), row ``i`` drawn with
    ``generators[i]``, and its logprob under the unfiltered, temperature-1 distribution."""
    logprobs = torch.log_softmax(logits, dim=-1)
    if params.temperature == 0:
        tokens = torch.argmax(logits, dim=-1)  # the first maximum: ties go to the lowest id
    else:
        # Dividing by 1 changes no bit; skipping it saves a vocabulary-wide pass per step.
        scores = logits if params.temperature == 1 else logits / params.temperature
        if 0 < params.top_k < scores.shape[-1]:
            kth = torch.topk(scores, params.top_k, dim=-1).values[:, -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if params.top_p < 1:
            ordered, order = torch.sort(scores, dim=-1, descending=True)
            probs = torch.softmax(ordered, dim=-1)
            # Keep the smallest prefix whose mass reaches top_p (the first token always stays).
            drop = (torch.cumsum(probs, dim=-1) - probs) >= params.top_p
            scores = scores.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), -torch.inf)
        probs = torch.softmax(scores, dim=-1)
        tokens = torch.cat(
            [
                torch.multinomial(row, 1, generator=g)
                for row, g in zip(probs, generators, strict=True)
            ]
        )
    chosen = logprobs.gather(-1, tokens[:, None])[:, 0]
    return tokens.tolist(), chosen.tolist()


def head_logits(lm_head: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """The LM head (with its LoRA term) on final hidden states ``[rows, hidden]``."""
    head = _Head.of(lm_head)
    with torch.no_grad():
        logits = torch.mm(head.weight, hidden.t())  # [vocab, rows]
        if head.a is not None and head.b is not None:
            logits.addmm_(head.b, (F.linear(hidden, head.a) * head.scaling).t())
        # Rows made contiguous for the row-wise softmaxes (3-10x slower on a transposed view);
        # stacking the columns is several times faster here than ``.t().contiguous()``.
        return torch.stack(logits.unbind(1))
