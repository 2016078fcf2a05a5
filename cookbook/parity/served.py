"""Reference-through-server parity: two runs against ``cookbook-serve``, call for call.

The reference's own ``train.main`` and our ``cookbook-run --set backend=tinker`` each train
against a fresh ``cookbook-serve`` (same seed, so the same initial weights and model ids). The
server records every applied call (``describe_call`` shape: datums by digest, Adam parameters
in full, save names), and each run writes metrics.jsonl and checkpoints.jsonl. Two runs agree
when they made the same calls (kinds, datums, ``n``, ``loss_fn``, learning rates, save names),
in the same order (but for read-only calls between two training calls: see
:func:`canonical_order`), and logged the same metrics per step.

Tolerances. Everything the client decides is compared exactly (learning rates to 1e-12
relative: both sides compute ``lr * multiplier`` in Python floats). Metrics are compared within
``rel_tol=1e-4``, ``abs_tol=1e-5``: both runs hit the same engine, with the same seed, the same
thread count and the same datums, so the server's numbers should agree to the bit; what can
legitimately differ is float *reduction order* - the reference reduces NLL and bits-per-byte
in torch float32, we reduce in float64 (a few 1e-7 relative over a batch of a few hundred
tokens), and if the engine's thread split ever differed between the two servers, a matmul's
float32 accumulation order with it (~1e-6 per op, compounded over a few Adam steps). 1e-4 is
two orders of magnitude above that and still far below any real divergence (a wrong weight,
a skipped or repeated step moves the loss by 1e-2 or more). ``abs_tol`` covers near-zero values.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cookbook.parity.layers import first_diff
from cookbook.parity.recipe import LR_REL_TOL, WALL_CLOCK_PREFIX, read_jsonl

REL_TOL = 1e-4
ABS_TOL = 1e-5
CORE_METRICS = ("learning_rate", "num_sequences", "num_tokens", "num_loss_tokens", "train_mean_nll")
"""Keys every step of both (supervised) runs must log; test/* keys must be logged by both or
neither."""
RL_CORE_METRICS = (
    "optim/lr",
    "progress/batch",
    "env/all/reward/total",
    "env/all/total_ac_tokens",
    "optim/entropy",
    "optim/kl_sample_train_v1",
)
"""The same for ``rl.train.main`` runs."""
SAVE_CALLS = ("save_state", "save_weights_for_sampler")
READ_ONLY_CALLS = ("sample", "compute_logprobs", "forward")
"""Calls that change no state: their order among themselves is not compared (see
:func:`canonical_order`)."""
MAX_ROWS = 20
"""Differing metric cells shown per comparison; the rest are counted."""


@dataclass(frozen=True)
class ServedRun:
    """One run through the server: what the server applied and what the run logged."""

    label: str
    calls: list[dict[str, Any]]
    metrics: list[dict[str, Any]]
    checkpoints: list[dict[str, Any]]

    @classmethod
    def load(cls, label: str, recording: Sequence[dict] | Path, log_dir: Path) -> ServedRun:
        """``recording`` is ``server.recorded()`` or the server's ``--record`` JSONL file."""
        calls = read_jsonl(recording) if isinstance(recording, Path) else list(recording)
        return cls(
            label,
            calls,
            read_jsonl(log_dir / "metrics.jsonl"),
            read_jsonl(log_dir / "checkpoints.jsonl"),
        )


def learning_rates(calls: Sequence[dict[str, Any]]) -> list[float]:
    """The learning rate of each optim_step, in order: one per training step."""
    return [c["adam"]["learning_rate"] for c in calls if c["call"] == "optim_step"]


def save_names(calls: Sequence[dict[str, Any]]) -> list[str]:
    return [f"{c['call']} {c.get('name')}" for c in calls if c["call"] in SAVE_CALLS]


@dataclass
class ServedComparison:
    expected: str
    actual: str
    differences: dict[str, str] = field(default_factory=dict)
    """Layer -> what differs there (a readable, possibly multi-line block)."""
    notes: list[str] = field(default_factory=list)
    """What was not compared, and why."""

    @property
    def ok(self) -> bool:
        return not self.differences

    def text(self) -> str:
        lines = [f"expected: {self.expected}", f"actual:   {self.actual}"]
        for layer, detail in self.differences.items():
            lines.append(f"{layer}: {detail}")
        lines.extend(f"note: {note}" for note in self.notes)
        lines.append("the runs match" if self.ok else f"{len(self.differences)} layer(s) differ")
        return "\n".join(lines)


def _datums_sorted(call: dict[str, Any]) -> dict[str, Any]:
    if call["call"] != "forward_backward":
        return call
    return {**call, "datums": sorted(call["datums"])}


def canonical_order(
    calls: Sequence[dict[str, Any]], datums_unordered: bool = False
) -> list[dict[str, Any]]:
    """``calls`` with each unbroken run of read-only calls sorted (by canonical JSON).

    The reference's evaluator submits an eval's requests at once (``asyncio.gather``), so the
    server applies them in whatever order they arrive; as they change no state, only which
    ones were made matters. Everything else keeps its order: it is the training.

    ``datums_unordered`` (RL): a forward_backward's datums are compared as a multiset. An RL
    group samples its trajectories as identical concurrent requests; the server seeds the
    k-th identical request it receives with the k-th seed, so which trajectory of a group gets
    which sample is arrival order (in the reference against itself too). The group's datums
    (advantages included, so a datum in the wrong group still differs) are the same set, and
    the loss is a sum over them.
    """
    if datums_unordered:
        calls = [_datums_sorted(call) for call in calls]
    out: list[dict[str, Any]] = []
    run: list[dict[str, Any]] = []
    for call in [*calls, None]:
        if call is not None and call["call"] in READ_ONLY_CALLS:
            run.append(call)
            continue
        out.extend(sorted(run, key=lambda c: json.dumps(c, sort_keys=True)))
        run = []
        if call is not None:
            out.append(call)
    return out


def _step_of(calls: Sequence[dict[str, Any]], index: int) -> int:
    """The training step a call belongs to: optim_steps seen before it."""
    return sum(1 for c in calls[:index] if c["call"] == "optim_step")


def _counts(calls: Sequence[dict[str, Any]]) -> str:
    kinds = Counter(c["call"] for c in calls)
    return f"{len(calls)} calls: " + ", ".join(f"{kind} x{n}" for kind, n in kinds.items())


def _compare_calls(exp: ServedRun, act: ServedRun, datums_unordered: bool) -> str | None:
    """The first differing call of the two :func:`canonical_order` s, both sides in full."""
    width = max(len(exp.label), len(act.label))
    calls_a = canonical_order(exp.calls, datums_unordered)
    calls_b = canonical_order(act.calls, datums_unordered)
    for index in range(max(len(calls_a), len(calls_b))):
        a = calls_a[index] if index < len(calls_a) else None
        b = calls_b[index] if index < len(calls_b) else None
        found = first_diff(a, b, LR_REL_TOL) if a is not None and b is not None else "missing"
        if found:
            kind = (a or b or {}).get("call")
            head = f"call {index} ({kind}, step {_step_of(calls_a, index)}): {found}"
            sides = [
                f"  {run.label:<{width}} {json.dumps(call) if call else '(no such call)'}"
                for run, call in ((exp, a), (act, b))
            ]
            if len(exp.calls) != len(act.calls):
                sides += [f"  {run.label:<{width}} {_counts(run.calls)}" for run in (exp, act)]
            return "\n".join([head, *sides])
    return None


def _compare_lrs(exp: ServedRun, act: ServedRun) -> str | None:
    a, b = learning_rates(exp.calls), learning_rates(act.calls)
    rows = [
        f"  step {step:>4}: {x!r:<24} {y!r}"
        for step, (x, y) in enumerate(zip(a, b, strict=False))
        if not math.isclose(x, y, rel_tol=LR_REL_TOL, abs_tol=0.0)
    ]
    if not rows and len(a) == len(b):
        return None
    head = f"{exp.label} sent {len(a)} optim_steps, {act.label} {len(b)}"
    return "\n".join([head, f"  {'':>10}  {exp.label:<24} {act.label}", *rows])


def _compare_saves(exp: ServedRun, act: ServedRun) -> str | None:
    a, b = save_names(exp.calls), save_names(act.calls)
    if a != b:
        return f"{exp.label}: {a}; {act.label}: {b}"
    return first_diff(exp.checkpoints, act.checkpoints)


def _cell_differs(x: Any, y: Any, rel_tol: float, abs_tol: float) -> bool:
    """Counts (ints) and non-numbers exactly, floats within tolerance."""
    if not (isinstance(x, float) or isinstance(y, float)) or isinstance(x, bool | str | None):
        return x != y
    if isinstance(y, bool | str | None):
        return True
    if math.isnan(x) or math.isnan(y):
        return not (math.isnan(x) and math.isnan(y))
    return not math.isclose(x, y, rel_tol=rel_tol, abs_tol=abs_tol)


def _compare_metrics(
    exp: ServedRun,
    act: ServedRun,
    rel_tol: float,
    abs_tol: float,
    notes: list[str],
    core: Sequence[str],
) -> str | None:
    rows_a = {row["step"]: row for row in exp.metrics}
    rows_b = {row["step"]: row for row in act.metrics}
    problems: list[str] = []
    if sorted(rows_a) != sorted(rows_b):
        problems.append(f"steps logged: {exp.label} {sorted(rows_a)}, {act.label} {sorted(rows_b)}")
    one_sided: set[str] = set()
    cells: list[tuple[int, str, Any, Any]] = []
    for step in sorted(set(rows_a) & set(rows_b)):
        a, b = rows_a[step], rows_b[step]
        keys = {k for k in (*a, *b) if not k.startswith(WALL_CLOCK_PREFIX)}
        for key in sorted(keys):
            if key in a and key in b:
                if _cell_differs(a[key], b[key], rel_tol, abs_tol):
                    cells.append((step, key, a[key], b[key]))
            elif key in core or key.startswith("test/"):
                cells.append((step, key, a.get(key, "(missing)"), b.get(key, "(missing)")))
            else:
                one_sided.add(key)
        for key in core:
            if key not in a and key not in b:
                problems.append(f"step {step}: {key} logged by neither run")
    if one_sided:
        notes.append(f"metrics logged by one run only, not compared: {sorted(one_sided)}")
    if cells:
        problems.append(
            f"{len(cells)} value(s) differ beyond rel {rel_tol:g} / abs {abs_tol:g}:\n"
            + f"  {'step':>4}  {'metric':<22} {exp.label:<22} {act.label}\n"
            + "\n".join(
                f"  {step:>4}  {key:<22} {x!r:<22} {y!r}" for step, key, x, y in cells[:MAX_ROWS]
            )
            + (f"\n  ... and {len(cells) - MAX_ROWS} more" if len(cells) > MAX_ROWS else "")
        )
    return "\n".join(problems) or None


def compare_served(
    expected: ServedRun,
    actual: ServedRun,
    rel_tol: float = REL_TOL,
    abs_tol: float = ABS_TOL,
    *,
    rl: bool = False,
) -> ServedComparison:
    """Every layer of two runs; each difference is reported where it first shows. ``rl``:
    two ``rl.train.main`` runs (:data:`RL_CORE_METRICS`, a batch's datums as a multiset)."""
    result = ServedComparison(expected.label, actual.label)
    core = RL_CORE_METRICS if rl else CORE_METRICS
    layers = {
        "calls": _compare_calls(expected, actual, datums_unordered=rl),
        "learning rates": _compare_lrs(expected, actual),
        "checkpoints": _compare_saves(expected, actual),
        "metrics": _compare_metrics(expected, actual, rel_tol, abs_tol, result.notes, core),
    }
    result.differences = {layer: found for layer, found in layers.items() if found}
    return result
