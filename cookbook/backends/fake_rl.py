"""The fake backend's RL side: unseeded sampling that gives reward *mixes*, and the RL losses.

Unseeded sampling (``SamplingParams.seed is None``, what the reference's RL completer sends)
---------------------------------------------------------------------------------------------
An RL loop samples each env of a group with its own ``num_samples=1`` call and the same prompt,
so a sampler keyed only by (prompt, seed) would give a group identical responses, identical
rewards, advantages of 0 - and a parity check of nothing. Like a real sampler without a seed,
each call draws afresh: the draw is keyed by the prompt tokens, the sampling parameters
(temperature, top_p, top_k), the call's index in the backend's call record and the sample's
index within the call. Two loops that make the same calls in the same order get the same
samples; a loop that reorders its calls gets different samples (and its call layer says so).

Each sample, from a ``numpy`` generator seeded by ``sha256`` of that key:

1. the *alphabet* is the prompt's distinct tokens minus the stop token ids, sorted: the digits
   and answer of a few-shot arithmetic prompt are in it, so a final integer sometimes is right;
2. a length ``L`` is drawn uniformly from ``1 .. 2 * max_tokens``; ``L <= max_tokens`` plans
   ``L - 1`` alphabet tokens and then the first stop sequence (a stop id, or a stop string's
   tokens when the service client has a tokenizer); otherwise ``max_tokens`` alphabet tokens;
3. tokens are emitted until a stop id, a stop string in the decoded text (tokenizer needed) or
   ``max_tokens``: ``stop_reason`` is ``"stop"`` for the first two, else ``"length"``.

So about half the samples end with the stop sequence and half run out of tokens, which for
``ProblemEnv`` is the format reward (0 or ``-format_coef``): on the arithmetic env (llama3,
groups of 4, max_tokens 8) 39 of 48 groups have mixed rewards, so advantages are non-zero and
``remove_constant_reward_groups`` removes some groups, not all. A right answer (+1) is rare: the
answer's number token is seldom in the prompt; the reward mix comes from the format reward.
Logprobs are the fake model's (:func:`~cookbook.backends.fake_core.fake_logprobs` at the
sampled positions), so a datum scores the same through ``forward_backward``.

Losses
------
``forward_backward`` takes every built-in ``loss_fn`` but ``custom``. ``cross_entropy`` needs
``target_tokens`` and ``weights``; the RL losses need ``target_tokens``, ``logprobs`` (the
sampler's) and ``advantages``, and accept ``mask``; each must be as long as the model input.
With ``lp`` the fake's logprob, ``r = exp(lp - logprobs)``, ``A`` the advantages and
``clip = clip(r, low, high)`` (``loss_fn_config`` keys ``clip_low_threshold`` /
``clip_high_threshold``; defaults 0.8/1.2, for cispo 0.0/4.0), ``loss:sum`` is the sum over
datums and tokens of:

- importance_sampling: ``-r A``;  ppo: ``-min(r A, clip A)``;  cispo: ``-clip lp A``;
- dro: ``-(lp A - beta/2 (lp - logprobs)^2)`` (``beta``, default 0.05);
- gspo: ``-min(s A, clip(s) A)`` with ``s = exp(mean(lp - logprobs))`` over the datum's
  tokens with a non-zero advantage;  stable_reinforce: ``-clip(r, 0, high) lp A``.

These are the fake's stand-ins, deterministic and input-checked, not the service's numerics.
stable_reinforce's above is a placeholder in particular: its docs page publishes the API, not the
objective (see ``cookbook.backends.local.losses``, which refuses it for that reason), so the fake
accepts the name for dry runs of a pipeline and its ``loss:sum`` means nothing about the service.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from tinker import types

from cookbook.exceptions import ConfigurationError

RL_LOSSES = ("importance_sampling", "ppo", "cispo", "dro", "gspo", "stable_reinforce")
LOSSES = ("cross_entropy", *RL_LOSSES)
_RL_INPUTS = ("target_tokens", "logprobs", "advantages")
_CLIP_DEFAULTS = {"cispo": (0.0, 4.0)}
_DRO_BETA = 0.05


def draw_key(prompt: Sequence[int], params: types.SamplingParams, call_index: int) -> list:
    """What an unseeded draw depends on (see the module docstring); sample index appended."""
    return [list(prompt), params.temperature, params.top_p, params.top_k, call_index]


def _stops(stop: Any, tokenizer: Any) -> tuple[list[int], list[str]]:
    """(stop ids, stop strings) of ``SamplingParams.stop``; strings only with a tokenizer."""
    items = [stop] if isinstance(stop, str) else list(stop or [])
    ids = [s for s in items if isinstance(s, int)]
    strings = [s for s in items if isinstance(s, str)] if tokenizer is not None else []
    return ids, strings


def draw_sequence(
    prompt: Sequence[int],
    key: list,
    max_tokens: int,
    stop: Any,
    tokenizer: Any = None,
) -> tuple[list[int], str]:
    """One unseeded sample's tokens and stop reason (steps 1-3 of the module docstring)."""
    stop_ids, stop_strings = _stops(stop, tokenizer)
    alphabet = sorted(set(prompt) - set(stop_ids))
    if not alphabet:
        raise ConfigurationError("fake sample: the prompt has no tokens besides stop tokens")
    rng = np.random.default_rng(
        int(hashlib.sha256(json.dumps(key).encode("utf-8")).hexdigest()[:16], 16)
    )
    length = int(rng.integers(1, 2 * max_tokens + 1))
    if stop_ids:
        ending = stop_ids[:1]
    elif stop_strings:
        ending = list(tokenizer.encode(stop_strings[0], add_special_tokens=False))
    else:
        ending = []
    if ending and length <= max_tokens:
        body = max(0, min(length - 1, max_tokens - len(ending)))
        planned = [alphabet[i] for i in rng.integers(0, len(alphabet), body)] + ending
    else:
        planned = [alphabet[i] for i in rng.integers(0, len(alphabet), max_tokens)]
    out: list[int] = []
    for token in planned[:max_tokens]:
        out.append(int(token))
        if token in stop_ids:
            return out, "stop"
        if stop_strings and any(s in tokenizer.decode(out) for s in stop_strings):
            return out, "stop"
    return out, "length"


