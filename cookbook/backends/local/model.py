"""LoRA on the stand-in, and target-token logprobs scored the cheap way (for every loss).

LoRA follows Tinker's defaults: adapters on the attention projections (``train_attn``), the MLP
projections (``train_mlp``) and the unembedding (``train_unembed``, the LM head), with peft's
initialisation (A random from the seed, B zero, so a new adapter leaves the model unchanged)
and scaling ``lora_alpha / rank``. The embedding and all base weights stay frozen.

:func:`score` computes, for datum ``d`` and each scored position ``i``, the logprob of
``target_tokens[i]`` given ``model_input[: i + 1]`` and, when training, backpropagates a loss
given as per-position coefficients (:mod:`cookbook.backends.local.losses` defines the losses
and which positions they score). On CPU the vocabulary projection dominates (hidden x 128k per
position), which is why a loss may score only some positions.
Datums that start with the same tokens (an RL group: one prompt, several completions) share
one pass over that prefix: the prefix runs once with a KV cache, and the members' remaining
tokens run together on copies of it (:func:`_shared_prefix`); autograd sums the members'
gradients into the prefix's activations. A (hidden state, target) pair that several datums
score - every prompt position of a group - goes through the LM head once, with the sum of
their loss coefficients. Both are exact rewritings of the per-datum sums.
The other datums run on length buckets (sorted by length, right-padded to the bucket's
longest, at most ``PAD_SLACK`` padded/real tokens), so small sequences share matrix products
without padding waste; the scored hidden states of the whole batch then go through the LM head
together in chunks, which bounds memory to ``LM_HEAD_CHUNK x vocab`` floats while keeping
those products large. Results are deterministic for a given batch; which datums share a
bucket or a prefix can move float32 results in the last bits, as any batched matmul would.
"""

from __future__ import annotations

import copy
import inspect
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

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
class Scored:
    """One datum as the model scores it: its input, and the positions whose target logprob
    the loss needs (``targets`` holds the target token at each of them)."""

    tokens: torch.Tensor  # [T] int64, the model input
    targets: torch.Tensor  # [k] int64 at the scored positions
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


def _groups(prepared: list[Scored]) -> Iterator[list[int]]:
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


def _buckets(group: list[Scored]) -> list[list[int]]:
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


def cache_keyword() -> str:
    """transformers renamed ``past_key_values`` to ``cache`` during 5.x."""
    from transformers import LlamaForCausalLM

    names = inspect.signature(LlamaForCausalLM.forward).parameters
    return "cache" if "cache" in names else "past_key_values"


def _common_prefix(a: torch.Tensor, b: torch.Tensor) -> int:
    n = min(len(a), len(b))
    differ = torch.nonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n


def _prefix_clusters(group: list[Scored]) -> list[tuple[list[int], int]]:
    """Datums sharing a prefix, as (members, prefix length); a lone datum's prefix is itself.

    Datums are taken in token order, so those sharing a prompt are neighbours; a datum joins the
    cluster before it when that costs fewer trunk tokens than running it alone (a few
    system-prompt tokens in common are not worth a pass of their own).
    """
    order = sorted(range(len(group)), key=lambda i: group[i].tokens.tolist())
    clusters: list[tuple[list[int], int]] = []
    for i in order:
        if clusters:
            members, prefix = clusters[-1]
            shared = _common_prefix(group[members[0]].tokens[:prefix], group[i].tokens)
            lengths = sum(group[j].length for j in members)
            alone = lengths - (len(members) - 1) * prefix + group[i].length
            if shared and lengths + group[i].length - len(members) * shared < alone:
                clusters[-1] = ([*members, i], shared)
                continue
        clusters.append(([i], group[i].length))
    return clusters


