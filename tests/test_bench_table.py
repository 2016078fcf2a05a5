"""The README's renderer performance table: generated from the committed bench JSON, and
covering every renderer that has parity specs (issue 16's done-when)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

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
