"""Run-to-run comparison (``cookbook-run compare RUN_A RUN_B``), layer by layer.

A recipe run writes, besides config.json and metrics.jsonl, three small files that pin down
what it trained on (:func:`write_run_artifacts`): ``dataset_order.json`` (row ids per batch,
per epoch, and of the test split), ``rendered_samples.json`` (the first batch's first rows as
the renderer made them: ids, pieces, weights) and ``first_batch.json`` (the first batch's
datums, :func:`~cookbook.digests.datum_to_json`). Two runs are compared in the order
data flows - resolved config, dataset order, rendered samples, first-batch datums, per-step
metrics - and the *first* differing layer is where to look: a different shuffle shows up as
dataset order long before it shows up as a different loss. RL runs (with ``rl_steps.jsonl``)
compare config, their step layers (:mod:`cookbook.parity.rl_runs`), then metrics.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cookbook.data.dataset import ConversationDataset, SupervisedDataset
from cookbook.digests import datum_to_json
from cookbook.exceptions import ConfigurationError
from cookbook.parity.diff import first_divergence
from cookbook.parity.golden import write_atomic
from cookbook.parity.html import esc, facts, page
from cookbook.parity.layers import first_diff
from cookbook.parity.recipe import METRIC_REL_TOL, read_jsonl, without_wall_clock
from cookbook.parity.record import rle, token_view, unrle
from cookbook.parity.rl_runs import RL_RUN_LAYERS, RL_STEPS_FILE, is_rl_run
from cookbook.renderers.supervised_example import renderings_of_our_own

DATASET_ORDER_FILE = "dataset_order.json"
RENDERED_SAMPLES_FILE = "rendered_samples.json"
FIRST_BATCH_FILE = "first_batch.json"
RENDERED_SAMPLES = 8
"""Rows of the first batch recorded as rendered (the datums of the whole batch are kept)."""
_CONFIG_IGNORED = ("spec_file", "overrides", "stand_ins", "versions")
"""How a run was invoked and with which packages, not what it resolved to."""


def _write(path: Path, data: Any) -> None:
    """Compact (a first batch of long conversations is megabytes indented) and atomic."""
    write_atomic(path, json.dumps(data, ensure_ascii=False) + "\n")


def write_run_artifacts(
    log_dir: Path,
    train: SupervisedDataset,
    test: SupervisedDataset | None,
    renderer: Any,
    train_on_what: Any,
    num_epochs: int,
) -> None:
    """The comparison layers' files. Leaves the dataset at epoch 0 (the loop sets it anyway)."""
    if not isinstance(train, ConversationDataset):
        return  # row ids and rows are what the layers record; other datasets have neither
    epochs = []
    for epoch in range(num_epochs):
        train.set_epoch(seed=epoch)
        epochs.append([train.batch_row_ids(i) for i in range(len(train))])
    train.set_epoch(seed=0)
    held_out = (
        [test.batch_row_ids(i) for i in range(len(test))]
        if isinstance(test, ConversationDataset)
        else []
    )
    order = {"n_batches": len(train), "epochs": epochs, "test": held_out}
    _write(log_dir / DATASET_ORDER_FILE, order)
    samples = []
    with renderings_of_our_own():  # the loop renders these again, and warns as the reference
        for row in train.rows_for_batch(0)[:RENDERED_SAMPLES]:
            model_input, weights = renderer.build_supervised_example(row["messages"], train_on_what)
            view = token_view(renderer.tokenizer, model_input.to_ints())
            samples.append({"row_id": row.get("row_id"), **view, "weights": rle(weights.tolist())})
        datums = [datum_to_json(d) for d in train.get_batch(0)]
    rendered = {"train_on_what": str(train_on_what), "samples": samples}
    _write(log_dir / RENDERED_SAMPLES_FILE, rendered)
    first_batch = {"epoch": 0, "batch": 0, "row_ids": train.batch_row_ids(0), "datums": datums}
    _write(log_dir / FIRST_BATCH_FILE, first_batch)


