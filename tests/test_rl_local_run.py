"""specs/rl_arithmetic.yaml runs on the local backend: end to end, resumed after a kill -9,
and through cookbook-serve with ``--set backend=tinker`` giving the in-process run's metrics.

What this does NOT show: learning. These runs swap the spec's pretrained stand-in
(smollm2_gguf) for the tiny random-init one of tests/test_serve.py, which never answers in the
arithmetic format: every sample earns the same -0.1, advantages are 0 and ``local/grad_norm``
is 0 at every step. They cover the loop's path (seeded sampling, the forward_backward/optim_step
calls, checkpoints and resume, the served protocol), not training; tests/test_local_smollm2.py
runs the spec's own stand-in, and the README reports the learning run.

The shipped spec is shrunk with ``--set`` (2 problems of 2 samples per batch) so a step costs
seconds on a busy CPU; the loop, losses and checkpoints are the spec's own (importance_sampling,
rl.train.main's save/resume). The random-init stand-in uses the Llama 3 tokenizer, so the
renderer is the model table's again (``renderer_name=null``), not the overlay's ChatML one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cookbook.cli import main as run_main

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "rl_arithmetic.yaml"
STEPS = 4
SMALL = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "intermediate_size": 128,
    "threads": 1,
}
"""tests/test_serve.py's SMALL stand-in: the served run's model must be the local run's."""
SETS = (
    "model_name=meta-llama/Llama-3.1-8B",
    "renderer_name=null",
    "local.model.kind=random_llama",
    "dataset.batch_size=2",
    "dataset.group_size=2",
    f"max_steps={STEPS}",
    "save_every=1",
    "learning_rate=1.0e-2",
    *(f"local.model.{key}={value}" for key, value in SMALL.items()),
)
SET_ARGS = [arg for item in SETS for arg in ("--set", item)]
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TINKER_TELEMETRY": "0"}


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _run(log_dir: Path, *extra: str) -> None:
    assert run_main([str(SPEC), *SET_ARGS, "--log-dir", str(log_dir), *extra]) == 0


def test_rl_arithmetic_runs_on_the_local_backend_end_to_end(tmp_path: Path) -> None:
    _run(tmp_path / "run")
    rows = _metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == list(range(STEPS))
    assert all("env/all/reward/total" in r and "optim/entropy" in r for r in rows)
    saves = (tmp_path / "run" / "checkpoints.jsonl").read_text().splitlines()
    assert len(saves) >= STEPS  # save_every=1, plus the final save
    assert (tmp_path / "run" / "reward_curve.png").stat().st_size > 0


def test_a_kill_9_then_resume_gives_the_uninterrupted_metrics(tmp_path: Path) -> None:
    """The child is killed once it has printed step 1 (read from its output: no sleeps)."""
    _run(tmp_path / "whole")
    killed = tmp_path / "killed"
    command = [
        sys.executable,
        "-c",
        "import sys; from cookbook.cli import main; sys.exit(main(sys.argv[1:]))",
        str(SPEC),
        *SET_ARGS,
        "--log-dir",
        str(killed),
    ]
    env = {**os.environ, **OFFLINE, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    ) as child:
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith("step 1:"):
                child.send_signal(signal.SIGKILL)
                break
        else:
            pytest.fail(f"the child ended (rc {child.wait()}) without printing step 1")
        child.stdout.read()
        assert child.wait() == -signal.SIGKILL
    assert len(_metrics(killed)) < STEPS
    _run(killed, "--resume")
    assert _metrics(killed) == _metrics(tmp_path / "whole")


def test_through_cookbook_serve_it_gives_the_in_process_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cookbook.backends.local.config import LocalModelConfig
    from cookbook.serve.engine import ModelMap
    from cookbook.serve.server import ServeConfig, serve

    _run(tmp_path / "local")
    config = ServeConfig(
        state_dir=tmp_path / "serve", model_map=ModelMap(default=LocalModelConfig(**SMALL))
    )
    monkeypatch.setenv("TINKER_TELEMETRY", "0")
    with serve(config) as server:
        monkeypatch.setenv("TINKER_BASE_URL", server.url)
        monkeypatch.setenv("TINKER_API_KEY", "tml-RLSERVEkey0123456789abcdef")
        _run(tmp_path / "served", "--set", "backend=tinker")
        calls = [c["call"] for c in server.recorded()]
    local, served = _metrics(tmp_path / "local"), _metrics(tmp_path / "served")
    assert len(local) == STEPS
    assert [sorted(r) for r in served] == [sorted(r) for r in local]
    for a, b in zip(local, served, strict=True):
        for key, value in a.items():
            assert b[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert calls.count("optim_step") == STEPS
    assert calls.count("forward_backward") == STEPS
