"""The reference's own tests, from its sdist on the package registry, ready to run twice.

The pinned ``tinker-cookbook`` sdist ships the reference's test suite. :func:`fetch` downloads it
with pip (cached: registry access, like ``pip install``), :func:`extract` unpacks the selected
test files into two trees under the cache: ``reference/`` verbatim and ``cookbook/`` with only
the import statements rewritten (``tinker_cookbook`` -> ``cookbook``). Nothing else in a test is
touched; :func:`model_names` lists the hub model names the tests ask tokenizers for, so the
pytest plugin can register offline builds under those names on either side.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath

from cookbook.exceptions import ConfigurationError
from cookbook.parity.golden import REFERENCE_PACKAGE, REFERENCE_VERSION
from cookbook.tokenizers.offline import cache_root

SELECTION: tuple[str, ...] = (
    "tinker_cookbook/renderers/*_test.py",
    "tinker_cookbook/model_info_test.py",
    "tinker_cookbook/supervised/common_test.py",
    "tests/downstream_compat/__init__.py",
    "tests/downstream_compat/conftest.py",
    "tests/downstream_compat/sig_helpers.py",
    "tests/downstream_compat/test_renderers.py",
    "tests/downstream_compat/test_model_info.py",
    "tests/downstream_compat/test_tokenizer_utils.py",
    "tests/downstream_compat/test_supervised.py",
)
"""sdist paths run against both packages: the renderer and model_info unit
tests, the supervised common (datum, NLL, bits-per-byte) tests and the downstream_compat API
tests of the slices cookbook implements."""

SIDES = ("reference", "cookbook")
MANIFEST = "manifest.json"
_IMPORT = re.compile(r"^(\s*)(from|import)(\s+)tinker_cookbook\b", re.MULTILINE)
# Hub ids the tests name: "Org/Model..." string literals.
_MODEL_LITERAL = re.compile(r"""["']([A-Za-z0-9][\w.-]*/[\w.:-]+)["']""")


@dataclass(frozen=True)
class Extracted:
    root: Path
    """Holds ``reference/`` and ``cookbook/`` (one tree per side) and ``manifest.json``."""
    sdist: Path
    sdist_sha256: str
    files: tuple[str, ...]

    def tree(self, side: str) -> Path:
        return self.root / side


def default_root(version: str = REFERENCE_VERSION) -> Path:
    return cache_root() / "reference-tests" / f"{REFERENCE_PACKAGE}-{version}"


def fetch(root: Path | None = None, version: str = REFERENCE_VERSION) -> Path:
    """The sdist of ``version`` (the pinned one unless told), downloaded once with
    ``pip download`` into the cache."""
    downloads = (root or default_root(version)) / "sdist"
    name = f"{REFERENCE_PACKAGE.replace('-', '_')}-{version}.tar.gz"
    target = downloads / name
    if target.exists():
        return target
    downloads.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--dest",
        str(downloads),
        f"{REFERENCE_PACKAGE}=={version}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not target.exists():
        raise ConfigurationError(
            f"pip download of {REFERENCE_PACKAGE}=={version} failed "
            f"(the package registry is needed once): {done.stderr.strip()[-400:]}"
        )
    return target


def rewrite_imports(source: str) -> tuple[str, int]:
    """``from/import tinker_cookbook...`` -> ``cookbook...``; nothing else. Returns the new text
    and the number of import statements rewritten."""
    return _IMPORT.subn(r"\1\2\3cookbook", source)


def _selected(relative: str) -> bool:
    return any(fnmatch(relative, pattern) for pattern in SELECTION)


def extract(sdist: Path, root: Path | None = None) -> Extracted:
    """Unpack the selected test files into both trees (replacing earlier extractions)."""
    root = root or default_root()
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    staging = root / "staging"
    shutil.rmtree(staging, ignore_errors=True)
    files: dict[str, str] = {}
    rewritten = 0
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            parts = PurePosixPath(member.name).parts
            relative = "/".join(parts[1:])
            if not member.isfile() or not _selected(relative):
                continue
            handle = archive.extractfile(member)
            assert handle is not None  # a regular file always has a stream
            text = handle.read().decode("utf-8")
            ours, count = rewrite_imports(text)
            rewritten += count
            for side, content in zip(SIDES, (text, ours), strict=True):
                path = staging / side / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content, encoding="utf-8")
            files[relative] = hashlib.sha256(text.encode()).hexdigest()
    if not files:
        raise ConfigurationError(f"{sdist}: none of the selected test files is in the sdist")
    for side in SIDES:
        (staging / side / "pytest.ini").write_text(_PYTEST_INI, encoding="utf-8")
    manifest = {
        "package": REFERENCE_PACKAGE,
        "version": REFERENCE_VERSION,
        "sdist": sdist.name,
        "sdist_sha256": digest,
        "selection": list(SELECTION),
        "files": dict(sorted(files.items())),
        "imports_rewritten": rewritten,
        "model_names": model_names(staging / "reference"),
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    for side in (*SIDES, MANIFEST):
        target = root / side
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        (staging / side).rename(target)
    shutil.rmtree(staging)
    return Extracted(root, sdist, digest, tuple(sorted(files)))


def load(root: Path | None = None) -> Extracted:
    """An earlier extraction, or ConfigurationError naming the command that makes one."""
    root = root or default_root()
    path = root / MANIFEST
    if not path.exists():
        raise ConfigurationError(
            f"{path}: the reference's tests are not extracted; run "
            "`python tools/reference_tests.py fetch` (needs the package registry once)"
        )
    manifest = json.loads(path.read_text(encoding="utf-8"))
    return Extracted(
        root, root / "sdist" / manifest["sdist"], manifest["sdist_sha256"], tuple(manifest["files"])
    )


def model_names(tree: Path) -> list[str]:
    """Every hub-style model id written as a string literal in the tests."""
    names: set[str] = set()
    for path in tree.rglob("*.py"):
        names.update(_MODEL_LITERAL.findall(path.read_text(encoding="utf-8")))
    return sorted(names)


_PYTEST_INI = """\
[pytest]
python_files = *_test.py test_*.py
markers =
    slow: marks tests as slow
    integration: marks tests requiring TINKER_API_KEY and network access
    downstream_compat: marks tests that verify public API contracts for downstream consumers
    timeout: per-test timeout in seconds (requires pytest-timeout)
"""
"""The reference's own pytest settings (pyproject.toml), minus its test paths."""
