"""What the served tests share: the small random stand-in every served run trains, the
reference's python, and one run of a command against a fresh, recording ``cookbook-serve``.

The reference's virtualenv comes from ``nox -s parity`` (COOKBOOK_REFERENCE_PYTHON names its
python). Without it a test needing it fails and says so; only ``nox -s tests``, which builds no
such virtualenv, sets COOKBOOK_REFERENCE_PYTHON=none to skip them on purpose.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cookbook.parity.served import ServedRun

SMALL = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "intermediate_size": 128,
    "threads": 1,
}
"""The small random_llama stand-in of the served tests: a served run's model must be the local
run's it is compared with, so there is one."""

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_PYTHON = "COOKBOOK_REFERENCE_PYTHON"
NO_REFERENCE = "none"
"""The value ``nox -s tests`` sets: no reference virtualenv in this session, on purpose."""
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TINKER_TELEMETRY": "0",
}
TIMEOUT_S = 600
DRIVER = "tools/reference_through_server.py"


def reference_python() -> str:
    value = os.environ.get(REFERENCE_PYTHON)
    if value == NO_REFERENCE:
        pytest.skip("nox -s tests builds no reference virtualenv; `nox -s parity` runs this")
    if not value:
        pytest.fail(
            f"{REFERENCE_PYTHON} is not set: run `nox -s parity` (it builds the reference's "
            f"virtualenv), or set {REFERENCE_PYTHON} to the python of one that has "
            "tinker-cookbook==0.5.8 and this package"
        )
    if not Path(value).is_file():
        pytest.fail(f"{REFERENCE_PYTHON}={value}: no such file; run `nox -s parity`")
    return value


def run_served(
    tmp: Path, label: str, command: list[str], config_kwargs: dict[str, Any]
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]], list[dict[str, Any]]]:
    """``command`` against a fresh server (``ServeConfig(**config_kwargs)``, state in
    ``tmp/label-state``): the finished process, the calls the server applied and the faults it
    injected. The caller judges the exit status."""
    from cookbook.serve.server import ServeConfig, serve  # torch: only for the served tests

    config = ServeConfig(state_dir=tmp / f"{label}-state", **config_kwargs)
    with serve(config) as server:
        env = {**os.environ, **OFFLINE, "TINKER_BASE_URL": server.url, "TINKER_API_KEY": "tml-p"}
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
        )
        return done, server.recorded(), server.injected()


def served_run(
    tmp: Path, label: str, command: list[str], log_dir: Path, config_kwargs: dict[str, Any]
) -> tuple[ServedRun, list[dict[str, Any]]]:
    """:func:`run_served`, which must succeed: what the server applied and what the run
    logged, and the faults the server injected."""
    done, calls, injected = run_served(tmp, label, command, config_kwargs)
    output = (done.stdout + done.stderr)[-6000:]
    assert done.returncode == 0, f"{label} failed (exit {done.returncode}):\n{output}"
    return ServedRun.load(label, calls, log_dir), injected
