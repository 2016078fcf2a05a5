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
from cookbook.tokenizers import family_for
from cookbook.tokenizers.tml import is_tml_model

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


def _tokenizer_load(spec: RendererCasesSpec) -> str:
    """Which tokenizer load a spec's cases share: its offline family, or tml-renderers' own."""
    return "tml_renderers" if is_tml_model(spec.model_name) else family_for(spec.model_name)


def _check_case(path: Path, case_id: str, record_property) -> None:
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


def _family_tests(params: list[object]) -> type:
    class FamilyCases:
        @pytest.mark.parametrize(("path", "case_id"), params)
        def test_matches_reference(self, path: Path, case_id: str, record_property) -> None:
            _check_case(path, case_id, record_property)

    return FamilyCases


# One test per case, checking all its items (each TrainOnWhat and the generation item): per-item
# tests spent more time in pytest's own per-test work than in the comparisons. The cases are
# grouped in one class per tokenizer family (TestFamily_llama3::test_matches_reference[llama3/
# single_turn]) for `pytest -n 2 --dist loadscope` (nox -s parity), which runs a class in one
# worker: loading a tokenizer (the Rust parse of its tokenizer.json, GIL held) is a third of
# the run, so each worker loads only its own families'. (xdist's loadgroup would say it with a
# mark, but its group suffix on node ids is lost under pytest 9.)
_FAMILIES: dict[str, list[object]] = {}
for _path, _case in _cases():
    _spec_of_case = _spec(_path)
    _FAMILIES.setdefault(_tokenizer_load(_spec_of_case), []).append(
        pytest.param(_path, _case.id, id=f"{_spec_of_case.renderer}/{_case.id}")
    )
for _family, _params in _FAMILIES.items():
    globals()[f"TestFamily_{_family}"] = _family_tests(_params)


def test_specs_have_cases() -> None:
    assert SPEC_FILES, "no specs/renderers/*.yaml found"
    items = sum(len(case.resolved_train_on_what()) + 1 for _, case in _cases())
    assert items >= 30


def test_every_golden_belongs_to_a_case() -> None:
    wanted = {g.golden_path(GOLDEN, _spec(p).renderer, c.id) for p, c in _cases()}
    unused = [str(f.relative_to(ROOT)) for f in g.unused_goldens(GOLDEN, wanted)]
    assert not unused, f"unused goldens (no case points to them): {unused}; run `{g.REGENERATE}`"


def test_manifest_matches_goldens() -> None:
    """Goldens change only through `nox -s golden`, which rewrites the manifest with them."""
    mismatched = g.manifest_mismatches(GOLDEN)
    assert not mismatched, f"goldens changed outside `{g.REGENERATE}`: {mismatched}"
