"""`cookbook-run` as a user runs it: a table, a token view, and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = "specs/renderers/llama3.yaml"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cookbook.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_renderer_spec_prints_the_parity_table() -> None:
    result = run(SPEC)
    assert result.returncode == 0, result.stderr
    assert "special_token_literal_in_user" in result.stdout
    assert "all match the reference" in result.stdout and "ok 7/7" in result.stdout


def test_case_view_shows_tokens_and_parity() -> None:
    result = run(SPEC, "--case", "single_turn", "--train-on-what", "all_messages")
    assert result.returncode == 0, result.stderr
    assert "<|eot_id|>" in result.stdout and "parity all_messages: ok" in result.stdout


def test_invalid_spec_is_one_line_exit_2_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: renderer_cases\nversion: 1\nrenderer: nope\n", "utf-8")
    result = run(str(bad))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {bad}:3: renderer: ")
    assert result.stdout == ""


def test_unknown_case_and_mode_are_errors() -> None:
    assert run(SPEC, "--case", "nope").returncode == 2
    result = run(SPEC, "--train-on-what", "everything")
    assert result.returncode == 2 and "--train-on-what" in result.stderr


def test_help_teaches_the_spec_kinds() -> None:
    result = run("--help")
    assert (
        result.returncode == 0
        and "renderer_cases" in result.stdout
        and "examples:" in result.stdout
    )


def test_the_exclusions_catalogue_runs_as_a_table() -> None:
    result = run("specs/renderers/exclusions.yaml")
    assert result.returncode == 0, result.stderr
    assert "chat_template" in result.stdout and "tests/test_exclusions.py" in result.stdout
