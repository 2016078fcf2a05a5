"""What the reference's own release says changed between two versions, from their sdists: the
CHANGELOG.md entries the newer one adds, and which renderer, tokenizer and model-table source
files differ. Recorded beside a newer release's goldens (``release_notes.json``) by the golden
generator, so the drift report can put the maintainers' words next to the observed changes.
"""

from __future__ import annotations

import hashlib
import re
import tarfile
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import Any

RELEASE_NOTES_FILE = "release_notes.json"
SOURCES: tuple[str, ...] = (
    "tinker_cookbook/renderers/*.py",
    "tinker_cookbook/model_info.py",
    "tinker_cookbook/tokenizer_utils.py",
    "tinker_cookbook/image_processing_utils.py",
    "tinker_cookbook/third_party/*.py",
)
"""sdist paths whose changes can change what a renderer or the model table produces (their
``*_test.py`` files excepted)."""
RENDERER_TAG = "renderers"
_ENTRY = re.compile(r"^### (?P<title>.+?)\s*$", re.MULTILINE)
_FIELD = re.compile(r"^\*\*(?P<name>Date|Type|Tags):\*\*\s*(?P<value>.*?)\s*$", re.MULTILINE)


def changelog_entries(text: str) -> list[dict[str, Any]]:
    """The ``### title`` entries of a CHANGELOG.md in the reference's format (date, type,
    tags, then the body up to the next ``---``), in file order."""
    starts = list(_ENTRY.finditer(text))
    entries = []
    for match, following in zip(starts, [*starts[1:], None], strict=True):
        block = text[match.end() : following.start() if following else len(text)]
        block = block.split("\n---", 1)[0]
        fields = {m["name"].lower(): m["value"] for m in _FIELD.finditer(block)}
        body = _FIELD.sub("", block).strip()
        entries.append(
            {
                "title": match["title"],
                "date": fields.get("date", ""),
                "type": fields.get("type", ""),
                "tags": [t.strip() for t in fields.get("tags", "").split(",") if t.strip()],
                "body": body,
            }
        )
    return entries


def _members(sdist: Path) -> dict[str, bytes]:
    """sdist files by their path inside the package root (the top directory dropped)."""
    files = {}
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            relative = "/".join(PurePosixPath(member.name).parts[1:])
            wanted = relative == "CHANGELOG.md" or (
                any(fnmatch(relative, p) for p in SOURCES) and not relative.endswith("_test.py")
            )
            if member.isfile() and wanted:
                handle = archive.extractfile(member)
                assert handle is not None  # a regular file always has a stream
                files[relative] = handle.read()
    return files


def release_notes(old_sdist: Path, new_sdist: Path) -> dict[str, Any]:
    """The changelog entries ``new_sdist`` adds over ``old_sdist`` and the renderer-relevant
    source files it adds, removes or changes (by sha256)."""
    old, new = _members(old_sdist), _members(new_sdist)
    old_titles = {e["title"] for e in changelog_entries(old.get("CHANGELOG.md", b"").decode())}
    added = [
        entry
        for entry in changelog_entries(new.get("CHANGELOG.md", b"").decode())
        if entry["title"] not in old_titles
    ]
    sources = sorted((old.keys() | new.keys()) - {"CHANGELOG.md"})

    def digest(files: dict[str, bytes], name: str) -> str | None:
        return hashlib.sha256(files[name]).hexdigest() if name in files else None

    return {
        "sdists": {
            "old": {
                "name": old_sdist.name,
                "sha256": hashlib.sha256(old_sdist.read_bytes()).hexdigest(),
            },
            "new": {
                "name": new_sdist.name,
                "sha256": hashlib.sha256(new_sdist.read_bytes()).hexdigest(),
            },
        },
        "changelog": added,
        "sources": {
            "added": [n for n in sources if n not in old],
            "removed": [n for n in sources if n not in new],
            "changed": [
                n for n in sources if n in old and n in new and digest(old, n) != digest(new, n)
            ],
        },
    }
