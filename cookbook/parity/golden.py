"""Golden files: language-neutral JSON snapshots of what the pinned reference produced.

One file per case at ``golden/renderers/<renderer>/<case>.json`` plus ``golden/manifest.json``
(provenance and the sha256 of every golden, so hand edits are caught). A golden is *stale* when
its input digest or tokenizer file hashes no longer match the spec case, and *unused* when no
case points to it; both fail with the command that regenerates goldens.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from cookbook.digests import content_digest
from cookbook.exceptions import ConfigurationError, GoldenError
from cookbook.specs.models import RendererCase, RendererCasesSpec, RendererExclusionsSpec

SCHEMA_VERSION = 1
REGENERATE = "nox -s golden"
REFERENCE_PACKAGE = "tinker-cookbook"
REFERENCE_VERSION = "0.5.8"
REGISTRY_FILE = "registry.json"
"""Every renderer name the reference's ``get_renderer`` knows, beside its goldens."""
GOLDEN_DIR_ENV = "COOKBOOK_GOLDEN_DIR"
"""Where the goldens are when ``--golden-dir`` is not given (docs/conformance.md)."""
_REQUIRED = ("schema_version", "case_id", "renderer", "input", "tokenizer", "reference", "outputs")


def case_digest(spec: RendererCasesSpec, case: RendererCase) -> str:
    """sha256 of everything that decides a case's output except the tokenizer files."""
    payload = {
        "renderer": spec.renderer,
        "model_name": spec.model_name,
        "messages": case.message_dicts(),
        "train_on_what": [str(t) for t in case.resolved_train_on_what()],
    }
    return content_digest(payload)


def reference_dir(root: Path, version: str) -> Path:
    """Where reference release ``version``'s goldens live: ``root`` itself for the pinned one
    (the gate), ``root/<version>`` for another (compared by the drift report, never gated on)."""
    return root if version == REFERENCE_VERSION else root / version


def golden_path(root: Path, renderer: str, case_id: str) -> Path:
    return root / "renderers" / renderer / f"{case_id}.json"


