"""Sort every reference test by its outcome on the reference and on ours.

Each test lands in exactly one :class:`Category`. "Passes only on the reference" is a gap in
our API or behaviour; the catalogue (``specs/reference_tests.yaml``) declares the tests that
cannot apply to another package, the unported renderers' tests (a separate, counted category)
and any gap still open, and :func:`gate` enforces it both ways.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from cookbook.specs.models import NotImplementedRenderers, ReferenceTestEntry, ReferenceTestsSpec

CATALOGUE = Path("specs") / "reference_tests.yaml"
PASSED = "passed"
SKIPPED = "skipped"


class Category(StrEnum):
    PASSES_BOTH = "passes on both"
    FAILS_BOTH = "fails on both"
    SKIPPED = "skipped on the reference"
    REFERENCE_ONLY = "passes only on the reference"
    KNOWN_GAP = "passes only on the reference (declared gap)"
    NOT_IMPLEMENTED = "renderer not implemented yet"
    NOT_APPLICABLE = "not applicable"
    OURS_ONLY = "passes only on ours"


# Why a test fails on both sides, from the reference's own failure message.
_WHY: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            r"offline mode|huggingface\.co|LocalEntryNotFound|not (?:be )?found in (?:the )?cache"
            r"|couldn't connect|OfflineModeIsEnabled|outgoing traffic has been disabled",
            re.IGNORECASE,
        ),
        "hub-only tokenizer or processor (no registry package ships it)",
    ),
    (
        re.compile(r"No module named 'tinker_cookbook\.\w+(?:\.\w+)*_test'"),
        "imports another test module the reference's wheel does not ship",
    ),
)


def why(message: str) -> str:
    for pattern, reason in _WHY:
        if pattern.search(message):
            return reason
    return message


@dataclass(frozen=True)
class Sorted:
    test: str
    category: Category
    reason: str
    reference: dict[str, str]
    ours: dict[str, str]


def matches(test: str, pattern: str) -> bool:
    """A node id, or a pattern whose only wildcard is ``*`` (``[`` in parametrised ids is
    literal)."""
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), test) is not None


def _entry_for(test: str, entries: list[ReferenceTestEntry]) -> ReferenceTestEntry | None:
    for entry in entries:
        if any(matches(test, pattern) for pattern in entry.tests):
            return entry
    return None


def _outcome(record: dict[str, Any], test: str) -> dict[str, str]:
    """A test's outcome; a test missing because its file failed to import gets that error."""
    if test in record["tests"]:
        return record["tests"][test]
    path = test.split("::", 1)[0]
    message = record["collection_errors"].get(path, "not collected")
    return {"outcome": "error", "message": message}


def _not_implemented(test: str, message: str, declared: NotImplementedRenderers) -> bool:
    if test.split("::", 1)[0] in declared.files or declared.message in message:
        return True
    return any(re.search(rf"\b{re.escape(name)}\b", message) for name in declared.names)


def sort_tests(
    reference: dict[str, Any], ours: dict[str, Any], spec: ReferenceTestsSpec
) -> list[Sorted]:
    rows = []
    declared = spec.not_implemented_renderers
    for test in sorted(reference["tests"]):
        ref, our = reference["tests"][test], _outcome(ours, test)
        ref_ok, our_ok = ref["outcome"] == PASSED, our["outcome"] == PASSED
        not_applicable = _entry_for(test, spec.not_applicable)
        gap = _entry_for(test, spec.known_gaps)
        if not_applicable is not None:
            category, reason = Category.NOT_APPLICABLE, not_applicable.reason
        elif ref["outcome"] == SKIPPED:
            category, reason = Category.SKIPPED, ref["message"]
        elif ref_ok and our_ok:
            category, reason = Category.PASSES_BOTH, ""
        elif declared is not None and ref_ok and _not_implemented(test, our["message"], declared):
            reason = f"issue {declared.issue}: {our['message']}"
            category = Category.NOT_IMPLEMENTED
        elif ref_ok and gap is not None:
            category, reason = Category.KNOWN_GAP, gap.reason
        elif ref_ok:
            category, reason = Category.REFERENCE_ONLY, our["message"]
        elif our_ok:
            category, reason = Category.OURS_ONLY, ref["message"]
        else:
            category, reason = Category.FAILS_BOTH, why(ref["message"])
        rows.append(Sorted(test, category, reason, ref, our))
    return rows


def counts(rows: list[Sorted]) -> dict[str, int]:
    return {category.value: sum(r.category is category for r in rows) for category in Category}


def gate(rows: list[Sorted], spec: ReferenceTestsSpec) -> list[str]:
    """Problems that fail CI: an undeclared gap, and a declared gap or not-applicable entry
    that no longer matches anything it claims."""
    problems = [
        f"{r.test}: passes on the reference, fails on ours: {r.reason}"
        for r in rows
        if r.category is Category.REFERENCE_ONLY
    ]
    by_test = {r.test: r for r in rows}
    for entry in spec.known_gaps:
        for pattern in entry.tests:
            matched = [r for t, r in by_test.items() if matches(t, pattern)]
            if not any(r.category is Category.KNOWN_GAP for r in matched):
                problems.append(
                    f"{CATALOGUE}: known_gaps: {pattern}: no longer a gap; remove the entry"
                )
    for entry in spec.not_applicable:
        for pattern in entry.tests:
            if not any(matches(t, pattern) for t in by_test):
                problems.append(f"{CATALOGUE}: not_applicable: {pattern}: matches no test")
    return problems


def report(
    rows: list[Sorted], reference: dict[str, Any], ours: dict[str, Any], manifest: dict[str, Any]
) -> dict[str, Any]:
    """The JSON report: provenance of both runs, counts per category, every test."""
    return {
        "schema_version": 1,
        "sdist": {k: manifest[k] for k in ("package", "version", "sdist", "sdist_sha256")},
        "selection": manifest["selection"],
        "imports_rewritten": manifest["imports_rewritten"],
        "runs": {
            side: {k: record[k] for k in ("package", "python", "versions")}
            | {"registered_tokenizers": sorted(record["registered_tokenizers"])}
            for side, record in (("reference", reference), ("cookbook", ours))
        },
        "counts": counts(rows),
        "tests": [
            {
                "test": r.test,
                "category": r.category.value,
                "reason": r.reason,
                "reference": r.reference["outcome"],
                "ours": r.ours["outcome"],
            }
            for r in rows
        ],
    }
