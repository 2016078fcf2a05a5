"""`cookbook-run` on the shipped RL specs, as a user runs them, on the deterministic fake backend.

Covers: rl_basic, rl_loop and rl_arithmetic run end to end and twice give byte-identical
metrics.jsonl and checkpoints; metrics carry the reference's names; the run directory holds
config.json (stand-ins named), reward_curve.png and checkpoints.jsonl; a run interrupted after a
checkpoint resumes from it with the uninterrupted run's model state; an unimplemented option
given with --set is one line, exit 2, nothing written.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from cookbook.cli import main
from cookbook.logging.display import TrainingProgress
from cookbook.rl.train import RLTrainer

ROOT = Path(__file__).resolve().parents[1]
SHORT = ("--set", "max_steps=2", "--set", "save_every=1")


def run_cli(*args: object) -> int:
    return main([str(a) for a in args])


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


@pytest.mark.parametrize("name", ["rl_basic", "rl_loop", "rl_arithmetic"])
def test_shipped_rl_spec_runs_on_fake_deterministically(name: str, tmp_path: Path) -> None:
    spec = ROOT / "specs" / f"{name}.yaml"
    runs = [tmp_path / "a", tmp_path / "b"]
    for run in runs:
        assert run_cli(spec, "--set", "backend=fake", *SHORT, "--log-dir", run) == 0
    a, b = runs
    assert (a / "metrics.jsonl").read_bytes() == (b / "metrics.jsonl").read_bytes()
    assert (a / "checkpoints.jsonl").read_bytes() == (b / "checkpoints.jsonl").read_bytes()
    rows = _rows(a / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 1]
    expected = {"progress/batch", "optim/lr", "progress/done_frac"}
    if name == "rl_loop":
        expected |= {"reward/total"}
    else:
        expected |= {
            "env/all/reward/total",
            "env/all/ac_tokens_per_turn",
            "env/all/ob_tokens_per_turn",
            "env/all/by_group/frac_mixed",
            "optim/kl_sample_train_v1",
            "optim/entropy",
        }
    assert expected <= set(rows[0]), expected - set(rows[0])
    assert (a / "reward_curve.png").stat().st_size > 0
    config = json.loads((a / "config.json").read_text("utf-8"))
    assert config["spec"]["kind"] == "rl_recipe" and config["loop"] == config["spec"]["loop"]
    assert any(note.startswith("fake profile overlay") for note in config["stand_ins"])
    if config["dataset"]["builder"] == "gsm8k" and config["dataset"]["source"] == "gsm8k_stand_in":
        assert any("gsm8k_stand_in" in note for note in config["stand_ins"])
    checkpoints = _rows(a / "checkpoints.jsonl")
    assert checkpoints[-1]["name"] == "final" and checkpoints[-1]["sampler_path"]


def test_interrupted_rl_run_resumes_from_its_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed during batch 3 with a checkpoint after batch 1: the resume reruns batches 2-4 on
    the checkpoint's weights and optimizer state. (The fake draws samples per call, so only
    the model state, not the samples, of a resumed step can equal the uninterrupted run's.)"""
    spec = ROOT / "specs" / "rl_arithmetic.yaml"
    common = ("--set", "backend=fake", "--set", "save_every=2", "--set", "max_steps=5")
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert run_cli(spec, *common, "--log-dir", whole) == 0
    step = RLTrainer._step

    async def killed_at_3(self: RLTrainer, i_batch: int, sampling_client: object) -> object:
        if i_batch == 3:
            raise KeyboardInterrupt
        return await step(self, i_batch, sampling_client)

    with monkeypatch.context() as patch:
        patch.setattr(RLTrainer, "_step", killed_at_3)
        assert run_cli(spec, *common, "--log-dir", split) == 130
    assert [r["step"] for r in _rows(split / "metrics.jsonl")] == [0, 1, 2]
    assert run_cli(spec, *common, "--log-dir", split, "--resume") == 0
    resumed, reference = _rows(split / "metrics.jsonl"), _rows(whole / "metrics.jsonl")
    assert [r["step"] for r in resumed] == [0, 1, 2, 3, 4]
    assert resumed[:2] == reference[:2]
    lr_sums = [[r["fake/applied_lr_sum"] for r in rows] for rows in (resumed, reference)]
    assert lr_sums[0] == lr_sums[1]
    assert [c["batch"] for c in _rows(split / "checkpoints.jsonl")] == [2, 4, 5]