def dump(value: Any) -> str:
    return json.dumps(value, indent=1, ensure_ascii=False) + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a crash never leaves half a golden."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _loads(text: str) -> Any:
    """``json.loads``, through orjson (a tinker dependency; parsing the goldens was an eighth of
    the parity run). On bad JSON the stdlib parses again, for its wording of the error."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def load_checked_golden(
    path: Path,
    *,
    what: str,
    absent: str,
    required: Iterable[str],
    schema_version: int,
    regenerate: str,
) -> dict[str, Any]:
    """A golden file's object, with its ``required`` fields and ``schema_version``; anything
    else is a one-line :class:`GoldenError` naming the file (and line), ``what`` it is ("recipe
    golden") and the command that regenerates it. ``absent`` names it when there is none."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise GoldenError(f"{path}: no {absent}; run `{regenerate}`") from None
    try:
        data = _loads(text)
    except json.JSONDecodeError as exc:
        raise GoldenError(f"{path}:{exc.lineno}: corrupted {what}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise GoldenError(f"{path}:1: corrupted {what}: top level is not an object")
    for key in required:
        if key not in data:
            raise GoldenError(
                f"{path}: {key}: missing field, not a complete {what}; "
                f"regenerate with `{regenerate}`"
            )
    if data["schema_version"] != schema_version:
        raise GoldenError(
            f"{path}: schema_version: {data['schema_version']!r} is not {schema_version}; "
            f"regenerate with `{regenerate}`"
        )
    return data


def load_golden(path: Path) -> dict[str, Any]:
    """Read and structurally check a renderer golden."""
    return load_checked_golden(
        path,
        what="golden",
        absent="golden for this case",
        required=_REQUIRED,
        schema_version=SCHEMA_VERSION,
        regenerate=REGENERATE,
    )


def staleness(
    golden: dict[str, Any], spec: RendererCasesSpec, case: RendererCase, tokenizer_files: dict
) -> str | None:
    """Why a golden no longer describes its case, or None if it still does."""
    if golden["input"].get("sha256") != case_digest(spec, case):
        return f"the case's input changed since the golden was made; run `{REGENERATE}`"
    if golden["tokenizer"].get("files") != tokenizer_files:
        return f"the tokenizer files changed since the golden was made; run `{REGENERATE}`"
    return None


def manifest_path(root: Path) -> Path:
    return root / "manifest.json"


def load_manifest(root: Path) -> dict[str, Any]:
    path = manifest_path(root)
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise GoldenError(f"{path}: missing; run `{REGENERATE}`") from None
    except json.JSONDecodeError as exc:
        raise GoldenError(f"{path}:{exc.lineno}: corrupted manifest: {exc.msg}") from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        raise GoldenError(f"{path}: files: missing; run `{REGENERATE}`")
    return data


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def default_golden_dir() -> Path:
    """The goldens to check against without ``--golden-dir``: ``$COOKBOOK_GOLDEN_DIR``, else
    the renderer goldens a wheel carries (``cookbook/_golden``, see setup.py), else the
    repository's golden/ beside an editable or source checkout. Never the working directory:
    a port author runs the checker from their own repository."""
    if os.environ.get(GOLDEN_DIR_ENV):
        return Path(os.environ[GOLDEN_DIR_ENV])
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "_golden", package.parent / "golden"):
        if golden_files(candidate):
            return candidate
    raise ConfigurationError(
        f"no renderer goldens found (not in {package / '_golden'} nor {package.parent / 'golden'})"
        f": pass --golden-dir DIR or set {GOLDEN_DIR_ENV}"
    )


def golden_files(root: Path) -> list[Path]:
    return sorted((root / "renderers").glob("*/*.json"))


def unused_goldens(root: Path, wanted: set[Path]) -> list[Path]:
    """Golden files that no spec case points to."""
    return [path for path in golden_files(root) if path not in wanted]


def manifest_mismatches(root: Path) -> list[str]:
    """Goldens whose bytes differ from the manifest, or that only one side lists."""
    listed = load_manifest(root)["files"]
    on_disk = {p.relative_to(root).as_posix(): file_sha256(p) for p in golden_files(root)}
    return sorted(k for k in listed.keys() | on_disk.keys() if listed.get(k) != on_disk.get(k))


# -- second-oracle disagreements ------------------------------------------------------------

OracleKey = tuple[str, str, str, str]
"""(oracle, renderer, case, item): one oracle comparison of one case."""


def oracle_disagreements(golden: dict[str, Any]) -> set[OracleKey]:
    """The oracle comparisons a golden records as disagreeing with the reference."""
    renderer, case = golden["renderer"]["name"], golden["case_id"]
    return {
        (oracle, renderer, case, item)
        for oracle, record in golden.get("oracles", {}).items()
        for item in ("generation", "supervised")
        if record.get(item) is not None and not record[item]["agrees"]
    }


def declared_disagreements(exclusions: RendererExclusionsSpec) -> set[OracleKey]:
    """Declared comparisons; a case of ``*`` stands for every case of the renderer."""
    return {
        (group.oracle, where.renderer, where.case, item)
        for group in exclusions.disagreements
        for where in group.where
        for item in where.items
    }


def exclusion_problems(declared: set[OracleKey], observed: set[OracleKey]) -> list[str]:
    """Why the catalogue and the goldens do not match, one line per oracle comparison."""

    def wildcard(key: OracleKey) -> OracleKey:
        return (key[0], key[1], "*", key[3])

    covered = {key for key in observed if key in declared or wildcard(key) in declared}
    problems = [
        f"{'/'.join(key)}: the reference disagrees with the oracle here, but "
        "specs/renderers/exclusions.yaml does not declare it (add it with a reason)"
        for key in sorted(observed - covered)
    ]
    occurring = observed | {wildcard(key) for key in observed}
    problems += [
        f"{'/'.join(key)}: declared in specs/renderers/exclusions.yaml, but the goldens show "
        f"no disagreement (remove the entry, or run `{REGENERATE}` if the goldens are old)"
        for key in sorted(declared - occurring)
    ]
    return problems


def update_manifest(
    directory: Path, owned: Callable[[str], bool], header: dict[str, Any], reference: Any
) -> None:
    """Rewrite ``directory/manifest.json``'s entries for the files ``owned`` selects (hashed from
    disk) and keep the other entries: two generators share golden/recipes/ and its manifest."""
    path = manifest_path(directory)
    old = json.loads(path.read_text("utf-8")) if path.exists() else {}
    files = {name: digest for name, digest in old.get("files", {}).items() if not owned(name)}
    for file in sorted(directory.glob("*.json")):
        if file.name != path.name and owned(file.name):
            files[file.name] = file_sha256(file)
    manifest = {**header, "reference": reference, "files": dict(sorted(files.items()))}
    write_atomic(path, dump(manifest))
