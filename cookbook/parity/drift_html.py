"""The drift report as one self-contained HTML page: what a user reads before upgrading the
reference, so the summary table comes first and the per-token diffs last."""

from __future__ import annotations

from cookbook.parity.drift import Aspect, DriftReport, FieldChange, RendererDrift, RendererStatus
from cookbook.parity.html import esc, facts, page
from cookbook.parity.release_notes import RENDERER_TAG

_STATUS_CLASS = {
    RendererStatus.UNCHANGED: "pass",
    RendererStatus.CHANGED: "fail",
    RendererStatus.NOT_GENERATED: "none",
    RendererStatus.REMOVED: "fail",
    RendererStatus.ADDED: "none",
}


def _names(names: list[str]) -> str:
    return ", ".join(f"<code>{esc(n)}</code>" for n in names) or "none"


def _summary(report: DriftReport) -> str:
    s, old, new = report.summary, report.old.version, report.new.version
    aspects = ", ".join(f"{esc(a)}: {n}" for a, n in s.aspects.items()) or "none"
    items = [
        f"<b>{len(s.renderers_changed)}</b> of {s.renderers_compared} renderers compared and "
        f"<b>{s.cases_changed}</b> of {s.cases_compared} cases change output from {esc(old)} "
        f"to {esc(new)}: {_names(s.renderers_changed)}. Compared are the renderers with goldens "
        "on both sides: cookbook's spec cases, rendered by each release.",
        f"Changed cases by what changed: {aspects}.",
        _registry_line(report),
    ]
    if report.registry.without_goldens:
        items.append(
            f"Registered by {esc(new)} but with no goldens (cookbook does not implement them "
            f"yet): {_names(report.registry.without_goldens)}."
        )
    if s.renderers_not_generated:
        items.append(
            f"Not yet rendered by {esc(new)} (run <code>nox -s golden -- --reference "
            f"{esc(new)} --renderers ...</code>): {_names(s.renderers_not_generated)}."
        )
    for probes in report.probes:
        change = probes.first_difference or "unchanged"
        items.append(f"<code>{esc(probes.file)}</code> probes: {esc(change)}.")
    if report.model_info is not None:
        m = report.model_info
        items.append(
            f"Model table: {len(m.added)} models added, {len(m.removed)} removed, "
            f"{len(m.changed)} attribute changes, {len(m.probes_changed)} lookup changes, "
            f"{len(m.warnings_changed)} warning changes."
        )
    return "<ul>" + "".join(f"<li>{item}</li>" for item in items) + "</ul>"


def _registry_line(report: DriftReport) -> str:
    registry, old, new = report.registry, report.old.version, report.new.version
    missing = [v for v, names in ((old, registry.old), (new, registry.new)) if names is None]
    if missing:
        return f"Renderer names: not recorded for {', '.join(map(esc, missing))} (registry.json)."
    return (
        f"{esc(old)} registers {len(registry.old or [])} renderer names, {esc(new)} "
        f"{len(registry.new or [])}. Added: {_names(registry.added)}. Removed: "
        f"{_names(registry.removed)}."
    )