def test_interrupted_rl_loop_resumes_from_its_state_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rl_loop saves state only, at the start of every save_every-th batch; the resume reruns
    from there, and its final row names all train batches (the reference's record)."""
    spec = ROOT / "specs" / "rl_loop.yaml"
    common = ("--set", "backend=fake", "--set", "save_every=2", "--set", "max_steps=5")
    run = tmp_path / "run"
    on_step = TrainingProgress.on_step

    def killed_after_2(self: TrainingProgress, step: int, metrics: dict) -> None:
        on_step(self, step, metrics)
        if step == 2:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(TrainingProgress, "on_step", killed_after_2)
        assert run_cli(spec, *common, "--log-dir", run) == 130
    assert [c["batch"] for c in _rows(run / "checkpoints.jsonl")] == [2]
    assert run_cli(spec, *common, "--log-dir", run, "--resume") == 0
    assert [r["step"] for r in _rows(run / "metrics.jsonl")] == [0, 1, 2, 3, 4]
    rows = _rows(run / "checkpoints.jsonl")
    assert [(c["name"], "sampler_path" in c) for c in rows] == [
        ("000002", False),
        ("000002", False),
        ("000004", False),
        ("final", True),
    ]
    train_rows = json.loads((run / "config.json").read_text("utf-8"))["dataset"]["train_rows"]
    assert rows[-1]["batch"] == train_rows // 8  # the fake overlay's batch size


def test_a_kl_penalty_scores_every_datum_with_the_reference_model(tmp_path: Path) -> None:
    spec = ROOT / "specs" / "rl_arithmetic.yaml"
    sets = ["backend=fake", "max_steps=2", "kl_penalty_coef=0.05"]
    sets += ["kl_reference_config.base_model=Qwen/Qwen3.5-9B", "kl_discount_factor=0.9"]
    args = [a for s in sets for a in ("--set", s)]
    assert run_cli(spec, *args, "--log-dir", tmp_path / "kl") == 0
    assert run_cli(spec, *args[:4], "--log-dir", tmp_path / "plain") == 0
    kl, plain = (
        _rows(tmp_path / "kl" / "metrics.jsonl"),
        _rows(tmp_path / "plain" / "metrics.jsonl"),
    )
    assert all("kl_policy_base" in r for r in kl) and not any("kl_policy_base" in r for r in plain)
    # The fake's reference model (no updates) and policy score differently once it trained.
    assert kl[0]["kl_policy_base"] == 0.0 and kl[1]["kl_policy_base"] != 0.0


def test_an_unimplemented_option_set_on_the_command_line_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    spec = ROOT / "specs" / "rl_basic.yaml"
    run = tmp_path / "run"
    rc = run_cli(spec, "--set", "backend=fake", "--set", "num_substeps=2", "--log-dir", run)
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "num_substeps" in err and "not implemented" in err
    assert not run.exists()


def test_a_loss_the_local_backend_refuses_is_a_spec_error_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    spec = ROOT / "specs" / "rl_arithmetic.yaml"
    run = tmp_path / "run"
    rc = run_cli(spec, "--set", "loss_fn=stable_reinforce", "--log-dir", run)
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert f"{spec}:" in err and "loss_fn" in err and "not implemented by the local backend" in err
    assert not run.exists()


def test_the_gsm8k_stand_in_is_announced_once_per_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The recipe resolves the rows before the run starts; the builder must reuse them.
    spec = ROOT / "specs" / "rl_basic.yaml"
    with caplog.at_level(logging.WARNING, logger="cookbook.recipes.math_rl.math_env"):
        assert (
            run_cli(spec, "--set", "backend=fake", "--set", "max_steps=1", "--log-dir", tmp_path)
            == 0
        )
    warnings = [r for r in caplog.records if "using the declared stand-in" in r.getMessage()]
    assert len(warnings) == 1
    config = json.loads((tmp_path / "config.json").read_text("utf-8"))
    assert config["dataset"]["source"] == "gsm8k_stand_in"
