"""`cookbook-run` on recipe specs, as a user runs it, on the deterministic fake backend.

Covers: every malformed spec in tests/malformed_specs/ is one `file:line: field: message` line,
exit 2, and writes nothing; a run writes its directory; two runs give byte-identical metrics;
a run killed with SIGKILL after a checkpoint and resumed logs exactly the uninterrupted metrics;
the reference's checkpoint timing (declared divergence) repeats a batch on resume; an existing
run directory is never clobbered without --resume or --overwrite.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cookbook.cli import main

ROOT = Path(__file__).resolve().parents[1]
CORPUS = sorted((ROOT / "tests" / "malformed_specs").glob("*.yaml"))
EXPECT = re.compile(r"^# expect: line=(\S+) field=(\S+) message~(.+)$")

TINY = """\
# A small run over the reference wheel's 128 example conversations: 14 steps of 8.
kind: recipe
version: 1
name: tiny
model_name: meta-llama/Llama-3.1-8B
renderer_name: llama3
backend: fake
dataset:
  builder: conversations_file
  package_file:
    distribution: tinker-cookbook
    path: tinker_cookbook/example_data/conversations.jsonl
  batch_size: 8
  max_length: 256
  test_size: 16
learning_rate: 2.0e-4
eval_every: 3
save_every: 4
local:
  model: {hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 2,
          num_key_value_heads: 2, intermediate_size: 128, threads: 1}
"""
TINY_STEPS = (128 - 16) // 8
# The same run on the embedded torch backend, shortened: its real model makes steps cost time.
LOCAL = ("--set", "backend=local", "--set", "max_steps=8", "--set", "learning_rate=1e-2")
BACKENDS = [pytest.param((), id="fake"), pytest.param(LOCAL, id="local")]


@pytest.fixture
def tiny_spec(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY, "utf-8")
    return path


def run_cli(*args: str) -> int:
    return main([*map(str, args)])


def test_corpus_has_at_least_thirty_specs() -> None:
    assert len(CORPUS) >= 30


@pytest.mark.parametrize("source", CORPUS, ids=lambda p: p.stem)
def test_malformed_spec_is_one_line_exit_2_and_writes_nothing(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    line, field, message = EXPECT.match(source.read_text("utf-8").splitlines()[0]).groups()
    spec = tmp_path / "specs" / source.name
    spec.parent.mkdir()
    shutil.copy(source, spec)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)

    assert run_cli(spec) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    location = {"-": f"{spec}: ", "*": f"{spec}:"}.get(line, f"{spec}:{line}: ")
    assert err.startswith(f"error: {location}"), err
    if line == "*":
        assert re.match(rf"error: {re.escape(str(spec))}:\d+: ", err), err
    if field != "-":
        assert f": {field}: " in err, err
    assert message in err, err
    assert list(work.iterdir()) == [], "a rejected spec must not write anything"


def test_an_override_is_validated_like_the_file(
    tiny_spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    rc = run_cli(tiny_spec, "--set", "dataset.batch_size=-1", "--log-dir", tmp_path / "run")
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith(f"error: {tiny_spec} (--set dataset.batch_size=-1): dataset.batch_size")
    assert not (tmp_path / "run").exists()


def test_the_tinker_backend_without_a_key_says_what_to_do_in_one_line(
    tiny_spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.delenv("TINKER_API_KEY", raising=False)
    rc = run_cli(tiny_spec, "--set", "backend=tinker", "--log-dir", tmp_path / "run")
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "TINKER_API_KEY" in err and "backend=local" in err
    assert not (tmp_path / "run").exists()


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_fake_run_writes_the_run_directory(tiny_spec: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert run_cli(tiny_spec, "--log-dir", run) == 0
    rows = _metrics(run)
    assert [r["step"] for r in rows] == list(range(TINY_STEPS))
    # Evals run on pre-step weights at steps 0, 3, 6, ...; never after the last step.
    assert [r["step"] for r in rows if "test/nll" in r] == list(range(0, TINY_STEPS, 3))
    assert rows[-1]["train_mean_nll"] < rows[0]["train_mean_nll"], "the fake's loss must fall"
    assert rows[0]["learning_rate"] == pytest.approx(2e-4)
    assert rows[-1]["learning_rate"] == pytest.approx(2e-4 / TINY_STEPS)
    checkpoints = [json.loads(x) for x in (run / "checkpoints.jsonl").read_text().splitlines()]
    assert [c["name"] for c in checkpoints] == ["000004", "000008", "000012", "final"]
    # Each periodic record names the batch *after* the saved step (what resume starts at).
    assert [c["batch"] for c in checkpoints] == [5, 9, 13, 0]
    config = json.loads((run / "config.json").read_text())
    assert config["renderer_name"] == "llama3" and config["spec"]["backend"] == "fake"
    assert any("offline" in note for note in config["stand_ins"])
    assert config["tokenizer"]["files"] and config["versions"]["tinker"]
    assert (run / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_runs_give_byte_identical_metrics(
    tiny_spec: Path, tmp_path: Path, backend: tuple[str, ...]
) -> None:
    for name in ("a", "b"):
        assert run_cli(tiny_spec, "--log-dir", tmp_path / name, *backend) == 0
    assert (tmp_path / "a" / "metrics.jsonl").read_bytes() == (
        tmp_path / "b" / "metrics.jsonl"
    ).read_bytes()


def test_an_existing_run_is_never_clobbered(
    tiny_spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    assert run_cli(tiny_spec, "--log-dir", run, "--set", "max_steps=2") == 0
    before = (run / "metrics.jsonl").read_bytes()
    capsys.readouterr()
    assert run_cli(tiny_spec, "--log-dir", run) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "--overwrite" in err
    assert (run / "metrics.jsonl").read_bytes() == before
    assert run_cli(tiny_spec, "--log-dir", run, "--overwrite") == 0
    assert len(_metrics(run)) == TINY_STEPS


KILLER = """
import os, signal, sys
from cookbook.supervised.train import SupervisedTrainer
from cookbook.cli import main