def _shared_prefix(
    model: torch.nn.Module, group: list[Scored], members: list[int], prefix: int
) -> tuple[torch.Tensor, list[int], list[torch.Tensor]]:
    """Hidden states of datums sharing ``prefix`` tokens, as rows of one tensor, the members,
    and each member's row at every position: the prefix runs once (KV cache), the members'
    remaining tokens together, right-padded, on repeats of that cache."""
    from transformers import DynamicCache

    keyword = cache_keyword()
    cache = DynamicCache()
    tokens = group[members[0]].tokens[:prefix][None]
    head = model.model(input_ids=tokens, use_cache=True, **{keyword: cache}).last_hidden_state
    rows = [head[0]]
    rest = [i for i in members if group[i].length > prefix]
    width = max((group[i].length - prefix for i in rest), default=0)
    if rest:
        ids = torch.zeros(len(rest), width, dtype=torch.long)
        for row, i in enumerate(rest):
            ids[row, : group[i].length - prefix] = group[i].tokens[prefix:]
        cache.batch_repeat_interleave(len(rest))
        tail = model.model(input_ids=ids, use_cache=True, **{keyword: cache}).last_hidden_state
        rows.append(tail.flatten(0, 1))
    shared = torch.arange(prefix)
    where = dict.fromkeys(members, shared)
    for row, i in enumerate(rest):
        own = prefix + row * width + torch.arange(group[i].length - prefix)
        where[i] = torch.cat([shared, own])
    return torch.cat(rows), members, [where[i] for i in members]


def _trunk(model: torch.nn.Module, group: list[Scored]) -> tuple[torch.Tensor, torch.Tensor]:
    """Final hidden states of the group as rows of one tensor, and the row of every scored
    position of the group, in datum order.

    Right padding needs no attention mask: attention is causal, so a real position never sees
    the padding after it, and padded positions are never scored.
    """
    blocks: list[torch.Tensor] = []
    where: list[torch.Tensor | None] = [None] * len(group)
    offset = 0

    def add(block: torch.Tensor, members: list[int], rows: list[torch.Tensor]) -> None:
        nonlocal offset
        for i, row in zip(members, rows, strict=True):
            where[i] = offset + row[group[i].positions]
        blocks.append(block)
        offset += len(block)

    alone: list[int] = []
    for members, prefix in _prefix_clusters(group):
        if len(members) > 1:
            add(*_shared_prefix(model, group, members, prefix))
        else:
            alone.append(members[0])
    for bucket in _buckets([group[i] for i in alone]):
        members = [alone[b] for b in bucket]
        width = max(group[i].length for i in members)
        ids = torch.zeros(len(members), width, dtype=torch.long)
        for row, i in enumerate(members):
            ids[row, : group[i].length] = group[i].tokens
        hidden = model.model(input_ids=ids, use_cache=False).last_hidden_state
        add(
            hidden.flatten(0, 1),
            members,
            [row * width + torch.arange(width) for row in range(len(members))],
        )
    return torch.cat(blocks), torch.cat(where)


@dataclass(frozen=True)
class _Head:
    """The LM head's weights: the frozen (tied) ``weight`` and, when adapted, LoRA's ``a``
    (rank x hidden), ``b`` (vocab x rank) and ``scaling``."""

    weight: torch.Tensor
    a: torch.nn.Parameter | None = None
    b: torch.nn.Parameter | None = None
    scaling: float = 0.0

    @classmethod
    def of(cls, head: torch.nn.Module) -> _Head:
        if not hasattr(head, "lora_A"):
            return cls(head.weight)
        # attach_lora builds exactly this: one plain adapter, no dropout, bias or variant.
        (name,) = head.active_adapters
        if head.lora_variant or head.lora_bias.get(name) or head.base_layer.bias is not None:
            raise ConfigurationError("the local LM head supports plain LoRA only")
        return cls(
            head.base_layer.weight,
            head.lora_A[name].weight,
            head.lora_B[name].weight,
            head.scaling[name],
        )


def _accumulate(param: torch.nn.Parameter, grad: torch.Tensor) -> None:
    """As autograd does: gradients add up over forward_backward calls until optim_step."""
    if param.grad is None:
        param.grad = grad
    else:
        param.grad.add_(grad)


