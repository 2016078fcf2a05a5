"""The drift report of two reference releases' golden directories (`nox -s drift`):
``python -m cookbook.parity.drift_report --output DIR`` writes ``DIR/drift.json``, its JSON
Schema ``DIR/drift.schema.json`` and ``DIR/index.html`` (summary table first). Deterministic
(no clock, sorted), so the committed copy under docs/drift/ can be checked against the goldens.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from cookbook.exceptions import CookbookError, GoldenError
from cookbook.parity import golden as g
from cookbook.parity.drift import (
    Aspect,
    CaseDrift,
    CaseStatus,
    DriftReport,
    FieldChange,
    ModelInfoDrift,
    ProbesDrift,
    RegistryDrift,
    RendererDrift,
    RendererStatus,
    Side,
    Summary,
    case_drift,
)
from cookbook.parity.harmony import TOOL_PREFIX_FILE
from cookbook.parity.layers import first_diff
from cookbook.parity.release_notes import RELEASE_NOTES_FILE

MODEL_INFO_FILE = "model_info.json"
JSON_FILE, SCHEMA_FILE, HTML_FILE = "drift.json", "drift.schema.json", "index.html"


def _load_json(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as exc:
        raise GoldenError(f"{path}:{exc.lineno}: corrupted golden: {exc.msg}") from None


def _side(root: Path, version: str) -> Side:
    """A golden directory's provenance, after checking its files against its manifest."""
    manifest = g.load_manifest(root)
    mismatches = g.manifest_mismatches(root)
    if mismatches:
        raise GoldenError(
            f"{root}: {mismatches[0]}: does not match {g.manifest_path(root)} "
            f"({len(mismatches)} files); run `{manifest.get('regenerate', g.REGENERATE)}`"
        )
    reference = manifest.get("reference", {})
    if reference.get(g.REFERENCE_PACKAGE) != version:
        raise GoldenError(
            f"{g.manifest_path(root)}: reference: made by {g.REFERENCE_PACKAGE} "
            f"{reference.get(g.REFERENCE_PACKAGE)}, not {version}"
        )
    return Side(
        version=version,
        golden_dir=root.as_posix(),
        reference=reference,
        manifest_sha256=g.file_sha256(g.manifest_path(root)),
    )


def _cases(root: Path, renderer: str) -> dict[str, Path]:
    return {path.stem: path for path in sorted((root / "renderers" / renderer).glob("*.json"))}


def renderer_drift(
    old_root: Path, new_root: Path, renderer: str, new_names: list[str] | None, labels: tuple
) -> RendererDrift:
    old_cases, new_cases = _cases(old_root, renderer), _cases(new_root, renderer)
    if not (old_cases and new_cases):
        if new_cases:
            status = RendererStatus.ADDED
        elif new_names is None or renderer in new_names:
            status = RendererStatus.NOT_GENERATED
        else:
            status = RendererStatus.REMOVED
        return RendererDrift(
            renderer=renderer,
            status=status,
            cases_compared=0,
            cases_changed=0,
            aspects={},
            cases=[],
        )
    cases = []
    for case in sorted(old_cases.keys() | new_cases.keys()):
        if case not in new_cases or case not in old_cases:
            only = CaseStatus.ONLY_OLD if case in old_cases else CaseStatus.ONLY_NEW
            cases.append(CaseDrift(case=case, status=only))
            continue
        old, new = g.load_golden(old_cases[case]), g.load_golden(new_cases[case])
        cases.append(case_drift(old, new, labels))
    changed = [c for c in cases if c.status != CaseStatus.UNCHANGED]
    aspects: dict[Aspect, int] = {}
    for case in changed:
        for aspect in {change.aspect for change in case.changes}:
            aspects[aspect] = aspects.get(aspect, 0) + 1
    return RendererDrift(
        renderer=renderer,
        status=RendererStatus.CHANGED if changed else RendererStatus.UNCHANGED,
        cases_compared=sum(c.status != CaseStatus.ONLY_NEW for c in cases),
        cases_changed=len(changed),
        aspects=dict(sorted(aspects.items())),
        cases=changed,
    )


def _field_changes(old: dict[str, Any], new: dict[str, Any]) -> list[FieldChange]:
    """Per name present on both sides, each attribute whose value differs."""
    return [
        FieldChange(name=name, field=field, old=old[name].get(field), new=new[name].get(field))
        for name in sorted(old.keys() & new.keys())
        for field in sorted(old[name].keys() | new[name].keys())
        if first_diff(old[name].get(field), new[name].get(field)) is not None
    ]


