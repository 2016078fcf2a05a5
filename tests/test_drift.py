"""The drift report between two reference releases: it must find a planted change where it was
planted (and only there), say nothing of identical goldens, and write JSON its schema accepts.

The synthetic golden directories are copies of real 0.5.8 goldens of one renderer, the "newer"
side edited by the tests; nothing here claims what a real release renders.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import jsonschema
import pytest

from cookbook.parity import golden as g
from cookbook.parity.drift import Aspect, CaseStatus, DriftReport, RendererStatus
from cookbook.parity.drift_report import (
    HTML_FILE,
    JSON_FILE,
    SCHEMA_FILE,
    compute_drift,
    main,
    newest_release,
    write_report,
)
from cookbook.parity.harmony import TOOL_PREFIX_FILE
from cookbook.parity.release_notes import release_notes
from cookbook.renderers import builtin_renderer_names

ROOT = Path(__file__).resolve().parents[1]
RENDERER = "qwen3"
CASES = ("single_turn", "multi_turn_two", "tool_call_last")
OLD, NEW = "0.5.8", "9.9.9"


def _manifest(root: Path, version: str) -> None:
    files = {p.relative_to(root).as_posix(): g.file_sha256(p) for p in g.golden_files(root)}
    manifest = {"schema_version": 1, "reference": {g.REFERENCE_PACKAGE: version}, "files": files}
    g.write_atomic(g.manifest_path(root), g.dump(manifest))


def _registry(root: Path, names: list[str]) -> None:
    g.write_atomic(root / g.REGISTRY_FILE, g.dump({"schema_version": 1, "names": names}))


@pytest.fixture
def goldens(tmp_path: Path) -> Path:
    """golden/ (old) and golden/9.9.9/ (new), identical copies of three qwen3 cases."""
    old, new = tmp_path / "golden", tmp_path / "golden" / NEW
    for root in (old, new):
        for case in CASES:
            target = g.golden_path(root, RENDERER, case)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(g.golden_path(ROOT / "golden", RENDERER, case), target)
        _registry(root, [RENDERER, "llama3"])
    for root, version in ((old, OLD), (new, NEW)):
        _manifest(root, version)
    return old


def _edit(root: Path, case: str, edit) -> None:
    path = g.golden_path(root / NEW, RENDERER, case)
    data = json.loads(path.read_text("utf-8"))
    edit(data)
    path.write_text(g.dump(data), "utf-8")
    _manifest(root / NEW, NEW)


def _drift(root: Path) -> DriftReport:
    return compute_drift(root, root / NEW, OLD, NEW)


def test_identical_goldens_give_no_drift(goldens: Path) -> None:
    report = _drift(goldens)
    assert report.summary.cases_compared == len(CASES)
    assert report.summary.cases_changed == 0
    assert report.summary.renderers_changed == []
    assert [r.status for r in report.renderers] == [RendererStatus.UNCHANGED]
    assert report.registry.added == report.registry.removed == []


def test_planted_token_change_is_reported_at_its_position(goldens: Path) -> None:
    def plant(data: dict) -> None:
        record = data["outputs"]["supervised"]["last_assistant_message"]
        record["ids"][5] += 1
        record["pieces"][5] = "PLANTED"

    _edit(goldens, "single_turn", plant)
    report = _drift(goldens)
    assert report.summary.renderers_changed == [RENDERER]
    assert report.summary.cases_changed == 1
    (case,) = report.renderers[0].cases
    assert (case.case, case.status) == ("single_turn", CaseStatus.CHANGED)
    (change,) = case.changes
    assert (change.item, change.aspect, change.position) == (
        "supervised:last_assistant_message",
        Aspect.TOKENS,
        5,
    )
    assert change.diff is not None
    marked = [line for line in change.diff.splitlines() if line.startswith(">")]
    assert len(marked) == 1 and "PLANTED" in marked[0] and " 5 |" in marked[0]
    assert f"{OLD} id" in change.diff and f"{NEW} id" in change.diff


def test_weights_stop_parse_and_refusal_changes_are_told_apart(goldens: Path) -> None:
    def plant(data: dict) -> None:
        outputs = data["outputs"]
        outputs["supervised"]["last_assistant_message"]["weights"][0][1] -= 1
        outputs["supervised"]["last_assistant_message"]["weights"].insert(0, [1.0, 1])
        outputs["stop_sequences"] = [*outputs["stop_sequences"], 7]
        outputs["parse_response"]["complete"]["termination"] = "malformed"
        error = {"type": "ValueError", "builtin": "ValueError", "bases": ["ValueError"]}
        outputs["generation_prompt"] = {"error": {**error, "message": "planted"}}

    _edit(goldens, "multi_turn_two", plant)
    (case,) = _drift(goldens).renderers[0].cases
    found = {(c.item, c.aspect, c.position) for c in case.changes}
    assert found == {
        ("supervised:last_assistant_message", Aspect.WEIGHTS, 0),
        ("generation_prompt", Aspect.ERROR, None),
        ("stop_sequences", Aspect.STOP_SEQUENCES, None),
        ("parse_response:complete", Aspect.PARSE_RESPONSE, None),
    }
    refusal = next(c for c in case.changes if c.aspect == Aspect.ERROR)
    assert refusal.summary == f"{NEW} raised ValueError: 'planted'; {OLD} did not"


def test_changed_inputs_are_not_compared(goldens: Path) -> None:
    _edit(goldens, "tool_call_last", lambda data: data["input"].update(sha256="0" * 64))
    (case,) = _drift(goldens).renderers[0].cases
    assert (case.status, case.changes) == (CaseStatus.INPUT_CHANGED, [])


def test_registry_and_missing_renderers(goldens: Path) -> None:
    _registry(goldens / NEW, [RENDERER, "brand_new"])
    extra = g.golden_path(goldens, "llama3", "single_turn")
    extra.parent.mkdir(parents=True)
    shutil.copy(g.golden_path(ROOT / "golden", "llama3", "single_turn"), extra)
    _manifest(goldens, OLD)
    report = _drift(goldens)
    assert (report.registry.added, report.registry.removed) == (["brand_new"], ["llama3"])
    assert report.registry.without_goldens == ["brand_new"]
    statuses = {r.renderer: r.status for r in report.renderers}
    assert statuses == {"llama3": RendererStatus.REMOVED, RENDERER: RendererStatus.UNCHANGED}
    _registry(goldens / NEW, [RENDERER, "llama3"])
    statuses = {r.renderer: r.status for r in _drift(goldens).renderers}
    assert statuses["llama3"] == RendererStatus.NOT_GENERATED


def test_edited_golden_is_refused(goldens: Path) -> None:
    path = g.golden_path(goldens / NEW, RENDERER, "single_turn")
    path.write_text(path.read_text("utf-8").replace("Hello", "Hullo"), "utf-8")
    assert main(["--golden", str(goldens), "--new", NEW, "--output", "unused"]) == 2


def test_json_output_matches_its_schema(goldens: Path, tmp_path: Path) -> None:
    _edit(goldens, "single_turn", lambda d: d["outputs"]["stop_sequences"].append(1))
    output = tmp_path / "report"
    assert main(["--golden", str(goldens), "--output", str(output)]) == 0
    data = json.loads((output / JSON_FILE).read_text("utf-8"))
    jsonschema.validate(data, DriftReport.model_json_schema())
    jsonschema.validate(data, json.loads((output / SCHEMA_FILE).read_text("utf-8")))
    assert DriftReport.model_validate(data).summary.cases_changed == 1
    broken = {**data, "summary": {**data["summary"], "cases_changed": "one"}}
    with pytest.raises(jsonschema.ValidationError, match="'one' is not of type 'integer'"):
        jsonschema.validate(broken, DriftReport.model_json_schema())
    page = (output / HTML_FILE).read_text("utf-8")
    assert page.index("<h2>Summary</h2>") < page.index("<table>") < page.index("Per-token")


def test_no_newer_release_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    assert newest_release(tmp_path) is None
    assert main(["--golden", str(tmp_path), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--reference VERSION" in err
    assert not (tmp_path / "out").exists()


COMMITTED = ROOT / "docs" / "drift"


@pytest.mark.skipif(newest_release(ROOT / "golden") is None, reason="no newer release's goldens")
def test_committed_report_is_what_the_goldens_give(tmp_path: Path, monkeypatch) -> None:
    """docs/drift/ (linked from the README) is `nox -s drift`'s output for the committed
    goldens; after new goldens, run `nox -s drift` again."""
    monkeypatch.chdir(ROOT)  # the report names the golden directories as the session does
    new = newest_release(Path("golden"))
    assert new is not None
    report = compute_drift(Path("golden"), Path("golden", new), g.REFERENCE_VERSION, new)
    committed = json.loads((COMMITTED / JSON_FILE).read_text("utf-8"))
    jsonschema.validate(committed, json.loads((COMMITTED / SCHEMA_FILE).read_text("utf-8")))
    write_report(report, tmp_path)
    for name in (JSON_FILE, SCHEMA_FILE, HTML_FILE):
        assert (tmp_path / name).read_text("utf-8") == (COMMITTED / name).read_text("utf-8"), (
            f"docs/drift/{name} is out of date with the goldens: run `nox -s drift`"
        )


def test_cookbook_knows_every_name_the_gate_registers() -> None:
    """golden/registry.json is the gate's get_renderer: cookbook implements every name in it."""
    record = json.loads((ROOT / "golden" / g.REGISTRY_FILE).read_text("utf-8"))
    assert record["reference"][g.REFERENCE_PACKAGE] == g.REFERENCE_VERSION
    assert sorted(set(record["names"]) - set(builtin_renderer_names())) == []