@dataclass
class Layer:
    name: str
    title: str
    status: str
    """``match``, ``differs`` or ``missing`` (a run lacks the layer's file)."""
    detail: str | None = None


@dataclass
class RunComparison:
    run_a: Path
    run_b: Path
    rtol: float
    layers: list[Layer]

    @property
    def first_difference(self) -> Layer | None:
        return next((layer for layer in self.layers if layer.status == "differs"), None)

    def text(self) -> str:
        lines = [f"run A (expected): {self.run_a}", f"run B (got):      {self.run_b}"]
        for layer in self.layers:
            lines.append(f"  {layer.title:<34} {layer.status}")
        first = self.first_difference
        if first is None:
            missing = [layer.title for layer in self.layers if layer.status == "missing"]
            lines.append(
                "the runs match"
                + (f" (not compared, missing: {', '.join(missing)})" if missing else "")
            )
        else:
            lines.append(f"first difference: layer {first.title}: {first.detail}")
        return "\n".join(lines)

    def html(self) -> str:
        rows = []
        for layer in self.layers:
            cls = {"match": "pass", "differs": "fail"}.get(layer.status, "missing")
            detail = f"<pre>{esc(layer.detail)}</pre>" if layer.detail else ""
            rows.append(
                f'<tr><td>{esc(layer.title)}</td><td class="{cls}">{esc(layer.status)}</td>'
                f"<td>{detail}</td></tr>"
            )
        first = self.first_difference
        verdict = (
            f"First difference: layer <b>{esc(first.title)}</b>"
            if first
            else "The runs match in every layer both recorded."
        )
        body = (
            facts({"run A (expected)": self.run_a, "run B (got)": self.run_b, "rtol": self.rtol})
            + f'<p id="verdict">{verdict}</p>'
            + '<table id="layers"><tr><th>layer</th><th>status</th><th>detail</th></tr>'
            + "".join(rows)
            + "</table>"
        )
        return page(f"Run comparison: {self.run_a.name} vs {self.run_b.name}", body)


def _load(run: Path, name: str) -> Any:
    path = run / name
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{path}:{exc.lineno}: not JSON: {exc.msg}") from None


def _config(config: dict[str, Any]) -> dict[str, Any]:
    kept = {k: v for k, v in config.items() if k not in _CONFIG_IGNORED}
    if isinstance(kept.get("local_model"), dict):  # threads are the machine's, not the run's
        kept["local_model"] = {k: v for k, v in kept["local_model"].items() if k != "torch_threads"}
    return kept


def _labelled(
    expected: list[Any], actual: list[Any], label: Callable[[int, Any], str], noun: str, rtol: float
) -> str | None:
    for index, (exp, act) in enumerate(zip(expected, actual, strict=False)):
        found = first_diff(exp, act, rtol)
        if found:
            return f"{label(index, exp)}: {found}"
    if len(expected) != len(actual):
        return f"run A has {len(expected)} {noun}, run B {len(actual)}"
    return None


def _batches(exp: list[list[Any]], act: list[list[Any]], where: str) -> str | None:
    for b, (x, y) in enumerate(zip(exp, act, strict=False)):
        for r, (i, j) in enumerate(zip(x, y, strict=False)):
            if i != j:
                return f"{where} batch {b} position {r}: run A has row {i}, run B row {j}"
        if len(x) != len(y):
            return f"{where} batch {b}: run A has {len(x)} rows, run B {len(y)}"
    if len(exp) != len(act):
        return f"{where}: run A has {len(exp)} batches, run B {len(act)}"
    return None


def _order(a: dict[str, Any], b: dict[str, Any], _rtol: float) -> str | None:
    exp_epochs, act_epochs = a.get("epochs", []), b.get("epochs", [])
    for epoch, (x, y) in enumerate(zip(exp_epochs, act_epochs, strict=False)):
        found = _batches(x, y, f"epoch {epoch}")
        if found:
            return found
    if len(exp_epochs) != len(act_epochs):
        return f"run A has {len(exp_epochs)} epochs, run B {len(act_epochs)}"
    return _batches(a.get("test", []), b.get("test", []), "test split")