def model_info_drift(old: dict[str, Any] | None, new: dict[str, Any] | None):
    if old is None or new is None:
        return None

    def warnings(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {
            f"{w['model']} + {w['renderer']}": {"warns": w["warns"]} for w in record["warnings"]
        }

    return ModelInfoDrift(
        added=sorted(new["models"].keys() - old["models"].keys()),
        removed=sorted(old["models"].keys() - new["models"].keys()),
        changed=_field_changes(old["models"], new["models"]),
        probes_changed=_field_changes(old["probes"], new["probes"]),
        warnings_changed=_field_changes(warnings(old), warnings(new)),
    )


def probes_drift(old_root: Path, new_root: Path) -> list[ProbesDrift]:
    """The probe goldens both releases recorded, compared probe by probe."""
    found = []
    for name in (TOOL_PREFIX_FILE,):
        old, new = _load_json(old_root / name), _load_json(new_root / name)
        if old is not None and new is not None:
            difference = first_diff(old["probes"], new["probes"])
            found.append(ProbesDrift(file=name, first_difference=difference))
    return found


def _registry_names(root: Path) -> list[str] | None:
    record = _load_json(root / g.REGISTRY_FILE)
    return None if record is None else list(record["names"])


def compute_drift(old_root: Path, new_root: Path, old_version: str, new_version: str):
    """The whole report: every renderer either golden directory has, the registries, the model
    tables and the newer release's notes."""
    old_side, new_side = _side(old_root, old_version), _side(new_root, new_version)
    labels = (old_version, new_version)
    old_names, new_names = _registry_names(old_root), _registry_names(new_root)
    with_goldens = {p.name for root in (old_root, new_root) for p in (root / "renderers").glob("*")}
    renderers = [
        renderer_drift(old_root, new_root, name, new_names, labels) for name in sorted(with_goldens)
    ]
    compared = [
        r for r in renderers if r.status in (RendererStatus.CHANGED, RendererStatus.UNCHANGED)
    ]
    aspects: dict[Aspect, int] = {}
    for renderer in renderers:
        for aspect, count in renderer.aspects.items():
            aspects[aspect] = aspects.get(aspect, 0) + count
    summary = Summary(
        renderers_compared=len(compared),
        renderers_changed=[r.renderer for r in renderers if r.status == RendererStatus.CHANGED],
        renderers_not_generated=[
            r.renderer for r in renderers if r.status == RendererStatus.NOT_GENERATED
        ],
        cases_compared=sum(r.cases_compared for r in compared),
        cases_changed=sum(r.cases_changed for r in compared),
        aspects=dict(sorted(aspects.items())),
    )
    registry = RegistryDrift(
        old=old_names,
        new=new_names,
        added=[n for n in new_names or [] if old_names is not None and n not in old_names],
        removed=[n for n in old_names or [] if new_names is not None and n not in new_names],
        without_goldens=[n for n in new_names or [] if n not in with_goldens],
    )
    return DriftReport(
        old=old_side,
        new=new_side,
        summary=summary,
        registry=registry,
        renderers=renderers,
        model_info=model_info_drift(
            _load_json(old_root / MODEL_INFO_FILE), _load_json(new_root / MODEL_INFO_FILE)
        ),
        probes=probes_drift(old_root, new_root),
        release_notes=_load_json(new_root / RELEASE_NOTES_FILE),
    )


def newest_release(golden_root: Path) -> str | None:
    """The newest ``golden/<version>/`` that holds a manifest, if any."""
    versions = []
    for path in golden_root.glob("*/manifest.json"):
        try:
            versions.append(Version(path.parent.name))
        except InvalidVersion:
            continue
    return str(max(versions)) if versions else None


def write_report(report: DriftReport, output: Path) -> None:
    """drift.json, drift.schema.json and index.html, each written atomically."""
    from cookbook.parity.drift_html import render_html

    g.write_atomic(output / JSON_FILE, g.dump(report.model_dump(mode="json")))
    g.write_atomic(output / SCHEMA_FILE, g.dump(DriftReport.model_json_schema()))
    g.write_atomic(output / HTML_FILE, render_html(report))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--golden", type=Path, default=Path("golden"), help="default: golden/")
    parser.add_argument("--old", default=g.REFERENCE_VERSION, help="default: the gate's release")
    parser.add_argument("--new", help="default: the newest golden/<version>/")
    parser.add_argument("--output", type=Path, required=True, help="e.g. reports/drift")
    args = parser.parse_args(argv)
    new = args.new or newest_release(args.golden)
    if new is None:
        print(
            f"{args.golden}: --new: no golden/<version>/ to compare with; make one with "
            "`nox -s golden -- --reference VERSION`",
            file=sys.stderr,
        )
        return 2
    try:
        report = compute_drift(
            g.reference_dir(args.golden, args.old), g.reference_dir(args.golden, new), args.old, new
        )
    except CookbookError as exc:
        print(exc, file=sys.stderr)
        return 2
    write_report(report, args.output)
    summary = report.summary
    print(
        f"{args.output / HTML_FILE}: {args.old} -> {new}: {len(summary.renderers_changed)} of "
        f"{summary.renderers_compared} renderers and {summary.cases_changed} of "
        f"{summary.cases_compared} cases changed; registry +{len(report.registry.added)} "
        f"-{len(report.registry.removed)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
