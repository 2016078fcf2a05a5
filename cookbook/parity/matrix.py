"""The parity matrix of a conformance run: rows are renderers (with their tokenizer), columns
golden case categories, each cell pass/fail over the items checked, failing cells carrying the
per-token diffs. Written as Markdown (a PR comment, a terminal) and as one HTML page."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from rich.table import Table
from rich.text import Text

from cookbook.parity.conformance import ConformanceRun, ItemResult
from cookbook.parity.golden import write_atomic
from cookbook.parity.html import esc, facts, page
from cookbook.parity.reftests.summary import html_section as reference_tests_section
from cookbook.parity.reftests.summary import load as load_reference_tests

MARKDOWN_FILE = "conformance.md"
HTML_FILE = "conformance.html"

Cells = dict[tuple[str, str], list[ItemResult]]
Exclusions = dict[tuple[str, str], list[str]]
EXCLUSIONS_SPEC = Path("specs") / "renderers" / "exclusions.yaml"
"""The second-oracle catalogue, found beside the golden directory's parent (the repo root)."""


def declared_exclusions(golden_dir: Path) -> Exclusions:
    """(renderer, case id or ``*``) -> the catalogue's reasons for that place.

    An exclusion never excuses a parity failure (ports are held to the reference everywhere);
    the matrix shows it so a reader sees where the reference itself departs from an oracle, or
    has none, and why.
    """
    path = golden_dir.resolve().parent / EXCLUSIONS_SPEC
    if not path.is_file():
        return {}
    from cookbook.specs import load_spec

    catalogue = load_spec(path)
    notes: Exclusions = defaultdict(list)
    for group in catalogue.disagreements:
        for where in group.where:
            items = ", ".join(where.items)
            notes[where.renderer, where.case].append(f"{group.oracle} ({items}): {group.reason}")
    for entry in catalogue.no_oracle:
        notes[entry.renderer, "*"].append(f"no oracle: {entry.reason}")
    return notes


def _excluded(notes: Exclusions, items: list[ItemResult]) -> list[str]:
    """The declared exclusions that touch a cell: its renderer's, then its cases'."""
    renderers = sorted({item.renderer for item in items})
    found = [reason for renderer in renderers for reason in notes.get((renderer, "*"), [])]
    for renderer, case in sorted({(item.renderer, item.case_id) for item in items}):
        found += [f"{case}: {reason}" for reason in notes.get((renderer, case), [])]
    return found


def _grid(run: ConformanceRun) -> tuple[list[str], list[str], Cells]:
    cells: Cells = defaultdict(list)
    for item in run.items:
        cells[item.row, item.category].append(item)
    rows = sorted({item.row for item in run.items} | set(run.unsupported))
    skipped = {c for categories in run.unsupported.values() for c in categories}
    columns = sorted({item.category for item in run.items} | skipped)
    return rows, columns, cells


def _count(items: list[ItemResult]) -> tuple[int, int]:
    return sum(1 for item in items if not item.problem), len(items)


def _label(run: ConformanceRun, row: str, column: str, items: list[ItemResult]) -> tuple[str, str]:
    """(css class / status, text) of one cell."""
    if not items:
        skipped = column in run.unsupported.get(row, set())
        return "none", "not supported" if skipped else "-"
    passed, total = _count(items)
    return (
        ("pass", f"pass {passed}/{total}")
        if passed == total
        else (
            "fail",
            f"FAIL {total - passed}/{total}",
        )
    )


def _summary(run: ConformanceRun) -> dict[str, object]:
    passed, total = _count(run.items)
    return {
        "adapter": run.command,
        "implementation": f"{run.adapter.get('implementation', '?')} "
        f"{run.adapter.get('version') or ''}".strip(),
        "goldens": run.golden_dir,
        "items": f"{passed}/{total} pass" + ("" if run.ok else f", {total - passed} fail"),
        "verdict": "conforms" if run.ok else "does not conform",
    }