finish = SupervisedTrainer._finish

def finish_then_die(self, flight):
    finish(self, flight)
    if flight.step == {kill_after}:
        os.kill(os.getpid(), signal.SIGKILL)

SupervisedTrainer._finish = finish_then_die
sys.exit(main(sys.argv[1:]))
"""


def _killed_run(spec: Path, run: Path, kill_after: int, *extra: str) -> None:
    """Run in a child process that SIGKILLs itself right after logging step ``kill_after``:
    a deterministic kill -9, with no sleeps and no hook in the product code."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            KILLER.format(kill_after=kill_after),
            str(spec),
            "--log-dir",
            str(run),
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == -9, result.stderr[-2000:]


@pytest.mark.parametrize("backend", BACKENDS)
def test_resume_after_kill_reproduces_the_uninterrupted_metrics(
    tiny_spec: Path, tmp_path: Path, backend: tuple[str, ...]
) -> None:
    whole = tmp_path / "whole"
    assert run_cli(tiny_spec, "--log-dir", whole, *backend) == 0
    run = tmp_path / "resumed"
    _killed_run(tiny_spec, run, 6, *backend)  # checkpoint 000004 exists, steps 5-6 logged
    assert [r["step"] for r in _metrics(run)] == list(range(7))
    assert run_cli(tiny_spec, "--log-dir", run, "--resume", *backend) == 0
    assert (run / "metrics.jsonl").read_bytes() == (whole / "metrics.jsonl").read_bytes()
    names = [json.loads(x)["name"] for x in (run / "checkpoints.jsonl").read_text().splitlines()]
    assert names == [
        json.loads(x)["name"] for x in (whole / "checkpoints.jsonl").read_text().splitlines()
    ]


