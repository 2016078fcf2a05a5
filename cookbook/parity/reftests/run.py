"""Run one side's tree of the reference's tests in a given Python, offline, with the plugin."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from cookbook.exceptions import ConfigurationError
from cookbook.parity.reftests.plugin import OUT_ENV, SIDE_ENV
from cookbook.parity.reftests.sdist import Extracted

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
REPO_ROOT = Path(__file__).resolve().parents[3]


def run_side(
    extracted: Extracted, side: str, python: str, extra_args: list[str] | None = None
) -> dict[str, Any]:
    """The plugin's record of one pytest run of ``side``'s tree under ``python``.

    ``cookbook`` is put first on ``PYTHONPATH`` (this checkout) so both sides import the same
    plugin and offline tokenizer builds; the tests run from their tree's root, as the reference
    runs them from its repository root.
    """
    tree = extracted.tree(side)
    with tempfile.TemporaryDirectory(prefix=f"reftests-{side}-") as tmp:
        out = Path(tmp) / "outcomes.json"
        env = {
            **os.environ,
            **OFFLINE_ENV,
            SIDE_ENV: side,
            OUT_ENV: str(out),
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
        }
        command = [
            python,
            "-m",
            "pytest",
            "-p",
            "cookbook.parity.reftests.plugin",
            "-p",
            "no:cacheprovider",
            "-q",
            "--no-header",
            "-rN",
            "--tb=no",
            "--continue-on-collection-errors",
            *(extra_args or []),
        ]
        done = subprocess.run(
            command, cwd=tree, env=env, capture_output=True, text=True, check=False
        )
        if not out.exists():
            raise ConfigurationError(
                f"the {side} run of the reference's tests recorded nothing (exit "
                f"{done.returncode}): {(done.stdout + done.stderr).strip()[-800:]}"
            )
        return json.loads(out.read_text(encoding="utf-8"))