def markdown(run: ConformanceRun) -> str:
    rows, columns, cells = _grid(run)
    notes = declared_exclusions(run.golden_dir)
    lines = ["# Conformance: parity matrix", ""]
    lines += [
        f"- **{k}**: `{v}`" if k == "adapter" else f"- **{k}**: {v}"
        for k, v in _summary(run).items()
    ]
    lines += ["", "| renderer | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for row in rows:
        labels = []
        for column in columns:
            items = cells.get((row, column), [])
            status, text = _label(run, row, column, items)
            excluded = len(_excluded(notes, items))
            labels.append(
                {"pass": "✅ ", "fail": "❌ "}.get(status, "")
                + text.removeprefix("pass ")
                + (f" ⚑{excluded}" if excluded else "")
            )
        lines.append(f"| {row} | " + " | ".join(labels) + " |")
    if any(notes.values()):
        lines += ["", f"⚑ = declared second-oracle exclusions ({EXCLUSIONS_SPEC}), with reasons."]
    failed = run.failed
    if failed:
        lines += ["", "## Failures", ""]
        for item in failed:
            lines += [f"### {item.row} · {item.category} · {item.case_id} · {item.item}", ""]
            lines += ["```text", str(item.problem), "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def html(run: ConformanceRun, reference_tests: dict | None = None) -> str:
    """The matrix page; ``reference_tests`` (reports/reference_tests.json, when
    `nox -s reference-tests` has written it) adds the reference's own tests below it."""
    rows, columns, cells = _grid(run)
    notes = declared_exclusions(run.golden_dir)
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body_rows = []
    for row in rows:
        tds = []
        for column in columns:
            items = cells.get((row, column), [])
            status, text = _label(run, row, column, items)
            content = esc(text)
            if status == "fail":
                diffs = "".join(
                    f"<p>{esc(i.case_id)} · {esc(i.item)}</p><pre>{esc(i.problem)}</pre>"
                    for i in items
                    if i.problem
                )
                content = f"<details><summary>{esc(text)}</summary>{diffs}</details>"
            excluded = _excluded(notes, items)
            if excluded:
                reasons = "\n".join(excluded)
                content += (
                    f' <span class="excluded" title="{esc(reasons)}">'
                    f"⚑ {len(excluded)} excluded</span>"
                )
            tds.append(
                f'<td class="{status}" data-status="{status}" '
                f'data-excluded="{len(excluded)}">{content}</td>'
            )
        body_rows.append(f"<tr><th>{esc(row)}</th>{''.join(tds)}</tr>")
    table = (
        f'<table id="parity-matrix"><tr><th>renderer</th>{head}</tr>{"".join(body_rows)}</table>'
    )
    summary = _summary(run)
    verdict = summary.pop("verdict")
    return page(
        "Conformance: parity matrix",
        facts(summary)
        + f'<p id="verdict" data-ok="{str(run.ok).lower()}"><b>{verdict}</b></p>'
        + table
        + (reference_tests_section(reference_tests) if reference_tests else ""),
    )


def console_table(run: ConformanceRun) -> Table:
    """One line per renderer (the full matrix, categories as columns, is the report's)."""
    rows, columns, cells = _grid(run)
    table = Table(title="Conformance per renderer", title_justify="left")
    for name, justify in (("renderer", "left"), ("items", "right"), ("result", "left")):
        table.add_column(name, justify=justify)
    table.add_column("failing categories")
    for row in rows:
        items = [item for column in columns for item in cells.get((row, column), [])]
        if not items:
            table.add_row(row, "0", Text("not supported by the adapter", style="dim"), "")
            continue
        passed, total = _count(items)
        failing = sorted({item.category for item in items if item.problem})
        result = (
            Text("pass", style="green")
            if passed == total
            else Text(f"FAIL {total - passed}", style="bold red")
        )
        table.add_row(row, str(total), result, ", ".join(failing))
    return table


def write_reports(run: ConformanceRun, out_dir: Path) -> tuple[Path, Path]:
    md, page_path = out_dir / MARKDOWN_FILE, out_dir / HTML_FILE
    write_atomic(md, markdown(run))
    write_atomic(page_path, html(run, load_reference_tests(out_dir)))
    return md, page_path
