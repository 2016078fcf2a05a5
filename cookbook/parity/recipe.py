"""Layered recipe parity: what the reference's ``sl_basic`` loop did, layer by layer.

A recipe golden (``golden/recipes/<case>.json``, made by ``tools/generate_recipe_goldens.py``)
records one small supervised run of the pinned reference on the fake backend, in layers that go
from the data to the client calls: (a) dataset order, (b) the first batches' datums in full,
(c) the learning-rate schedule, (d) the client calls, metrics and checkpoints of a whole run,
(e) the same for an interrupted run and its resume. Comparing layer by layer names the *first*
layer that drifts, which is where a port's bug usually is: a wrong shuffle shows up in (a) long
before it shows up as a different loss in (d).

Datums are compared as JSON (:func:`cookbook.digests.datum_to_json`) and referred to in call
records by :func:`cookbook.digests.datum_digest`, so both the reference side and ours identify a
datum the same way.

Layer shapes (``golden["layers"][name]``; pass ``actual`` in the same shape, extra keys in a
layer's top level, like ``n_batches``, are informational and not compared):

- ``dataset_order``: ``{"epochs": [[[row_id, ...] per batch] per epoch], "test": [[row_id, ...]
  per batch], "set_epoch_seeds": [...], "n_batches": int}``; row ids index the source file (or
  split file for no_robots).
- ``datums``: ``{"batches": [[datum_to_json(d), ...] for the first 3 batches of epoch 0]}``.
- ``lr_schedule``: ``[{"step", "lr_multiplier", "learning_rate"}, ...]`` for every step.
- ``run``: ``{"calls": CallRecorder.calls, "metrics": metrics.jsonl rows (``time/*`` dropped),
  "checkpoints": checkpoints.jsonl rows}``.
- ``resume``: ``{"fault": {"call_index", "call", "step"}, "runs": [run, run]}``: run 1 is given
  ``faults={call_index: RuntimeError(...)}`` and crashes; run 2 reuses its log and state
  directories with a fresh client. Each run lists only the rows *it* appended.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cookbook.exceptions import ConfigurationError, GoldenError
from cookbook.parity.golden import load_checked_golden
from cookbook.parity.layers import EXACT, at, diff_items, first_layer_difference

RECIPE_SCHEMA_VERSION = 1
RECIPE_REGENERATE = "nox -s golden (tools/generate_recipe_goldens.py)"
INJECTED_FAULT = "injected fault"
"""Message of the ``RuntimeError`` that crashes run 1 of the resume layer (see resume_faults)."""
WALL_CLOCK_PREFIX = "time/"
"""Metric keys under this prefix are timings: dropped from goldens and before comparing."""

LAYERS: dict[str, str] = {
    "dataset_order": "(a)",
    "datums": "(b)",
    "lr_schedule": "(c)",
    "run": "(d)",
    "resume": "(e)",
}
# Exact for everything discrete; metrics come from float32 reductions whose summation order
# is an implementation detail, so they only have to agree to float32 precision.
LR_REL_TOL = 1e-12
METRIC_REL_TOL = 1e-5
_REQUIRED = ("schema_version", "name", "provenance", "config", "layers")


def without_wall_clock(row: Mapping[str, Any]) -> dict[str, Any]:
    """A metrics row minus its timing keys, which differ on every run."""
    return {k: v for k, v in row.items() if not k.startswith(WALL_CLOCK_PREFIX)}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a run's metrics.jsonl / checkpoints.jsonl; a missing file has none."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def resume_faults(golden: Mapping[str, Any]) -> dict[int, BaseException]:
    """The ``faults`` for ``FakeServiceClient`` that crash run 1 where the reference's crashed."""
    fault = golden["layers"]["resume"]["fault"]
    return {fault["call_index"]: RuntimeError(INJECTED_FAULT)}


def lr_schedule_layer(
    multiplier: Callable[[Any, int, int], float],
    schedule: Any,
    learning_rate: float,
    total_steps: int,
) -> list[dict[str, Any]]:
    """Layer (c) from a schedule function, ``multiplier(schedule, step, total_steps)``: the
    reference's when goldens are made, ours in the tests, so both sides are recorded alike."""
    rows = []
    for step in range(total_steps):
        factor = multiplier(schedule, step, total_steps)
        rows.append(
            {"step": step, "lr_multiplier": factor, "learning_rate": learning_rate * factor}
        )
    return rows


def load_layered_golden(
    path: Path, *, kind: str, schema_version: int, layers: Iterable[str], regenerate: str
) -> dict[str, Any]:
    """Read and structurally check a layered golden (a recipe's, ``kind="recipe"``, or an RL
    loop's, ``kind="RL"``); problems are one-line ``GoldenError``s naming the command that
    regenerates it."""
    data = load_checked_golden(
        path,
        what=f"{kind} golden",
        absent=f"{kind} golden",
        required=_REQUIRED,
        schema_version=schema_version,
        regenerate=regenerate,
    )
    unknown = set(data["layers"]) - set(layers)
    if unknown:
        raise GoldenError(f"{path}: layers: unknown layer(s) {sorted(unknown)}")
    return data