def test_reference_checkpoint_timing_repeats_a_batch_on_resume(
    tiny_spec: Path, tmp_path: Path
) -> None:
    """The declared divergence, shown from the reference's side: its checkpoint of step 4
    already holds step 5's update but records batch 4 as the next to run, so a resumed run
    trains batches 4 and 5 a second time and its metrics leave the uninterrupted ones."""
    reference = ("--set", "checkpoint_semantics=reference")
    assert run_cli(tiny_spec, "--log-dir", tmp_path / "whole", *reference) == 0
    run = tmp_path / "resumed"
    _killed_run(tiny_spec, run, 6, *reference)
    record = json.loads((run / "checkpoints.jsonl").read_text().splitlines()[0])
    assert (record["name"], record["batch"]) == ("000004", 4)
    assert run_cli(tiny_spec, "--log-dir", run, "--resume", *reference) == 0
    resumed = {r["step"]: r for r in _metrics(run)}
    whole = {r["step"]: r for r in _metrics(tmp_path / "whole")}
    assert sorted(resumed) == sorted(whole)
    assert [s for s in whole if resumed[s] != whole[s]] == list(range(4, TINY_STEPS))


def test_on_a_terminal_an_existing_run_is_asked_about(tiny_spec: Path, tmp_path: Path) -> None:
    """With a TTY the user is asked (resume/overwrite/abort); "a" leaves the run untouched."""
    import os
    import pty

    run = tmp_path / "run"
    assert run_cli(tiny_spec, "--log-dir", run, "--set", "max_steps=1") == 0
    before = (run / "metrics.jsonl").read_bytes()
    master, slave = pty.openpty()
    os.write(master, b"a\n")  # typed ahead: the terminal buffers it until the prompt reads it
    process = subprocess.Popen(
        [sys.executable, "-m", "cookbook.cli", str(tiny_spec), "--log-dir", str(run)],
        cwd=ROOT,
        stdin=slave,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    output = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    assert process.wait(timeout=120) == 2
    text = output.decode("utf-8", "replace")
    assert "Resume, overwrite or abort? (r/o/a)" in text and "left untouched" in text
    assert (run / "metrics.jsonl").read_bytes() == before


def test_a_local_run_trains_and_samples(tiny_spec: Path, tmp_path: Path) -> None:
    """The embedded backend end to end: a real (stand-in) model whose loss falls, the stand-in
    named in config.json, and a reply sampled from the trained weights."""
    run = tmp_path / "run"
    assert run_cli(tiny_spec, "--log-dir", run, *LOCAL) == 0
    rows = _metrics(run)
    assert [r["step"] for r in rows] == list(range(8))
    assert rows[-1]["train_mean_nll"] < rows[0]["train_mean_nll"] - 0.5
    assert [r["step"] for r in rows if "test/nll" in r] == [0, 3, 6]
    config = json.loads((run / "config.json").read_text())
    assert any("stand-in random_llama" in note for note in config["stand_ins"])
    (sample,) = [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]
    assert sample["prompt"] == "What is the capital of France?"
    assert isinstance(sample["reply"], str) and sample["tokens"]


def test_a_run_warns_once_per_conversation_the_reference_renders(
    tiny_spec: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """ALL_ASSISTANT_MESSAGES (the spec default) with a renderer lacking the extension property:
    the reference warns at every build_supervised_example, so once per training row per epoch
    and per test row (rendered once, up front). Our run's comparison artifacts re-render the
    first batch; that is not a reference call and adds no warning."""
    run = tmp_path / "run"
    with caplog.at_level("WARNING", logger="cookbook.renderers.base"):
        qwen3 = ("--set", "renderer_name=qwen3", "--set", "model_name=Qwen/Qwen3-8B")
        assert run_cli(tiny_spec, *qwen3, "--log-dir", run) == 0
    warned = [r for r in caplog.records if "extension property" in r.getMessage()]
    order = json.loads((run / "dataset_order.json").read_text())
    rendered = [row for epoch in order["epochs"] for batch in epoch for row in batch]
    rendered += [row for batch in order["test"] for row in batch]
    assert len(rendered) > 0 and len(warned) == len(rendered)
