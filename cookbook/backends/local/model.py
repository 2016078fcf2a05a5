"""LoRA on the stand-in, and Tinker's ``cross_entropy`` computed the cheap way.

LoRA follows Tinker's defaults: adapters on the attention projections (``train_attn``), the MLP
projections (``train_mlp``) and the unembedding (``train_unembed``, the LM head), with peft's
initialisation (A random from the seed, B zero, so a new adapter leaves the model unchanged)
and scaling ``lora_alpha / rank``. The embedding and all base weights stay frozen.

``cross_entropy`` (Tinker's definition): for datum ``d`` and position ``i``, the logprob of
``target_tokens[i]`` given ``model_input[: i + 1]``; loss = ``-sum(weights * logprobs)`` over
the batch, gradients summed into the adapter. On CPU the vocabulary projection dominates
(hidden x 128k per position), so it runs only at positions whose weight is non-zero: their
logprobs are exact, the others are returned as 0.0 (``full_logprobs`` scores every position).
The transformer trunk runs on length buckets (datums sorted by length, right-padded to the
bucket's longest, at most ``PAD_SLACK`` padded/real tokens), so small sequences share matrix
products without padding waste; the scored hidden states of the whole batch then go through
the LM head together in chunks, which bounds memory to ``LM_HEAD_CHUNK x vocab`` floats while
keeping those products large. Results are deterministic for a given batch; which datums share
a bucket can move float32 results in the last bits, as any batched matmul would.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tinker import types

from cookbook.exceptions import ConfigurationError

LM_HEAD_CHUNK = 512  # positions per vocabulary projection: 512 x 128256 floats = 263 MB
GROUP_TOKENS = 8192  # trunk activations kept for backward at once, in tokens
PAD_SLACK = 1.25  # padded tokens / real tokens allowed in a length bucket
_ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
_MLP = ("gate_proj", "up_proj", "down_proj")
_UNEMBED = ("lm_head",)


@dataclass(frozen=True)
class LoraSettings:
    """Everything that shapes an adapter; stored in checkpoints to rebuild it."""

    rank: int
    alpha: float
    seed: int
    train_mlp: bool = True
    train_attn: bool = True
    train_unembed: bool = True

    def target_modules(self) -> list[str]:
        targets = [
            *(_ATTN if self.train_attn else ()),
            *(_MLP if self.train_mlp else ()),
            *(_UNEMBED if self.train_unembed else ()),
        ]
        if not targets:
            raise ConfigurationError(
                "LoRA needs at least one of train_mlp, train_attn, train_unembed"
            )
        return targets


def attach_lora(base: torch.nn.Module, settings: LoraSettings) -> torch.nn.Module:
    """A copy of ``base`` with a fresh adapter; only the adapter requires grad."""
    if settings.rank < 1:
        raise ConfigurationError(f"LoRA rank must be >= 1, got {settings.rank}")
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=0.0,
        target_modules=settings.target_modules(),
    )
    model = copy.deepcopy(base)
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        # The LM head is tied to the embedding; we adapt only the head and never merge, so
        # peft's advice about ``ensure_weight_tying`` (for merging/exporting) does not apply.
        warnings.filterwarnings("ignore", message=".*ensure_weight_tying.*")
        torch.manual_seed(settings.seed)
        inject_adapter_in_model(config, model)
    return model


def adapter_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


@dataclass(frozen=True)
class _Prepared:
    tokens: torch.Tensor  # [T] int64, the model input
    targets: torch.Tensor  # [k] int64 at the scored positions
    weights: torch.Tensor  # [k] float32 at the scored positions
    positions: torch.Tensor  # [k] int64, the scored positions
    length: int


def check_tokens(tokens: Sequence[int] | np.ndarray, vocab_size: int, what: str) -> np.ndarray:
    array = np.asarray(tokens, dtype=np.int64)
    if array.size and (array.min() < 0 or array.max() >= vocab_size):
        bad = int(array[(array < 0) | (array >= vocab_size)][0])
        raise ConfigurationError(
            f"{what}: token id {bad} is outside the vocabulary (0..{vocab_size - 1})"
        )
    return array


def _prepare(index: int, datum: types.Datum, vocab_size: int, full: bool) -> _Prepared:
    where = f"datum {index}"
    missing = {"target_tokens", "weights"} - set(datum.loss_fn_inputs)
    if missing:
        raise ConfigurationError(f"{where}: loss_fn_inputs lacks {sorted(missing)}")
    try:
        ints = datum.model_input.to_ints()
    except ValueError:
        raise ConfigurationError(f"{where}: the local backend takes text-only inputs") from None
    tokens = check_tokens(ints, vocab_size, f"{where} model_input")
    targets = check_tokens(
        datum.loss_fn_inputs["target_tokens"].data, vocab_size, f"{where} target_tokens"
    )
    weights = np.asarray(datum.loss_fn_inputs["weights"].data, dtype=np.float32)
    for key, values in (("target_tokens", targets), ("weights", weights)):
        if values.shape != tokens.shape:
            raise ConfigurationError(
                f"{where}: {key} has {values.size} entries, model_input has {tokens.size} tokens"
            )
    positions = np.arange(tokens.size) if full else np.flatnonzero(weights)
    return _Prepared(
        tokens=torch.from_numpy(tokens),
        targets=torch.from_numpy(targets[positions]),
        weights=torch.from_numpy(weights[positions]),
        positions=torch.from_numpy(positions),
        length=int(tokens.size),
    )


def _groups(prepared: list[_Prepared]) -> Iterator[list[int]]:
    """Indices of consecutive datums with scored positions, <= GROUP_TOKENS tokens a group."""
    group: list[int] = []
    size = 0
    for index, item in enumerate(prepared):
        if not len(item.positions):
            continue
        if group and size + item.length > GROUP_TOKENS:
            yield group
            group, size = [], 0
        group.append(index)
        size += item.length
    if group:
        yield group


def _buckets(group: list[_Prepared]) -> list[list[int]]:
    """Datums of similar length, so a bucket right-padded to its longest wastes <= PAD_SLACK."""
    order = sorted(range(len(group)), key=lambda i: group[i].length)
    buckets: list[list[int]] = []
    real = 0
    for i in order:  # ascending: the new datum is the bucket's longest
        bucket = buckets[-1] if buckets else []
        if bucket and (len(bucket) + 1) * group[i].length <= PAD_SLACK * (real + group[i].length):
            bucket.append(i)
            real += group[i].length
        else:
            buckets.append([i])
            real = group[i].length
    return buckets


def _trunk(model: torch.nn.Module, group: list[_Prepared]) -> torch.Tensor:
    """Final hidden states at the scored positions of the group, in datum order.

    Right padding needs no attention mask: attention is causal, so a real position never sees
    the padding after it, and padded positions are never scored.
    """
    selected: list[torch.Tensor | None] = [None] * len(group)
    for bucket in _buckets(group):
        width = max(group[i].length for i in bucket)
        ids = torch.zeros(len(bucket), width, dtype=torch.long)
        for row, i in enumerate(bucket):
            ids[row, : group[i].length] = group[i].tokens
        hidden = model.model(input_ids=ids, use_cache=False).last_hidden_state
        for row, i in enumerate(bucket):
            selected[i] = hidden[row, group[i].positions]
    return torch.cat(selected)


def _scored_nll(model: torch.nn.Module, group: list[_Prepared], backward: bool) -> torch.Tensor:
    """-logprob at every scored position of the group, in order; backpropagates if asked."""
    with torch.set_grad_enabled(backward):
        hidden = _trunk(model, group)
        targets = torch.cat([item.targets for item in group])
        weights = torch.cat([item.weights for item in group])
        leaf = hidden.detach().requires_grad_(backward)
        parts = []
        for start in range(0, len(leaf), LM_HEAD_CHUNK):
            chunk = slice(start, start + LM_HEAD_CHUNK)
            nll = F.cross_entropy(model.lm_head(leaf[chunk]), targets[chunk], reduction="none")
            if backward:
                (nll * weights[chunk]).sum().backward()
            parts.append(nll.detach())
        if backward and hidden.requires_grad:  # False when only the LM head is adapted
            hidden.backward(leaf.grad)
    return torch.cat(parts)


def cross_entropy(
    model: torch.nn.Module,
    data: Sequence[types.Datum],
    *,
    vocab_size: int,
    full_logprobs: bool,
    backward: bool,
) -> types.ForwardBackwardOutput:
    """Tinker's ``cross_entropy`` output for ``data``; with ``backward``, grads accumulate."""
    prepared = [_prepare(i, d, vocab_size, full_logprobs) for i, d in enumerate(data)]
    scored: list[torch.Tensor | None] = [None] * len(prepared)
    for group in _groups(prepared):
        nll = _scored_nll(model, [prepared[i] for i in group], backward)
        for index, part in zip(
            group, nll.split([len(prepared[i].positions) for i in group]), strict=True
        ):
            scored[index] = part
    outputs, loss = [], 0.0
    for item, nll in zip(prepared, scored, strict=True):
        logprobs = np.zeros(item.length, dtype=np.float32)
        if nll is not None:
            logprobs[item.positions.numpy()] = -nll.numpy()
            loss += float(torch.dot(nll.double(), item.weights.double()))
        outputs.append({"logprobs": types.TensorData.from_numpy(logprobs)})
    return types.ForwardBackwardOutput(
        loss_fn_output_type="ArrayRecord", loss_fn_outputs=outputs, metrics={"loss:sum": loss}
    )
