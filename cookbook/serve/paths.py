"""The server's ``tinker://`` checkpoint paths and the local backend's files they stand for.

A path names a checkpoint the way the service does (``tinker://{model_id}/weights/{name}``);
the local backend saves under its own file names. The mapping is appended to a JSONL file in
the state directory, so a checkpoint saved before a server restart can still be loaded, and a
training run can still be described, by the server that comes back.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from cookbook.exceptions import ConfigurationError

INDEX_FILE = "paths.jsonl"


class PathIndex:
    """``tinker://`` path -> ``{"tinker", "local", "base_model", "lora_rank"}``, persisted."""

    def __init__(self, state_dir: Path) -> None:
        self._file = state_dir / INDEX_FILE
        self._lock = threading.Lock()
        self._entries = self._read()

    def _read(self) -> dict[str, dict[str, Any]]:
        if not self._file.exists():
            return {}
        entries = {}
        lines = self._file.read_text().splitlines()
        for number, line in enumerate(lines, start=1):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                if number == len(lines):
                    break  # torn by a server killed mid-write; that save never answered
                raise ConfigurationError(
                    f"{self._file}:{number}: corrupted path index line"
                ) from None
            entries[entry["tinker"]] = entry
        return entries

    def add(self, path: str, local_path: str, base_model: str, lora_rank: int) -> None:
        entry = {
            "tinker": path,
            "local": local_path,
            "base_model": base_model,
            "lora_rank": lora_rank,
        }
        with self._lock:
            self._entries[path] = entry
            with self._file.open("a") as index:
                index.write(json.dumps(entry) + "\n")

    def entry(self, path: str) -> dict[str, Any]:
        """The entry of a ``tinker://`` path of this server: its local file (``local``),
        ``base_model`` and ``lora_rank``."""
        entry = self._entries.get(path)
        if entry is None:
            raise ConfigurationError(f"{path!r}: no checkpoint of this server has that path")
        return entry

    def last_of(self, model_id: str) -> dict[str, Any] | None:
        """The newest checkpoint saved by training run ``model_id``, if it saved any."""
        prefix = f"tinker://{model_id}/"
        saved = [entry for path, entry in self._entries.items() if path.startswith(prefix)]
        return saved[-1] if saved else None
