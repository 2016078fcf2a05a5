"""pytest plugin injected (``-p cookbook.parity.reftests.plugin``) into runs of the reference's
own tests, on either package; the tests themselves are never edited.

It registers our offline tokenizer builds under the hub model names the tests use, through the
package-under-test's own ``tokenizer_utils.register_tokenizer`` (``tinker_cookbook`` in the
reference's virtualenv, ``cookbook`` in ours), so both sides see identical tokenizers, and it
records every test's outcome with a one-line reason to the JSON file named by
``COOKBOOK_REFTESTS_OUT``.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from cookbook.exceptions import TokenizerError
from cookbook.tokenizers import TokenizerSource, family_for, get_tokenizer, provenance

SIDE_ENV = "COOKBOOK_REFTESTS_SIDE"
OUT_ENV = "COOKBOOK_REFTESTS_OUT"
PACKAGES = {"reference": "tinker_cookbook", "cookbook": "cookbook"}
MESSAGE_MAX_CHARS = 300

_outcomes: dict[str, dict[str, str]] = {}
_collection_errors: dict[str, str] = {}
_registered: dict[str, dict[str, Any]] = {}


def _offline_factory(name: str) -> Any:
    return lambda: get_tokenizer(name, TokenizerSource.OFFLINE)


def register_offline_tokenizers(package: str, names: list[str]) -> dict[str, dict[str, Any]]:
    """Register every name that has an offline build; returns name -> provenance."""
    tokenizer_utils = importlib.import_module(f"{package}.tokenizer_utils")
    registered: dict[str, dict[str, Any]] = {}
    for name in names:
        try:
            family_for(name)
        except TokenizerError:
            continue
        if name.startswith("cookbook-standin/"):
            continue
        tokenizer_utils.register_tokenizer(name, _offline_factory(name))
        prov = provenance(get_tokenizer(name, TokenizerSource.OFFLINE))
        registered[name] = {"source": prov.source, "vocab_size": prov.vocab_size}
    return registered


def pytest_configure(config: pytest.Config) -> None:
    side = os.environ[SIDE_ENV]
    manifest = json.loads((config.rootpath.parent / "manifest.json").read_text(encoding="utf-8"))
    _registered.update(register_offline_tokenizers(PACKAGES[side], manifest["model_names"]))


def _message(report: Any) -> str:
    if report.passed:
        return ""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # a skip: (file, line, reason)
        text = str(longrepr[2])
    else:
        crash = getattr(longrepr, "reprcrash", None)
        text = crash.message if crash is not None else str(longrepr).strip().splitlines()[-1:]
        text = text if isinstance(text, str) else " ".join(text)
    first = " ".join(text.split())
    return first[:MESSAGE_MAX_CHARS]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    entry = _outcomes.get(report.nodeid)
    if report.when == "call" or (report.when == "setup" and not report.passed):
        outcome = "error" if report.when == "setup" and report.failed else report.outcome
        _outcomes[report.nodeid] = {"outcome": outcome, "message": _message(report)}
    elif report.when == "teardown" and report.failed and entry is not None:
        entry.update(outcome="error", message=_message(report))


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _collection_errors[report.nodeid] = _message(report)


def pytest_sessionfinish(session: pytest.Session) -> None:
    out = os.environ.get(OUT_ENV)
    if not out:
        return
    side = os.environ[SIDE_ENV]
    versions = {
        name: metadata.version(name)
        for name in ("tinker-cookbook", "tinker", "transformers", "tokenizers", "torch")
        if _installed(name)
    }
    record = {
        "side": side,
        "package": PACKAGES[side],
        "python": platform.python_version(),
        "versions": versions,
        "registered_tokenizers": _registered,
        "collection_errors": dict(sorted(_collection_errors.items())),
        "tests": dict(sorted(_outcomes.items())),
    }
    Path(out).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True
