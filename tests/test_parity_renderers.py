"""Golden parity: every (case, train_on_what) of specs/renderers/*.yaml against the reference.

Items are collected from the YAML, so adding a case is a YAML edit plus `nox -s golden`. A
mismatch prints the first diverging token (position, ids, text, weight, segment) instead of a
wall of integers; stale, missing, unused and hand-edited goldens fail with the command to run.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from cookbook.parity import golden as g
from cookbook.parity.compare import CaseResult, compare_case
from cookbook.specs import RendererCase, RendererCasesSpec, load_spec

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "golden"


@cache
def _load(path: Path) -> object:
    return load_spec(path)


# specs/renderers/ also holds the exclusions catalogue (tests/test_exclusions.py).
SPEC_FILES = [
    path
    for path in sorted((ROOT / "specs" / "renderers").glob("*.yaml"))
    if isinstance(_load(path), RendererCasesSpec)
]

pytestmark = [
    pytest.mark.parity,
    # Cases that deliberately give gpt-oss's system-prompt renderers a system message of their
    # own: the renderer warns (as the reference does) and the goldens pin what it renders.
    pytest.mark.filterwarnings("ignore:use_system_prompt=True:UserWarning"),
]


def _spec(path: Path) -> RendererCasesSpec:
    spec = _load(path)
    assert isinstance(spec, RendererCasesSpec)
    return spec


def _result(path: Path, case_id: str) -> CaseResult:
    spec = _spec(path)
    case = next(c for c in spec.cases if c.id == case_id)
    return compare_case(GOLDEN, spec, case, pieces=False)


def _cases() -> list[tuple[Path, RendererCase]]:
    return [(path, case) for path in SPEC_FILES for case in _spec(path).cases]


# One test per case, checking all its items (each TrainOnWhat and the generation item): per-item
# tests spent more time in pytest's own per-test work than in the comparisons.
CASES = [
    pytest.param(path, case.id, id=f"{_spec(path).renderer}/{case.id}") for path, case in _cases()
]


def test_specs_have_cases() -> None:
    assert SPEC_FILES, "no specs/renderers/*.yaml found"
    items = sum(len(case.resolved_train_on_what()) + 1 for _, case in _cases())
    assert items >= 30


@pytest.mark.parametrize(("path", "case_id"), CASES)
def test_matches_reference(path: Path, case_id: str, record_property) -> None:
    """Every item of the case matches its golden; the failure lists each item that does not.
    The item counts go to the run summary (tests/conftest.py)."""
    result = _result(path, case_id)
    if result.golden_problem:
        problems = [result.golden_problem]
    else:
        problems = [f"[{item}] {p}" for item in result.items if (p := result.problem(item))]
    record_property("parity_items", len(result.items))
    record_property(
        "parity_failed_items", len(result.items) if result.golden_problem else len(problems)
    )
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def test_every_golden_belongs_to_a_case() -> None:
    wanted = {g.golden_path(GOLDEN, _spec(p).renderer, c.id) for p, c in _cases()}
    unused = [str(f.relative_to(ROOT)) for f in g.unused_goldens(GOLDEN, wanted)]
    assert not unused, f"unused goldens (no case points to them): {unused}; run `{g.REGENERATE}`"


def test_manifest_matches_goldens() -> None:
    """Goldens change only through `nox -s golden`, which rewrites the manifest with them."""
    mismatched = g.manifest_mismatches(GOLDEN)
    assert not mismatched, f"goldens changed outside `{g.REGENERATE}`: {mismatched}"