def cycle_sequence(
    tokens: list[int], params: types.SamplingParams, index: int, limit: int
) -> tuple[list[int], str]:
    """A seeded sample (evals): the prompt cycled from a seeded offset, up to a stop id."""
    stop = params.stop
    stop_ids = {s for s in stop if isinstance(s, int)} if isinstance(stop, list) else set()
    key = json.dumps([tokens, params.seed, index]).encode("utf-8")
    offset = int(hashlib.sha256(key).hexdigest()[:8], 16) % len(tokens)
    out: list[int] = []
    for k in range(limit):
        out.append(tokens[(offset + k) % len(tokens)])
        if out[-1] in stop_ids:
            return out, "stop"
    return out, "length"


def _float_input(datum: types.Datum, key: str) -> np.ndarray:
    return np.asarray(datum.loss_fn_inputs[key].data, dtype=np.float64)


def check_loss_inputs(index: int, datum: types.Datum, loss_fn: str) -> None:
    """Required inputs present and as long as the model input; one-line errors."""
    required = ("target_tokens", "weights") if loss_fn == "cross_entropy" else _RL_INPUTS
    missing = set(required) - set(datum.loss_fn_inputs)
    if missing:
        raise ConfigurationError(
            f"datum {index}: loss_fn {loss_fn!r} needs loss_fn_inputs {sorted(missing)}"
        )
    length = datum.model_input.length
    for key, value in datum.loss_fn_inputs.items():
        if len(value.data) != length:
            raise ConfigurationError(
                f"datum {index}: {key} has {len(value.data)} entries, model_input has {length}"
                " tokens"
            )


def check_loss_fn(loss_fn: str) -> None:
    """Every built-in but ``custom``; ``loss_fn_config`` keys the fake does not use are
    ignored, as they always were."""
    if loss_fn not in LOSSES:
        raise ConfigurationError(
            f"fake backend supports loss_fn {', '.join(repr(x) for x in LOSSES)}, not {loss_fn!r}"
        )


def datum_loss(
    loss_fn: str, datum: types.Datum, lp32: np.ndarray, config: Mapping[str, Any] | None
) -> float:
    """This datum's share of ``loss:sum`` (formulas in the module docstring)."""
    lp = lp32.astype(np.float64)
    if loss_fn == "cross_entropy":
        return -float(np.dot(lp, _float_input(datum, "weights")))
    config = config or {}
    low_default, high_default = _CLIP_DEFAULTS.get(loss_fn, (0.8, 1.2))
    low = float(config.get("clip_low_threshold", low_default))
    high = float(config.get("clip_high_threshold", high_default))
    old = _float_input(datum, "logprobs")
    adv = _float_input(datum, "advantages")
    ratio = np.exp(lp - old)
    clipped = np.clip(ratio, low, high)
    if loss_fn == "importance_sampling":
        terms = -ratio * adv
    elif loss_fn == "ppo":
        terms = -np.minimum(ratio * adv, clipped * adv)
    elif loss_fn == "cispo":
        terms = -clipped * lp * adv
    elif loss_fn == "dro":
        terms = -(lp * adv - float(config.get("beta", _DRO_BETA)) / 2 * (lp - old) ** 2)
    elif loss_fn == "gspo":
        active = adv != 0
        seq = float(np.exp(np.mean((lp - old)[active]))) if active.any() else 1.0
        terms = -np.minimum(seq * adv, float(np.clip(seq, low, high)) * adv)
    else:  # stable_reinforce
        terms = -np.clip(ratio, 0.0, high) * lp * adv
    return float(np.sum(terms))
