"""Answer grading agrees with the reference on every case of golden/rl/grading.json.

Grading is the math environments' reward, so each function is compared on the whole generated
corpus (hand-picked odd answers plus seeded random surface forms, see
tools/generate_grading_goldens.py): a mismatch lists the case id, the input, what the reference
gave and what we gave. Cheap enough to run in ``nox -s tests`` as well as ``nox -s parity``.
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cookbook.parity.golden import file_sha256
from cookbook.recipes.math_rl import math_grading
from cookbook.recipes.math_rl.arithmetic_env import _extract_final_int
from cookbook.recipes.math_rl.math_env import extract_gsm8k_final_answer, safe_grade

pytestmark = pytest.mark.parity

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "rl" / "grading.json"
SHOWN = 15


def string_functions() -> dict[str, Callable[[str], Any]]:
    """Ours, by the reference's names (looked up at call time, so a patch is seen)."""
    return {
        "normalize_answer": math_grading.normalize_answer,
        "_normalize": math_grading._normalize,
        "split_tuple": math_grading.split_tuple,
        "extract_boxed": math_grading.extract_boxed,
        "extract_gsm8k_final_answer": extract_gsm8k_final_answer,
        "_extract_final_int": _extract_final_int,
    }


def pair_functions() -> dict[str, Callable[[str, str], Any]]:
    return {
        "grade_answer": math_grading.grade_answer,
        "grade_answer_math_verify": math_grading.grade_answer_math_verify,
        "safe_grade_sympy": lambda given, truth: safe_grade(given, truth, "sympy"),
        "safe_grade_math_verify": lambda given, truth: safe_grade(given, truth, "math_verify"),
    }


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    return json.loads(GOLDEN.read_text("utf-8"))


def outcome(func: Callable[..., Any], *args: str) -> dict[str, Any]:
    """The golden's encoding of a call: its value, or the exception's type and message."""
    try:
        return {"value": func(*args)}
    except Exception as exc:
        return {"raises": type(exc).__name__, "message": str(exc)}


def mismatches(golden: dict[str, Any], function: str) -> list[str]:
    """One readable line per case where ours differs from the reference."""
    if function in string_functions():
        func, cases, inputs = string_functions()[function], golden["strings"], ("input",)
    else:
        func, cases, inputs = pair_functions()[function], golden["pairs"], ("given", "ground_truth")
    lines = []
    for case in cases:
        args = [case[key] for key in inputs]
        expected = case["outputs"][function]
        got = outcome(func, *args)
        if got != expected:
            shown = ", ".join(f"{key}={case[key]!r}" for key in inputs)
            lines.append(f"{case['id']} ({case['origin']}) {shown}: expected {expected}, got {got}")
    return lines


def report(golden: dict[str, Any], function: str, lines: list[str]) -> str:
    ours = {
        name: importlib.metadata.version(name) for name in ("sympy", "pylatexenc", "math-verify")
    }
    theirs = {name: golden["versions"][name] for name in ours}
    head = f"{function}: {len(lines)} case(s) differ from the reference"
    if ours != theirs:
        head += f" (installed {ours}, golden made with {theirs})"
    return "\n".join([head, *lines[:SHOWN], *(["..."] if len(lines) > SHOWN else [])])


def test_the_corpus_is_large_and_covers_both_verdicts(golden: dict[str, Any]) -> None:
    assert golden["reference"] == {"package": "tinker-cookbook", "version": "0.5.8"}
    assert len(golden["strings"]) + len(golden["pairs"]) >= 1000
    verdicts = {case["outputs"]["grade_answer"]["value"] for case in golden["pairs"]}
    assert verdicts == {True, False}
    raised = {case["outputs"]["extract_boxed"].get("raises") for case in golden["strings"]}
    assert "ValueError" in raised
    assert set(golden["string_functions"]) == set(string_functions())
    assert set(golden["pair_functions"]) == set(pair_functions())


@pytest.mark.parametrize("function", [*string_functions(), *pair_functions()])
def test_matches_the_reference_on_every_case(golden: dict[str, Any], function: str) -> None:
    lines = mismatches(golden, function)
    assert not lines, report(golden, function, lines)


def test_a_planted_change_in_grading_fails_naming_the_case(
    golden: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Negative control: were unreduced fractions handed to sympy (a plausible slip), the check
    must name the cases that moved, with their inputs."""
    monkeypatch.setattr(math_grading, "_is_frac", lambda expr: False)
    lines = mismatches(golden, "grade_answer")
    assert lines, "the planted change went unnoticed"
    message = report(golden, "grade_answer", lines)
    pair = next(
        case for case in golden["pairs"] if (case["given"], case["ground_truth"]) == ("2/4", "1/2")
    )
    assert (
        f"{pair['id']} (odd) given='2/4', ground_truth='1/2': "
        "expected {'value': False}, got {'value': True}"
    ) in message


def test_the_manifest_holds_every_rl_golden_with_its_hash() -> None:
    """A hand edit of a golden (never allowed: they come only from the generator) shows here."""
    root = GOLDEN.parent
    manifest = json.loads((root / "manifest.json").read_text("utf-8"))
    assert manifest["regenerate"] == "nox -s golden"
    on_disk = {p.name for p in root.glob("*.json")} - {"manifest.json"}
    assert set(manifest["files"]) == on_disk
    for name, digest in manifest["files"].items():
        assert file_sha256(root / name) == digest, f"{name} changed since `nox -s golden` wrote it"