def _head_nll(
    model: torch.nn.Module,
    hidden: torch.Tensor,
    targets: torch.Tensor,
    coefficients: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """-logprob of each target from the final hidden states, LM_HEAD_CHUNK rows at a time;
    with ``coefficients``, the gradient of ``sum(coefficients * nll)`` accumulated into the
    head's adapter and returned for ``hidden``.

    Written out rather than left to autograd because the vocabulary-wide tensors dominate a
    CPU step: the LoRA term is added into the head's logits in place (its scaling applied on
    the rank-sized side), and the logits buffer becomes the gradient ``c * (softmax -
    onehot)`` in place, so one chunk costs one vocabulary-sized buffer and the matrix
    products, without autograd's copies, scaled temporaries and zero-filled gradients.
    """
    head = _Head.of(model.lm_head)
    parts = []
    grad = torch.empty_like(hidden) if coefficients is not None else None
    with torch.no_grad():
        for start in range(0, len(hidden), LM_HEAD_CHUNK):
            chunk = slice(start, start + LM_HEAD_CHUNK)
            x, target = hidden[chunk], targets[chunk]
            logits = F.linear(x, head.weight)
            xa = None
            if head.a is not None and head.b is not None:
                xa = F.linear(x, head.a) * head.scaling
                logits.addmm_(xa, head.b.t())
            # logsumexp by hand, so that its exponentials stay in the logits' buffer
            target_logit = logits.gather(1, target[:, None])[:, 0]
            peak = logits.amax(dim=1)
            total = logits.sub_(peak[:, None]).exp_().sum(dim=1)
            parts.append(peak + total.log() - target_logit)
            if grad is None or coefficients is None:
                continue
            c = coefficients[chunk].to(logits.dtype)
            g = logits.mul_((c / total)[:, None])  # c * softmax
            g[torch.arange(len(target)), target] -= c
            grad[chunk] = g @ head.weight
            if xa is not None and head.a is not None and head.b is not None:
                gb = (g @ head.b) * head.scaling
                _accumulate(head.b, g.t() @ xa)
                _accumulate(head.a, gb.t() @ x)
                grad[chunk].addmm_(gb, head.a)
    return torch.cat(parts), grad


Coefficients = torch.Tensor | Callable[[torch.Tensor], torch.Tensor]
"""Per scored position of a group, the ``c`` whose ``sum(c * nll)`` has the loss's gradient:
a tensor when the loss is linear in the logprobs (known before scoring), else a function of
the group's detached -logprobs."""


def _scored_nll(
    model: torch.nn.Module, group: list[Scored], backward: bool, coefficients: Coefficients
) -> torch.Tensor:
    """-logprob at every scored position of the group, in order; backpropagates if asked.

    A loss that is not linear in the logprobs needs their values before its gradient is
    known: the LM head then runs twice (once without graph to get them, once to
    backpropagate), the trunk once.
    """
    with torch.set_grad_enabled(backward):
        hidden, rows = _trunk(model, group)
        targets = torch.cat([item.targets for item in group])
        # Each distinct (row, target) pair once, in order of first use.
        pairs, inverse = torch.unique(rows + len(hidden) * targets, return_inverse=True)
        first = torch.full((len(pairs),), len(rows)).scatter_reduce_(
            0, inverse, torch.arange(len(rows)), "amin"
        )
        order = torch.argsort(first)
        inverse = torch.argsort(order)[inverse]
        unique_rows, unique_targets = rows[first[order]], targets[first[order]]
        leaf = hidden.detach()[unique_rows]
        if not backward:
            return _head_nll(model, leaf, unique_targets, None)[0][inverse]
        if callable(coefficients):
            coefficients = coefficients(_head_nll(model, leaf, unique_targets, None)[0][inverse])
        summed = coefficients.new_zeros(len(pairs)).index_add_(0, inverse, coefficients)
        nll, grad = _head_nll(model, leaf, unique_targets, summed)
        if hidden.requires_grad:  # False when only the LM head is adapted
            hidden.backward(torch.zeros_like(hidden).index_add_(0, unique_rows, grad))
    return nll[inverse]


def score(
    model: torch.nn.Module,
    items: Sequence[Scored],
    *,
    backward: bool,
    coefficients: Callable[[list[int]], Coefficients],
) -> list[torch.Tensor | None]:
    """-logprob at the scored positions of each item (None where it has none); with
    ``backward``, the gradient of the loss (through ``coefficients(indices of a group)``)
    accumulates into the adapter.

    The trunk runs on groups of at most GROUP_TOKENS tokens at a time (shared prefixes and
    length buckets within a group); a loss must therefore be a sum of per-datum terms, which
    every built-in Tinker loss is.
    """
    items = list(items)
    scored: list[torch.Tensor | None] = [None] * len(items)
    for group in _groups(items):
        nll = _scored_nll(model, [items[i] for i in group], backward, coefficients(group))
        for index, part in zip(
            group, nll.split([len(items[i].positions) for i in group]), strict=True
        ):
            scored[index] = part
    return scored
