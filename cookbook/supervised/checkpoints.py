"""``checkpoints.jsonl``: one JSON row per saved checkpoint, as the reference writes it.

A row is ``{"name", "epoch", "batch", "elapsed_tokens", "state_path", "sampler_path"}`` (plus
``"step"`` in our rows). ``batch``/``epoch`` name the *next* batch to run, which is how the
reference's resume reads them. Rows are appended with one ``write`` of a complete line and
flushed, so a killed run leaves at worst a truncated last line, which :func:`last_checkpoint`
ignores instead of failing the resume.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

CHECKPOINTS_FILE = "checkpoints.jsonl"


def append_checkpoint(log_dir: Path, record: dict[str, Any]) -> None:
    with open(log_dir / CHECKPOINTS_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_checkpoints(log_dir: Path) -> list[dict[str, Any]]:
    """Every complete row; a torn last line (the run died mid-write) is skipped."""
    path = log_dir / CHECKPOINTS_FILE
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text("utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def last_checkpoint(log_dir: Path) -> dict[str, Any] | None:
    """The last row that can be resumed from (it has a ``state_path``)."""
    resumable = [row for row in read_checkpoints(log_dir) if row.get("state_path")]
    return resumable[-1] if resumable else None