def _sdist(path: Path, files: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"tinker_cookbook-x/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


ENTRY = (
    "### {title}\n**Date:** 2026-01-0{day}\n**Type:** fix\n**Tags:** {tags}\n\n{body}\n\n---\n\n"
)


def test_release_notes_are_the_new_entries_and_changed_sources(tmp_path: Path) -> None:
    old_log = "# Changelog\n\n---\n\n" + ENTRY.format(title="Old", day=1, tags="rl", body="a")
    new_entry = ENTRY.format(title="New", day=2, tags="renderers, eval", body="b\n\nc")
    renderer, test = "tinker_cookbook/renderers/qwen3.py", "tinker_cookbook/renderers/qwen3_test.py"
    old = _sdist(tmp_path / "old.tar.gz", {"CHANGELOG.md": old_log, renderer: "1", test: "1"})
    new_files = {"CHANGELOG.md": old_log.replace("---\n\n", "---\n\n" + new_entry, 1)}
    new_files |= {renderer: "2", test: "2", "tinker_cookbook/renderers/k3.py": "3"}
    notes = release_notes(old, _sdist(tmp_path / "new.tar.gz", new_files))
    (entry,) = notes["changelog"]
    assert entry == {
        "title": "New",
        "date": "2026-01-02",
        "type": "fix",
        "tags": ["renderers", "eval"],
        "body": "b\n\nc",
    }
    assert notes["sources"] == {
        "added": ["tinker_cookbook/renderers/k3.py"],
        "removed": [],
        "changed": [renderer],
    }


def test_oracle_and_probe_changes_are_reported(goldens: Path) -> None:
    _edit(
        goldens,
        "single_turn",
        lambda d: d["oracles"]["chat_template"]["supervised"].update(agrees=False),
    )
    for root in (goldens, goldens / NEW):
        shutil.copy(ROOT / "golden" / TOOL_PREFIX_FILE, root / TOOL_PREFIX_FILE)
    assert [p.first_difference for p in _drift(goldens).probes] == [None]
    probes = json.loads((goldens / NEW / TOOL_PREFIX_FILE).read_text("utf-8"))
    probes["probes"][0]["messages"] = ["planted"]
    (goldens / NEW / TOOL_PREFIX_FILE).write_text(g.dump(probes), "utf-8")
    report = _drift(goldens)
    (case,) = report.renderers[0].cases
    assert [(c.item, c.aspect) for c in case.changes] == [("oracles", Aspect.ORACLE)]
    assert "chat_template.supervised.agrees" in case.changes[0].summary
    (probe,) = report.probes
    assert probe.first_difference is not None and probe.first_difference.startswith("[0].messages")