def _table(renderers: list[RendererDrift]) -> str:
    aspects = list(Aspect)
    head = "".join(
        f"<th>{esc(h)}</th>" for h in ("renderer", "status", "cases", "changed", *aspects)
    )
    rows = []
    for r in renderers:
        cells = [
            f'<td><a href="#{esc(r.renderer)}">{esc(r.renderer)}</a></td>'
            if r.cases
            else f"<td>{esc(r.renderer)}</td>",
            f'<td class="{_STATUS_CLASS[r.status]}">{esc(r.status)}</td>',
            f"<td>{r.cases_compared}</td>",
            f"<td>{r.cases_changed}</td>",
            *(f"<td>{r.aspects.get(a, '')}</td>" for a in aspects),
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _field_table(title: str, changes: list[FieldChange], old: str, new: str) -> str:
    if not changes:
        return ""
    rows = "".join(
        f"<tr><td>{esc(c.name)}</td><td>{esc(c.field)}</td><td>{esc(c.old)}</td>"
        f"<td>{esc(c.new)}</td></tr>"
        for c in changes
    )
    return (
        f"<h3>{esc(title)}</h3><table><tr><th>name</th><th>field</th><th>{esc(old)}</th>"
        f"<th>{esc(new)}</th></tr>{rows}</table>"
    )


def _model_info(report: DriftReport) -> str:
    m, old, new = report.model_info, report.old.version, report.new.version
    if m is None:
        return "<p>One side has no model_info.json golden.</p>"
    return (
        f"<p>Models added: {_names(m.added)}. Removed: {_names(m.removed)}.</p>"
        + _field_table("Attributes", m.changed, old, new)
        + _field_table("Lookups outside the table (probes)", m.probes_changed, old, new)
        + _field_table("warn_if_renderer_not_recommended", m.warnings_changed, old, new)
    )


def _release_notes(report: DriftReport) -> str:
    notes = report.release_notes
    if notes is None:
        return "<p>No release notes were recorded beside the newer goldens.</p>"
    entries = notes["changelog"]
    rows = "".join(
        f'<tr><td class="{"fail" if RENDERER_TAG in e["tags"] else "none"}">{esc(e["title"])}'
        f"</td><td>{esc(e['date'])}</td><td>{esc(e['type'])}</td>"
        f"<td>{esc(', '.join(e['tags']))}</td></tr>"
        for e in entries
    )
    tagged = sum(RENDERER_TAG in e["tags"] for e in entries)
    sources = notes["sources"]
    return (
        f"<p>{len(entries)} CHANGELOG.md entries are new in {esc(report.new.version)}, "
        f"{tagged} tagged <code>{RENDERER_TAG}</code>.</p>"
        + (
            f"<table><tr><th>entry</th><th>date</th><th>type</th><th>tags</th></tr>{rows}</table>"
            if entries
            else ""
        )
        + "<p>Renderer, tokenizer and model-table sources (sdist, tests excepted) changed: "
        f"{_names(sources['changed'])}; added: {_names(sources['added'])}; removed: "
        f"{_names(sources['removed'])}.</p>"
    )


OPEN_UP_TO = 20
"""Changed cases shown unfolded when there are at most this many in all."""


def _details(renderer: RendererDrift, unfold: bool) -> str:
    parts = [f'<h3 id="{esc(renderer.renderer)}">{esc(renderer.renderer)}</h3>']
    for case in renderer.cases:
        aspects = sorted({c.aspect.value for c in case.changes})
        label = f"{case.case}: {case.status}" + (f" ({', '.join(aspects)})" if aspects else "")
        items = "".join(
            f"<li><code>{esc(c.item)}</code> {esc(c.aspect)}: {esc(c.summary)}"
            + (f"<pre>{esc(c.diff)}</pre>" if c.diff else "")
            + "</li>"
            for c in case.changes
        )
        tag = "<details open>" if unfold else "<details>"
        parts.append(f"{tag}<summary>{esc(label)}</summary><ul>{items}</ul></details>")
    return "".join(parts)


def render_html(report: DriftReport) -> str:
    old, new = report.old, report.new
    unfold = report.summary.cases_changed <= OPEN_UP_TO
    body = [
        facts(
            {
                f"old ({old.version})": ", ".join(f"{k} {v}" for k, v in old.reference.items()),
                f"new ({new.version})": ", ".join(f"{k} {v}" for k, v in new.reference.items()),
                "goldens": f"{old.golden_dir}, {new.golden_dir}",
                "regenerate": "nox -s drift",
            }
        ),
        "<h2>Summary</h2>",
        _summary(report),
        _table(report.renderers),
        "<h2>Renderer names</h2>",
        f"<p>{_registry_line(report)}</p>",
        "<h2>Model table</h2>",
        _model_info(report),
        "<h2>The release's own notes</h2>",
        _release_notes(report),
        "<h2>Per-token differences</h2>",
        *(_details(r, unfold) for r in report.renderers if r.cases),
    ]
    if not any(r.cases for r in report.renderers):
        body.append("<p>None: every case compared renders the same in both releases.</p>")
    return page(f"Renderer drift: tinker-cookbook {old.version} -> {new.version}", "\n".join(body))
