"""The reference's own test suite against `cookbook` (`nox -s reference-tests`).

fetch   pip download the pinned sdist (cached) and extract its selected tests, verbatim and
        with `tinker_cookbook` imports rewritten to `cookbook`
golden  run the verbatim tests in the reference's virtualenv (this python) and write
        golden/reference_tests.json (run by `nox -s golden`, never by CI)
run     run the rewritten tests against ours (this python) and the reference (in
        --reference-python, or its committed golden), sort every test, write
        reports/reference_tests.json, print the counts; exit 1 on an undeclared gap
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cookbook.exceptions import CookbookError
from cookbook.parity.golden import REFERENCE_VERSION, write_atomic
from cookbook.parity.html import page
from cookbook.parity.reftests import outcomes, sdist, summary
from cookbook.parity.reftests.run import run_side
from cookbook.specs import load_spec

GOLDEN = Path("golden") / "reference_tests.json"
REPORTS = Path("reports")


def _write(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def golden(extracted: sdist.Extracted) -> int:
    version = metadata.version("tinker-cookbook")
    if version != REFERENCE_VERSION:
        print(f"error: golden needs tinker-cookbook=={REFERENCE_VERSION}, found {version}")
        return 2
    record = run_side(extracted, "reference", sys.executable)
    record["sdist_sha256"] = extracted.sdist_sha256
    _write(GOLDEN, record)
    passed = sum(t["outcome"] == outcomes.PASSED for t in record["tests"].values())
    print(f"{GOLDEN}: {len(record['tests'])} tests, {passed} pass on the reference offline")
    return 0


def _table(counts: dict[str, int]) -> Table:
    table = Table(title=f"tinker-cookbook {REFERENCE_VERSION}'s own tests: reference vs cookbook")
    table.add_column("category")
    table.add_column("tests", justify="right")
    for category, count in counts.items():
        table.add_row(category, str(count))
    return table


def run(extracted: sdist.Extracted, reference_python: str | None) -> int:
    spec = load_spec(outcomes.CATALOGUE)
    if reference_python:
        reference = run_side(extracted, "reference", reference_python)
    else:
        reference = json.loads(GOLDEN.read_text(encoding="utf-8"))
        if reference.get("sdist_sha256") != extracted.sdist_sha256:
            print(f"error: {GOLDEN} was made from another sdist; run `nox -s golden`")
            return 2
    ours = run_side(extracted, "cookbook", sys.executable)
    rows = outcomes.sort_tests(reference, ours, spec)
    manifest = json.loads((extracted.root / sdist.MANIFEST).read_text(encoding="utf-8"))
    data = outcomes.report(rows, reference, ours, manifest)
    _write(REPORTS / summary.REPORT_FILE, data)
    write_atomic(summary.DOC, summary.markdown(data))
    title = "tinker-cookbook's own tests against cookbook"
    write_atomic(REPORTS / "reference_tests.html", page(title, summary.html_section(data)))
    Console().print(_table(data["counts"]))
    problems = outcomes.gate(rows, spec)
    for problem in problems:
        print(f"GAP {problem}")
    print(f"{summary.headline(data)}: {REPORTS / summary.REPORT_FILE}, {summary.DOC}")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["fetch", "golden", "run"])
    parser.add_argument("--reference-python", help="the reference virtualenv's python")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            extracted = sdist.extract(sdist.fetch())
            print(f"{extracted.root}: {len(extracted.files)} test files from {extracted.sdist}")
            return 0
        extracted = sdist.load()
        if args.command == "golden":
            return golden(extracted)
        return run(extracted, args.reference_python)
    except CookbookError as error:
        print(f"error: {error}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
