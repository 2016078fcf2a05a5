"""Checkpoint files of the local backend: one ``torch.save`` file per saved state.

Layout mirrors Tinker's paths: every training client is a run ``run-NNNN`` (numbered in
creation order per ``state_dir``, like the fake backend), ``save_state(name)`` writes
``{state_dir}/{run}/weights/{name}.pt`` and ``save_weights_for_sampler(name)``
``{state_dir}/{run}/sampler_weights/{name}.pt``; the returned path is ``local://`` + the file's
absolute path, so any process on the machine can load it. A state file holds the adapter, the
AdamW state and the step count (exact resume); a sampler file the adapter only. Files are
written to a temporary name and renamed, so a crash never leaves a half-written checkpoint
under a name a resume could pick up.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from cookbook.exceptions import ConfigurationError

SCHEME = "local://"
FORMAT = 1
KIND_DIRS = {"state": "weights", "sampler": "sampler_weights"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def new_run(state_dir: Path) -> str:
    """Claim the next free ``run-NNNN`` directory (mkdir is the atomic claim)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    number = sum(1 for p in state_dir.glob("run-*") if p.is_dir()) + 1
    while True:
        run_id = f"run-{number:04d}"
        try:
            (state_dir / run_id).mkdir()
        except FileExistsError:
            number += 1
        else:
            return run_id


def save(state_dir: Path, run_id: str, kind: str, name: str, payload: dict[str, Any]) -> str:
    """Write ``payload`` atomically; return its ``local://`` path."""
    if not _NAME.match(name):
        raise ConfigurationError(
            f"checkpoint name {name!r} must be letters, digits, '_', '.', '-' (no path)"
        )
    file = (state_dir / run_id / KIND_DIRS[kind] / f"{name}.pt").resolve()
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{file.name}.", dir=file.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save({"format": FORMAT, "kind": kind, **payload}, handle)
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return f"{SCHEME}{file}"


def load(path: str, kind: str) -> dict[str, Any]:
    """The payload saved at ``path``; it must be a ``kind`` checkpoint of this format."""
    file = Path(path.removeprefix(SCHEME))
    if not path.startswith(SCHEME) or not file.is_absolute():
        raise ConfigurationError(
            f"{path!r} is not a local checkpoint path ({SCHEME}/absolute/path/to/name.pt)"
        )
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigurationError(f"{path!r}: no such local checkpoint") from None
    except Exception as error:
        raise ConfigurationError(f"{path!r}: not a readable local checkpoint ({error})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ConfigurationError(f"{path!r}: not a local checkpoint of format {FORMAT}")
    if payload["kind"] != kind:
        raise ConfigurationError(
            f"{path!r} is a {payload['kind']} checkpoint; this call needs a {kind} checkpoint"
        )
    return payload
