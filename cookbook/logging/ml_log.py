"""The run directory's files, in the reference's formats where it has one.

``metrics.jsonl`` rows are ``{"step": step, **metrics}`` exactly as the reference's
``JsonLogger`` writes them, but wall-clock values go to ``timing.jsonl`` instead: two runs of the
same spec on a deterministic backend then give byte-identical ``metrics.jsonl`` files, which is
what the resume and determinism checks compare.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"
TIMING_FILE = "timing.jsonl"
CONFIG_FILE = "config.json"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that a reader (or a crash) never sees a half-written file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True, default=str)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(value: Any) -> Any:
    """NaN/inf are not JSON; the reference's json.dumps writes them anyway, we write null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class RunLog:
    """Appends metrics and timings for one run directory."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir

    def write_config(self, config: dict[str, Any]) -> None:
        write_json_atomic(self.log_dir / CONFIG_FILE, config)

    def log_metrics(self, metrics: dict[str, Any], step: int) -> None:
        record = {"step": step, **{k: _jsonable(v) for k, v in metrics.items()}}
        self._append(METRICS_FILE, record)

    def log_timing(self, timings: dict[str, float], step: int) -> None:
        self._append(TIMING_FILE, {"step": step, **timings})

    def read_metrics(self) -> list[dict[str, Any]]:
        path = self.log_dir / METRICS_FILE
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]

    def truncate_after(self, step: int) -> None:
        """Drop rows past ``step``: a resumed run logs those steps again from its checkpoint.

        The reference appends instead, so its resumed metrics.jsonl holds such steps twice.
        """
        for name in (METRICS_FILE, TIMING_FILE):
            path = self.log_dir / name
            if not path.is_file():
                continue
            kept = []
            for line in path.read_text("utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    break  # a torn last line from the interrupted run
                if row.get("step", -1) <= step:
                    kept.append(line + "\n")
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=self.log_dir)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.writelines(kept)
            os.replace(tmp, path)

    def _append(self, name: str, record: dict[str, Any]) -> None:
        with open(self.log_dir / name, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