def load_recipe_golden(path: Path) -> dict[str, Any]:
    """A supervised recipe golden (:data:`LAYERS`), checked by :func:`load_layered_golden`."""
    return load_layered_golden(
        path,
        kind="recipe",
        schema_version=RECIPE_SCHEMA_VERSION,
        layers=LAYERS,
        regenerate=RECIPE_REGENERATE,
    )


# -- per-layer comparison -----------------------------------------------------------------------


def _compare_batches(expected: Sequence, actual: Sequence, where: str, noun: str) -> str | None:
    if len(expected) != len(actual):
        return at(where, f"expected {len(expected)} batches, got {len(actual)}")
    for b, (exp, act) in enumerate(zip(expected, actual, strict=True)):
        found = diff_items(exp, act, lambda i, _x: f"{noun} {i}", f"{noun}s", EXACT)
        if found:
            return at(f"{where} batch {b}".strip(), found)
    return None


def _compare_dataset_order(expected: Mapping, actual: Mapping) -> str | None:
    exp_epochs, act_epochs = expected["epochs"], actual.get("epochs", [])
    if len(exp_epochs) != len(act_epochs):
        return f"expected {len(exp_epochs)} epochs, got {len(act_epochs)}"
    for e, (exp, act) in enumerate(zip(exp_epochs, act_epochs, strict=True)):
        found = _compare_batches(exp, act, f"epoch {e}", "row")
        if found:
            return found
    return _compare_batches(expected["test"], actual.get("test", []), "test split", "row")


def _compare_datums(expected: Mapping, actual: Mapping) -> str | None:
    return _compare_batches(expected["batches"], actual.get("batches", []), "", "datum")


def _compare_lr(expected: Sequence, actual: Sequence) -> str | None:
    return diff_items(expected, actual, lambda _i, row: f"step {row['step']}", "steps", LR_REL_TOL)


def compare_run(expected: Mapping, actual: Mapping) -> str | None:
    """A run's client calls, then metrics rows (timings dropped), then checkpoint rows."""
    found = diff_items(
        expected["calls"],
        actual.get("calls", []),
        lambda i, call: f"call {i} ({call.get('call')})",
        "client calls",
        LR_REL_TOL,
    )
    if found:
        return found
    found = diff_items(
        expected["metrics"],
        [without_wall_clock(row) for row in actual.get("metrics", [])],
        lambda _i, row: f"metrics step {row.get('step')}",
        "metrics rows",
        METRIC_REL_TOL,
    )
    if found:
        return found
    return diff_items(
        expected["checkpoints"],
        actual.get("checkpoints", []),
        lambda i, row: f"checkpoint {i} ({row.get('name')})",
        "checkpoint records",
        EXACT,
    )


def compare_resume(expected: Mapping, actual: Mapping) -> str | None:
    """The crashed run, then its resume, each as :func:`compare_run`."""
    exp_runs, act_runs = expected["runs"], actual.get("runs", [])
    if len(exp_runs) != len(act_runs):
        return f"expected {len(exp_runs)} runs, got {len(act_runs)}"
    for index, (exp, act) in enumerate(zip(exp_runs, act_runs, strict=True)):
        found = compare_run(exp, act)
        if found:
            return f"run {index + 1} ({exp.get('label', '')}): {found}"
    return None


_COMPARERS: dict[str, Callable[[Any, Any], str | None]] = {
    "dataset_order": _compare_dataset_order,
    "datums": _compare_datums,
    "lr_schedule": _compare_lr,
    "run": compare_run,
    "resume": compare_resume,
}


def compare_layer(golden: Mapping[str, Any], layer: str, actual: Any) -> str | None:
    """One layer of ours against the golden: ``layer (x) name: where: expected .., got ..``.

    ``actual`` has the golden layer's JSON shape (see the generator for each layer's shape).
    Returns None when the layer matches.
    """
    if layer not in LAYERS:
        raise ConfigurationError(f"unknown recipe layer {layer!r}; known: {', '.join(LAYERS)}")
    if layer not in golden["layers"]:
        return f"layer {LAYERS[layer]} {layer}: not in golden {golden['name']!r}"
    found = _COMPARERS[layer](golden["layers"][layer], actual)
    return f"layer {LAYERS[layer]} {layer}: {found}" if found else None


def first_difference(golden: Mapping[str, Any], actual: Mapping[str, Any]) -> str | None:
    """The first differing layer (in order a..e) among the layers ``actual`` provides."""
    return first_layer_difference(LAYERS, compare_layer, golden, actual)
