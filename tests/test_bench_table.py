"""The README's renderer performance table: generated from the committed bench JSON, and
covering every renderer that has parity specs (issue 16's done-when); the repeated batch runs
and the CPU-beside-wall ratios it is built from."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH_JSON = ROOT / "docs" / "bench" / "renderers.json"


def _tool(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_readme_table_is_generated_from_the_committed_bench() -> None:
    tool = _tool("bench_table")
    readme = (ROOT / "README.md").read_text("utf-8")
    expected = tool.replace_block(
        readme, tool.table(json.loads(BENCH_JSON.read_text("utf-8"))), "README.md"
    )
    assert readme == expected, (
        "run `python tools/bench_table.py docs/bench/renderers.json --readme README.md`"
    )


def test_committed_bench_covers_every_renderer_with_parity_specs() -> None:
    bench = _tool("bench_renderers")
    wanted = bench.renderer_models(ROOT / "specs" / "renderers")
    reports = _tool("bench_table").reports(json.loads(BENCH_JSON.read_text("utf-8")))
    benched = {r["renderer"]: r["model_name"] for r in reports}
    assert benched == {name: spec.model_name for name, spec in wanted.items()}


def test_readme_without_markers_is_refused(tmp_path: Path) -> None:
    tool = _tool("bench_table")
    readme = tmp_path / "README.md"
    readme.write_text("# no table here\n", "utf-8")
    assert tool.main([str(BENCH_JSON), "--readme", str(readme)]) == 2
    assert readme.read_text("utf-8") == "# no table here\n"


class _Clock:
    """A fake ``time`` module: each variant's call advances it by that variant's cost in wall
    seconds and half that in CPU seconds, so the timing helpers are deterministic."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def process_time(self) -> float:
        return self.now / 2


def test_compared_variants_share_a_run_called_in_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    timing = _tool("bench_timing")
    clock = _Clock()
    monkeypatch.setattr(
        timing,
        "time",
        SimpleNamespace(perf_counter=clock.perf_counter, process_time=clock.process_time),
    )
    costs = {"alone": 0.03, "single": 0.02, "ref": 0.05, "batch": 0.011, "bare": 0.005}
    log: list[str] = []

    def call(name: str) -> None:
        log.append(name)
        clock.now += costs[name]

    variants = {name: lambda name=name: call(name) for name in costs}
    assert timing.calls_per_round(variants["batch"], 0.1) == 19  # CPU: ceil(0.1 / 0.0055)
    log.clear()
    cpu: dict[str, list[float]] = {}
    groups = {("batch", "bare"): 19, ("single", "ref"): 4}
    wall = timing.time_rounds(variants, 3, cpu, warm_up=False, together=groups)
    assert [log.count(name) for name in costs] == [3, 3 * 4, 3 * 4, 3 * 19, 3 * 19]
    # Called in turn: each turn of a group's run calls each of its variants once, so they see
    # the same moments of the machine's load.
    for group, calls in groups.items():
        members = [name for name in log if name in group]
        turns = [set(members[i : i + 2]) for i in range(0, len(members), 2)]
        assert turns == [set(group)] * (3 * calls)
    # Per call, not per run: the repeated variants' seconds compare with the others'.
    for name, cost in costs.items():
        assert wall[name] == pytest.approx([cost] * 3)
        assert cpu[name] == pytest.approx([cost / 2] * 3)


def test_per_conversation_and_batch_runs_are_the_bench_groups() -> None:
    measure = _tool("bench_renderers_measure")
    assert measure.REPEATED == (
        ("ours_batch", "baseline", "baseline_encode_batch_fast"),
        ("reference", "ours_per_conversation"),
    )


def test_batch_ratios_carry_cpu_beside_wall() -> None:
    bench = _tool("bench_renderers")
    names = (
        "reference",
        "ours_per_conversation",
        "ours_batch",
        "sl_datum_reference",
        "sl_datum_ours",
        "sl_recipe_rows_reference",
        "sl_recipe_rows_ours",
        "baseline",
        "baseline_encode_batch_fast",
    )
    wall = {name: [1.0, 2.0, 3.0] for name in names}
    cpu = {name: [1.0, 1.0, 1.0] for name in names}
    wall["ours_batch"], cpu["ours_batch"] = [2.4, 2.5, 9.0], [0.5, 0.5, 0.6]
    cpu["ours_per_conversation"] = [0.4, 0.4, 0.5]
    measurement = bench.Measurement(
        wall, cpu, dict.fromkeys(names, 1), dict.fromkeys(names, 10), {}
    )
    results, ratios = bench.summarise(measurement)
    batch = ratios["ours_batch"]
    assert batch["slowdown_vs_baseline"] == pytest.approx(2.5 / 2.0)  # medians
    assert batch["cpu_slowdown_vs_baseline"] == pytest.approx(0.5 / 1.0)
    assert batch["meets_targets"]  # the target is judged on wall: 1.25x <= 1.3x
    assert results["ours_batch"]["cpu_seconds"] == [0.5, 0.5, 0.6]
    per = ratios["ours_per_conversation"]
    assert per["speedup_vs_reference"] == pytest.approx(1.0)  # wall medians alike
    assert per["cpu_speedup_vs_reference"] == pytest.approx(1.0 / 0.4)
    assert not per["meets_targets"]  # judged on wall, as the table says


def test_table_shows_the_per_conversation_cpu_ratio_beside_wall() -> None:
    tool = _tool("bench_table")
    report = tool.reports(json.loads(BENCH_JSON.read_text("utf-8")))[0]
    per = report["ratios"]["ours_per_conversation"]
    row = dict(zip(tool.COLUMNS, tool.row(report), strict=True))
    assert (
        row["per conversation vs reference, CPU time"] == f"{per['cpu_speedup_vs_reference']:.2f}x"
    )
    report = {**report, "repeated": [["ours_batch", "baseline"], ["reference", "ours"]]}
    assert "(ours_batch / baseline and reference / ours called in turn" in tool.table(report)
