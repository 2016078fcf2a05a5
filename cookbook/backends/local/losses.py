"""Tinker's built-in losses (SDK 0.38 ``LossFnType``), one torch definition each, in one registry.

Each loss is a sum over datums of a per-datum term computed from that datum's target-token
logprobs ``lp`` (the learner's, with gradient) and its ``loss_fn_inputs``; tensors have the
datum's length ``N`` and positions follow the next-token alignment of ``model_input``. The
formulas are those of the Tinker docs' "Loss Functions" pages (``q`` = the sampler's logprobs,
input ``logprobs``; ``A`` = ``advantages``; ``ratio = exp(lp - q)``):

- ``cross_entropy``: ``-sum(weights * lp)``.
- ``importance_sampling``: ``-sum(ratio * A)``.
- ``ppo``: ``-sum(min(ratio * A, clip(ratio, low, high) * A))``; thresholds from
  ``loss_fn_config`` ``clip_low_threshold``/``clip_high_threshold``, default 0.8/1.2 (docs).
- ``cispo``: ``-sum(sg(clip(ratio, low, high)) * lp * A)``; default 0.0/4.0 (docs: one-sided).
- ``dro``: ``-sum(lp * A - beta / 2 * (lp - q)**2)``; ``beta`` from ``loss_fn_config``.
- ``gspo`` (GSPO-token): the sequence ratio ``s = exp(mean over M of sg(lp) - q)``, each token's
  ratio ``sg(s) * exp(lp - sg(lp))``, then PPO's clipped objective on it.

Every loss returns the per-token learner ``logprobs`` in ``loss_fn_outputs`` and the metric
``loss:sum`` (the docs' only documented diagnostic). Where the docs are silent we chose:

- ``dro`` has no documented default ``beta`` (the docs only show ``0.05`` as an example), so
  ``beta`` is required rather than invented.
- ``gspo``'s thresholds default to PPO's 0.8/1.2 (the docs page shown to us does not give
  GSPO's own). ``M`` is the optional input ``sequence_ratio_mask`` (non-zero entries); without
  it, the positions with a non-zero advantage, because the tokens a loss trains on are those,
  while prompt positions (sampler logprob 0 by the cookbook's convention) would swamp the
  mean. An empty ``M`` gives ``s = 1``.
- RL losses score every position (their logprobs output is exact everywhere: the reference's
  RL loop measures sampler/learner KL on it); ``cross_entropy`` scores only the positions with
  a non-zero weight unless ``full_logprobs`` (its other positions are returned as 0.0).
- Unknown ``loss_fn_inputs`` or ``loss_fn_config`` keys are refused, not ignored: a mistyped
  key would otherwise silently train with the default.
- ``stable_reinforce`` is refused (its message says what is published). Its docs page
  (:data:`STABLE_REINFORCE_DOCS`, alpha) and the SDK give its API only: sample with
  ``record_stability_info=True`` ("Every sample from that client is recorded, and each returned
  sequence carries a ``sequence_id``"), name those sequences in the datum's provenance spans
  (``Datum.with_provenance``), and ``loss_fn_config`` ``kl_coeff`` (the proto's example: 0.01).
  The objective is not published: the page says only that it "uses minimal additional
  information captured at sampling time", not what that information is nor how the loss uses
  it, so no formula here could be checked against anything. ``custom`` runs an uploaded
  server-side loss. Both are refused with an error saying so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tinker import types

from cookbook.backends.local.model import Coefficients, Scored, check_tokens, score
from cookbook.digests import datum_digest
from cookbook.exceptions import ConfigurationError

Objective = Callable[[torch.Tensor, Mapping[str, torch.Tensor], Mapping[str, float]], torch.Tensor]
"""(lp at the scored positions, the datum's inputs there, the resolved config) -> its loss."""


@dataclass(frozen=True)
class LossFn:
    """A built-in loss: what it reads, what it is configured by, and its per-datum term."""

    name: str
    objective: Objective
    inputs: tuple[str, ...]  # loss_fn_inputs it requires besides target_tokens
    optional_inputs: tuple[str, ...] = ()
    config: Mapping[str, float | None] = field(default_factory=dict)  # None: required
    linear: bool = False  # linear in lp: its gradient is known before scoring
    all_positions: bool = True  # False: scores only where ``weights`` is non-zero

    def resolve_config(self, given: Mapping[str, float | str] | None) -> dict[str, float]:
        given = dict(given or {})
        unknown = sorted(set(given) - set(self.config))
        if unknown:
            takes = ", ".join(sorted(self.config)) or "no keys"
            raise ConfigurationError(
                f"loss_fn {self.name!r}: loss_fn_config key(s) {unknown} not understood "
                f"(it takes {takes})"
            )
        resolved: dict[str, float] = {}
        for key, default in self.config.items():
            value = given.get(key, default)
            if value is None:
                raise ConfigurationError(
                    f"loss_fn {self.name!r}: loss_fn_config needs {key!r} (no documented default)"
                )
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigurationError(
                    f"loss_fn {self.name!r}: loss_fn_config {key!r} must be a number, got {value!r}"
                )
            resolved[key] = float(value)
        low, high = resolved.get("clip_low_threshold"), resolved.get("clip_high_threshold")
        if low is not None and high is not None and low > high:
            raise ConfigurationError(
                f"loss_fn {self.name!r}: clip_low_threshold {low} > clip_high_threshold {high}"
            )
        return resolved


def _ratio(lp: torch.Tensor, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return torch.exp(lp - x["logprobs"])


def _clipped_objective(ratio: torch.Tensor, x: Mapping, c: Mapping[str, float]) -> torch.Tensor:
    """PPO's token-wise ``-sum(min(ratio * A, clip(ratio) * A))``."""
    clipped = torch.clamp(ratio, c["clip_low_threshold"], c["clip_high_threshold"])
    return -torch.min(ratio * x["advantages"], clipped * x["advantages"]).sum()


def _cross_entropy(lp: torch.Tensor, x: Mapping, c: Mapping[str, float]) -> torch.Tensor:
    return -(x["weights"] * lp).sum()


def _importance_sampling(lp: torch.Tensor, x: Mapping, c: Mapping[str, float]) -> torch.Tensor:
    return -(_ratio(lp, x) * x["advantages"]).sum()


def _ppo(lp: torch.Tensor, x: Mapping, c: Mapping[str, float]) -> torch.Tensor:
    return _clipped_objective(_ratio(lp, x), x, c)


def _cispo(lp: torch.Tensor, x: Mapping, c: Mapping[str, float]) -> torch.Tensor:
    clipped = torch.clamp(_ratio(lp, x), c["clip_low_threshold"], c["clip_high_threshold"])
    return -(clipped.detach() * lp * x["advantages"]).sum()


def _dro(lp: torch.Tensor, x: Mapping, c: Mapping[str, float]) -> torch.Tensor:
    quadratic = (lp - x["logprobs"]) ** 2
    return -(lp * x["advantages"] - 0.5 * c["beta"] * quadratic).sum()


def _gspo(lp: torch.Tensor, x: Mapping, c: Mapping[str, float]) -> torch.Tensor:
    mask = x.get("sequence_ratio_mask")
    in_ratio = (x["advantages"] if mask is None else mask) != 0
    log_ratios = (lp.detach() - x["logprobs"])[in_ratio]
    log_ratio = log_ratios.mean() if len(log_ratios) else lp.new_zeros(())
    return _clipped_objective(torch.exp(log_ratio + lp - lp.detach()), x, c)


_CLIP = {"clip_low_threshold": 0.8, "clip_high_threshold": 1.2}
_RL_INPUTS = ("logprobs", "advantages")

LOSSES: dict[str, LossFn] = {
    loss.name: loss
    for loss in (
        LossFn("cross_entropy", _cross_entropy, ("weights",), linear=True, all_positions=False),
        LossFn("importance_sampling", _importance_sampling, _RL_INPUTS),
        LossFn("ppo", _ppo, _RL_INPUTS, config=_CLIP),
        LossFn(
            "cispo",
            _cispo,
            _RL_INPUTS,
            config={"clip_low_threshold": 0.0, "clip_high_threshold": 4.0},
        ),
        LossFn("dro", _dro, _RL_INPUTS, config={"beta": None}),
        LossFn("gspo", _gspo, _RL_INPUTS, ("sequence_ratio_mask",), config=_CLIP),
    )
}
"""Keyed by the SDK's ``LossFnType`` names."""

STABLE_REINFORCE_DOCS = "https://tinker-docs.thinkingmachines.ai/tinker/losses/stable-reinforce/"
_REFUSED = {
    "stable_reinforce": f"{STABLE_REINFORCE_DOCS} publishes its API (sample with "
    "record_stability_info=True, name the sampled sequences' sequence_id in the datum's "
    "provenance spans, loss_fn_config kl_coeff) but not its objective: what the service records "
    "at sampling time and how the loss uses it are not published",
    "custom": "it runs a loss uploaded with create_custom_loss on the service",
}


def loss_fn(name: str) -> LossFn:
    """The registry entry for ``name``, or one error saying why there is none."""
    if name in LOSSES:
        return LOSSES[name]
    if name in _REFUSED:
        raise ConfigurationError(
            f"loss_fn {name!r} is not implemented by the local backend: {_REFUSED[name]}"
        )
    raise ConfigurationError(
        f"loss_fn {name!r} is not a Tinker loss; the local backend implements {', '.join(LOSSES)}"
    )


@dataclass(frozen=True)
class _Prepared:
    scored: Scored
    inputs: dict[str, torch.Tensor]  # float64 at the scored positions


def _prepare(index: int, datum: types.Datum, loss: LossFn, vocab_size: int, full: bool):
    where = f"datum {index}"
    given = set(datum.loss_fn_inputs)
    missing = [k for k in ("target_tokens", *loss.inputs) if k not in given]
    if missing:
        raise ConfigurationError(
            f"{where}: loss_fn {loss.name!r} needs loss_fn_inputs {missing} "
            f"(it has {sorted(given)})"
        )
    unknown = sorted(given - {"target_tokens", *loss.inputs, *loss.optional_inputs})
    if unknown:
        raise ConfigurationError(
            f"{where}: loss_fn {loss.name!r} does not take loss_fn_inputs {unknown}"
        )
    try:
        ints = datum.model_input.to_ints()
    except ValueError:
        raise ConfigurationError(f"{where}: the local backend takes text-only inputs") from None
    tokens = check_tokens(ints, vocab_size, f"{where} model_input")
    arrays = {
        "target_tokens": check_tokens(
            datum.loss_fn_inputs["target_tokens"].data, vocab_size, f"{where} target_tokens"
        )
    }
    for key in sorted(given - {"target_tokens"}):
        arrays[key] = np.asarray(datum.loss_fn_inputs[key].data, dtype=np.float64)
    for key, values in arrays.items():
        if values.shape != tokens.shape:
            raise ConfigurationError(
                f"{where}: {key} has {values.size} entries, model_input has {tokens.size} tokens"
            )
    if loss.all_positions or full:
        positions = np.arange(tokens.size)
    else:
        positions = np.flatnonzero(arrays["weights"])
    scored = Scored(
        tokens=torch.from_numpy(tokens),
        targets=torch.from_numpy(arrays.pop("target_tokens")[positions]),
        positions=torch.from_numpy(positions),
        length=int(tokens.size),
    )
    inputs = {key: torch.from_numpy(values[positions]) for key, values in arrays.items()}
    return _Prepared(scored, inputs)


def run_loss(
    model: torch.nn.Module,
    data: Sequence[types.Datum],
    loss_name: str,
    loss_fn_config: Mapping[str, float | str] | None,
    *,
    vocab_size: int,
    full_logprobs: bool,
    backward: bool,
) -> types.ForwardBackwardOutput:
    """Tinker's output of ``loss_name`` on ``data``; with ``backward``, its gradient
    accumulates into the adapter. The loss and its gradient are computed in float64 from the
    model's logprobs; the model runs in its own dtype."""
    loss = loss_fn(loss_name)
    config = loss.resolve_config(loss_fn_config)
    checked = [_prepare(i, d, loss, vocab_size, full_logprobs) for i, d in enumerate(data)]
    # The batch is computed in a canonical order (by datum digest), so that the gradient and
    # the loss - float sums over datums - depend on which datums were sent, not on their order.
    # An RL group's trajectories are sampled by identical concurrent requests, so which of them
    # gets which sample is arrival order; without this the same batch in another order moves
    # the weights differently in the last bits, and every later sample can diverge.
    order = sorted(range(len(data)), key=lambda i: datum_digest(data[i]))
    prepared = [checked[i] for i in order]

    def nll_coefficients(index: int, nll: torch.Tensor) -> torch.Tensor:
        """d loss / d nll at this datum's scored positions (lp = -nll)."""
        lp = (-nll).to(torch.float64).requires_grad_(True)
        with torch.enable_grad():
            loss.objective(lp, prepared[index].inputs, config).backward()
        return -lp.grad

    def coefficients(group: list[int]) -> Coefficients:
        sizes = [len(prepared[i].scored.positions) for i in group]
        if loss.linear:
            zeros = [torch.zeros(n) for n in sizes]
            return torch.cat([nll_coefficients(i, z) for i, z in zip(group, zeros, strict=True)])
        return lambda nll: torch.cat(
            [nll_coefficients(i, part) for i, part in zip(group, nll.split(sizes), strict=True)]
        )

    scored = score(
        model, [p.scored for p in prepared], backward=backward, coefficients=coefficients
    )
    outputs: list[dict[str, types.TensorData]] = [{} for _ in data]
    total = 0.0
    for index, item, nll in zip(order, prepared, scored, strict=True):
        logprobs = np.zeros(item.scored.length, dtype=np.float32)
        if nll is not None:
            lp = -nll.to(torch.float64)
            logprobs[item.scored.positions.numpy()] = lp.numpy()
            total += float(loss.objective(lp, item.inputs, config))
        outputs[index] = {"logprobs": types.TensorData.from_numpy(logprobs)}
    return types.ForwardBackwardOutput(
        loss_fn_output_type="ArrayRecord", loss_fn_outputs=outputs, metrics={"loss:sum": total}
    )
