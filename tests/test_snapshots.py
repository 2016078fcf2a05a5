"""Snapshots (syrupy) of what users read, so that any change to it shows up in review: the
malformed-spec error lines, the --help texts, a run's console output (banner, steps, summary)
and the parity matrix. Reference goldens are not snapshots: they stay in golden/, JSON, made by
the reference.

After an intended change: `pytest tests/test_snapshots.py --snapshot-update`, then read the
diff of tests/__snapshots__/test_snapshots.ambr before committing it. Paths that vary between
machines are replaced by <tmp>; terminal width is pinned to 100 columns.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_recipe_cli import CORPUS, ROOT, TINY

from cookbook.cli import build_compare_parser, build_parser, main
from cookbook.parity import matrix
from cookbook.parity.conformance import ConformanceRun, ItemResult
from cookbook.serve.cli import build_parser as build_serve_parser


@pytest.fixture(autouse=True)
def fixed_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")


def test_malformed_spec_errors(
    snapshot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    errors = {}
    for source in CORPUS:
        shutil.copy(source, specs / source.name)
        assert main([str(specs / source.name)]) == 2
        errors[source.stem] = capsys.readouterr().err.replace(str(tmp_path), "<tmp>")
    assert errors == snapshot


@pytest.mark.parametrize(
    "parser",
    [build_parser, build_compare_parser, build_serve_parser],
    ids=["cookbook-run", "cookbook-run-compare", "cookbook-serve"],
)
def test_help(snapshot, parser) -> None:
    assert parser().format_help() == snapshot


def test_run_console_output(
    snapshot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """A short fake run with relative paths: banner, stand-in notes, one line per step, the
    final sample and the summary. Nothing in it depends on time or the machine."""
    monkeypatch.chdir(tmp_path)
    Path("tiny.yaml").write_text(TINY, "utf-8")
    assert main(["tiny.yaml", "--set", "max_steps=3", "--log-dir", "runs/tiny"]) == 0
    captured = capsys.readouterr()
    assert captured.out == snapshot


def test_parity_matrix(snapshot, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Markdown matrix of a run with a passing row, a failing cell and an unsupported
    renderer; goldens relative to the repository so the exclusion notes are found."""
    monkeypatch.chdir(ROOT)
    run = ConformanceRun(
        "python3 my_port_adapter.py",
        Path("golden"),
        {"protocol": 1, "renderers": ["llama3", "qwen3"], "implementation": "port", "version": "1"},
    )
    llama, qwen = "meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen3-8B"
    for case, category in (("single_turn", "basic"), ("emoji", "unicode")):
        for item in ("all_assistant_messages", "generation"):
            run.items.append(ItemResult("llama3", llama, case, category, item, None))
    problem = "last_assistant_message: first token divergence at position 3 (expected 9, got 8)"
    run.items.append(ItemResult("qwen3", qwen, "multi_turn", "basic", "generation", None))
    run.items.append(
        ItemResult("qwen3", qwen, "multi_turn", "basic", "last_assistant_message", problem)
    )
    run.unsupported["kimi_k2 (moonshotai/Kimi-K2-Thinking)"] = {"basic"}
    assert matrix.markdown(run) == snapshot