def _rendered(a: dict[str, Any], b: dict[str, Any], _rtol: float) -> str | None:
    if a.get("train_on_what") != b.get("train_on_what"):
        return f"train_on_what: run A {a.get('train_on_what')}, run B {b.get('train_on_what')}"
    exp_samples, act_samples = a.get("samples", []), b.get("samples", [])
    for index, (exp, act) in enumerate(zip(exp_samples, act_samples, strict=False)):
        where = f"sample {index} (row {exp.get('row_id')})"
        if exp.get("row_id") != act.get("row_id"):
            return f"{where}: run B rendered row {act.get('row_id')}"
        diff = first_divergence(exp, act, unrle(exp["weights"]), unrle(act["weights"]))
        if diff:
            return f"{where}: {diff}"
    if len(exp_samples) != len(act_samples):
        return f"run A has {len(exp_samples)} samples, run B {len(act_samples)}"
    return None


def _datums(a: dict[str, Any], b: dict[str, Any], _rtol: float) -> str | None:
    rows = a.get("row_ids", [])

    def label(index: int, _datum: Any) -> str:
        return f"datum {index} (row {rows[index]})" if index < len(rows) else f"datum {index}"

    return _labelled(a["datums"], b["datums"], label, "datums", 0.0)


def _metrics(a: list[dict[str, Any]], b: list[dict[str, Any]], rtol: float) -> str | None:
    exp = [without_wall_clock(row) for row in a]
    act = [without_wall_clock(row) for row in b]
    return _labelled(exp, act, lambda _i, row: f"step {row.get('step')}", "steps", rtol)


_LAYERS: list[tuple[str, str, str, Callable[[Any, Any, float], str | None]]] = [
    ("config", "(1) resolved config", "config.json", lambda a, b, _t: first_diff(a, b)),
    ("dataset_order", "(2) dataset order", DATASET_ORDER_FILE, _order),
    ("rendered_samples", "(3) rendered samples", RENDERED_SAMPLES_FILE, _rendered),
    ("first_batch", "(4) first batch datums", FIRST_BATCH_FILE, _datums),
    ("metrics", "(5) per-step metrics", "metrics.jsonl", _metrics),
]


def _layer_table(run_a: Path, run_b: Path) -> list[tuple[str, str, str, Callable]]:
    """Supervised runs' layers, or for RL runs (``rl_steps.jsonl``) the config, the RL step
    layers of :mod:`cookbook.parity.rl_runs` and the metrics."""
    if not (is_rl_run(run_a) or is_rl_run(run_b)):
        return _LAYERS
    config, metrics = _LAYERS[0], _LAYERS[-1]
    last = f"({len(RL_RUN_LAYERS) + 2}) per-step metrics"
    return [config, *RL_RUN_LAYERS, (metrics[0], last, metrics[2], metrics[3])]


def compare_runs(run_a: Path, run_b: Path, rtol: float = METRIC_REL_TOL) -> RunComparison:
    """Every layer of two run directories; metrics agree within ``rtol`` (relative)."""
    for run in (run_a, run_b):
        if not (run / "config.json").is_file():
            raise ConfigurationError(f"{run}: not a run directory (no config.json)")
    layers = []
    for name, title, file, compare in _layer_table(run_a, run_b):
        if name == "metrics":
            a, b = read_jsonl(run_a / file), read_jsonl(run_b / file)
        elif file == RL_STEPS_FILE:
            a, b = (
                read_jsonl(run / file) if (run / file).is_file() else None for run in (run_a, run_b)
            )
        else:
            a, b = _load(run_a, file), _load(run_b, file)
            if name == "config":
                a, b = _config(a), _config(b)
        if a is None or b is None:
            layers.append(
                Layer(name, title, "missing", f"{file} not in run {'A' if a is None else 'B'}")
            )
            continue
        found = compare(a, b, rtol)
        layers.append(Layer(name, title, "differs" if found else "match", found))
    return RunComparison(run_a, run_b, rtol, layers)
