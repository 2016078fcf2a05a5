"""The reference's own test suite against cookbook: every test that passes on the reference
offline (golden/reference_tests.json, made in its virtualenv by `nox -s golden`) must pass on
ours, outside the declared categories of specs/reference_tests.yaml.

The tests come from the pinned sdist, which `nox -s tests` downloads and extracts in its install
phase (`python tools/reference_tests.py fetch`); this test itself never touches the network.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

from cookbook.exceptions import ConfigurationError
from cookbook.parity import matrix
from cookbook.parity.conformance import ConformanceRun
from cookbook.parity.reftests import outcomes, sdist, summary
from cookbook.parity.reftests.run import run_side
from cookbook.specs import load_spec
from cookbook.specs.models import ReferenceTestsSpec

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "golden" / "reference_tests.json"
REQUIRED_ENV = "COOKBOOK_REFERENCE_TESTS"
"""``required`` under `nox -s tests`, which extracts them: then a missing extraction fails
instead of skipping."""


def _catalogue() -> ReferenceTestsSpec:
    return load_spec(ROOT / outcomes.CATALOGUE)


def _extracted() -> sdist.Extracted:
    try:
        return sdist.load()
    except ConfigurationError as error:
        if os.environ.get(REQUIRED_ENV) == "required":
            raise
        pytest.skip(f"{error} (`nox -s tests` does this in its install phase)")


def test_every_reference_test_passing_offline_passes_on_ours(capsys) -> None:
    extracted = _extracted()
    reference = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert reference["sdist_sha256"] == extracted.sdist_sha256, "golden from another sdist"
    ours = run_side(extracted, "cookbook", sys.executable)
    spec = _catalogue()
    rows = outcomes.sort_tests(reference, ours, spec)
    counts = outcomes.counts(rows)
    with capsys.disabled():
        print(
            f"\nreference tests ({len(rows)} of tinker-cookbook's own): "
            + ", ".join(f"{n} {category}" for category, n in counts.items() if n)
        )
    assert counts[outcomes.Category.PASSES_BOTH] > 0
    assert outcomes.gate(rows, spec) == []
    manifest = json.loads((extracted.root / sdist.MANIFEST).read_text(encoding="utf-8"))
    report = outcomes.report(rows, reference, ours, manifest)
    doc = (ROOT / summary.DOC).read_text(encoding="utf-8")
    assert doc == summary.markdown(report), f"{summary.DOC} is stale: run `nox -s reference-tests`"
    claim = (
        f"Of its {len(rows)} tests, **{counts[outcomes.Category.PASSES_BOTH]} pass on both and "
        f"{counts[outcomes.Category.REFERENCE_ONLY]} pass only on the reference**"
    )
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert claim in readme, "README's counts of the reference's tests are stale"


def _record(tests: dict[str, tuple[str, str]], errors: dict[str, str] | None = None) -> dict:
    return {
        "tests": {t: {"outcome": o, "message": m} for t, (o, m) in tests.items()},
        "collection_errors": errors or {},
    }


SPEC = ReferenceTestsSpec.model_validate(
    {
        "kind": "reference_tests",
        "version": 1,
        "not_implemented_renderers": {
            "issue": 15,
            "files": ["r/kimi_k25_test.py"],
            "names": ["cookbook.renderers.glm5_3"],
            "message": "not implemented in cookbook yet",
        },
        "not_applicable": [{"tests": ["a.py::test_source[*]"], "reason": "reads source"}],
        "known_gaps": [{"tests": ["a.py::test_gap"], "reason": "declared"}],
    }
)


def test_every_outcome_pair_lands_in_its_category() -> None:
    reference = _record(
        {
            "a.py::test_both": ("passed", ""),
            "a.py::test_gap": ("passed", ""),
            "a.py::test_new_gap": ("passed", ""),
            "a.py::test_hub": (
                "failed",
                "OSError: We couldn't connect to 'https://huggingface.co'",
            ),
            "a.py::test_ours": ("failed", "AssertionError: x"),
            "a.py::test_skip": ("skipped", "Skipped: why"),
            "a.py::test_source[qwen3]": ("passed", ""),
            "r/kimi_k25_test.py::test_k": ("passed", ""),
            "b.py::test_glm": ("passed", ""),
        }
    )
    ours = _record(
        {
            "a.py::test_both": ("passed", ""),
            "a.py::test_gap": ("failed", "E AssertionError"),
            "a.py::test_new_gap": ("failed", "E AssertionError: differs"),
            "a.py::test_hub": ("failed", "E OSError"),
            "a.py::test_ours": ("passed", ""),
            "a.py::test_skip": ("skipped", "Skipped: why"),
            "a.py::test_source[qwen3]": ("failed", "E AssertionError"),
        },
        {
            "r/kimi_k25_test.py": "E ModuleNotFoundError",
            "b.py": "E ModuleNotFoundError: No module named 'cookbook.renderers.glm5_3'",
        },
    )
    rows = {r.test: r for r in outcomes.sort_tests(reference, ours, SPEC)}
    category = {test: row.category for test, row in rows.items()}
    c = outcomes.Category
    assert category == {
        "a.py::test_both": c.PASSES_BOTH,
        "a.py::test_gap": c.KNOWN_GAP,
        "a.py::test_new_gap": c.REFERENCE_ONLY,
        "a.py::test_hub": c.FAILS_BOTH,
        "a.py::test_ours": c.OURS_ONLY,
        "a.py::test_skip": c.SKIPPED,
        "a.py::test_source[qwen3]": c.NOT_APPLICABLE,
        "r/kimi_k25_test.py::test_k": c.NOT_IMPLEMENTED,
        "b.py::test_glm": c.NOT_IMPLEMENTED,
    }
    assert rows["a.py::test_hub"].reason.startswith("hub-only tokenizer")
    problems = outcomes.gate(list(rows.values()), SPEC)
    assert problems == [
        "a.py::test_new_gap: passes on the reference, fails on ours: E AssertionError: differs"
    ]


def test_a_declared_gap_that_closed_and_a_stale_pattern_fail_the_gate() -> None:
    reference = _record({"a.py::test_gap": ("passed", "")})
    ours = _record({"a.py::test_gap": ("passed", "")})
    problems = outcomes.gate(outcomes.sort_tests(reference, ours, SPEC), SPEC)
    assert [p.split(": ", 2)[1:] for p in problems] == [
        ["known_gaps", "a.py::test_gap: no longer a gap; remove the entry"],
        ["not_applicable", "a.py::test_source[*]: matches no test"],
    ]


def test_only_import_statements_are_rewritten() -> None:
    source = (
        "import tinker_cookbook.renderers as r\n"
        "from tinker_cookbook.renderers import get_renderer\n"
        "    from tinker_cookbook import model_info\n"
        'NAME = "tinker_cookbook.renderers"\n'
        "x = tinker_cookbook_like\n"
    )
    rewritten, count = sdist.rewrite_imports(source)
    assert count == 3
    assert rewritten.splitlines() == [
        "import cookbook.renderers as r",
        "from cookbook.renderers import get_renderer",
        "    from cookbook import model_info",
        'NAME = "tinker_cookbook.renderers"',
        "x = tinker_cookbook_like",
    ]


def test_the_catalogue_declares_only_unported_renderers() -> None:
    """A stale declaration would hide a real failure of a ported renderer as "not implemented"."""
    declared = _catalogue().not_implemented_renderers
    if declared is None:
        pytest.skip("the catalogue declares no unported renderer: every one is ported")
    reference = json.loads(GOLDEN.read_text(encoding="utf-8"))
    files = {test.split("::", 1)[0] for test in reference["tests"]}
    files |= set(reference["collection_errors"])
    assert set(declared.files) <= files
    modules = [name for name in declared.names if name.startswith("cookbook.")]
    assert [name for name in modules if importlib.util.find_spec(name) is not None] == []


def test_the_parity_matrix_page_shows_the_reference_tests(tmp_path: Path) -> None:
    reference = _record({"a.py::test_both": ("passed", ""), "a.py::test_hub": ("failed", "")})
    ours = _record({"a.py::test_both": ("passed", ""), "a.py::test_hub": ("failed", "")})
    rows = outcomes.sort_tests(reference, ours, SPEC)
    for record in (reference, ours):
        record |= {"package": "p", "python": "3.11", "versions": {}, "registered_tokenizers": {}}
    manifest = {
        "package": "tinker-cookbook",
        "version": "0.5.8",
        "sdist": "s.tar.gz",
        "sdist_sha256": "0" * 64,
        "selection": [],
        "imports_rewritten": 0,
    }
    (tmp_path / summary.REPORT_FILE).write_text(
        json.dumps(outcomes.report(rows, reference, ours, manifest)), encoding="utf-8"
    )
    run = ConformanceRun(command="adapter", golden_dir=ROOT / "golden", adapter={})
    page = matrix.html(run, summary.load(tmp_path))
    assert '<table id="reference-tests">' in page
    assert "1 of the reference&#x27;s 2 tests pass on both packages" in page
    assert "<tr><th>a.py</th><td>1</td><td>1</td>" in page
    assert '<table id="reference-tests">' not in matrix.html(run, summary.load(tmp_path / "no"))
