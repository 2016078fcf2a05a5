"""Eval tasks attached to a recipe run at its eval steps, on the pre-step weights.

On the fake backend every logprob of weights trained with learning rates summing to L is the
base model's divided by (1 + 1000 L) (cookbook/backends/fake.py). So the held-out NLL logged at
step s must be the step-0 value divided by (1 + 1000 * the learning rates of steps 0..s-1) -
which is what evaluating *before* step s's update means - and a multiple-choice argmax, being
invariant to that scaling, must not move at all.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cookbook.cli import main

ROOT = Path(__file__).resolve().parents[1]
NLL = ROOT / "specs" / "evals" / "nll_held_out.yaml"
MC = ROOT / "specs" / "evals" / "multiple_choice.yaml"
SL_BASIC = ROOT / "specs" / "sl_basic.yaml"
FAKE_SMALL = ("--set", "backend=fake", "--set", "dataset.batch_size=16", "--set", "eval_every=3")


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_sl_basic_with_evals_logs_them_at_the_eval_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # the MC spec's JSONL path is relative to the repository root
    run = tmp_path / "run"
    evals = f"evals=[{NLL}, {MC}]"
    assert main([str(SL_BASIC), *FAKE_SMALL, "--set", evals, "--log-dir", str(run)]) == 0
    metrics = rows(run)
    assert [r["step"] for r in metrics] == list(range(8))  # 128 conversations, batches of 16
    keys = {f"eval/nll_held_out/{k}" for k in ("nll", "bpb", "ci_low", "ci_high")} | {
        "eval/multiple_choice/accuracy",
        "eval/multiple_choice/num_examples",
    }
    assert [r["step"] for r in metrics if keys <= set(r)] == [0, 3, 6]
    assert not any(k.startswith("eval/") for r in metrics if r["step"] % 3 for k in r)

    # The step-0 values are the standalone evals of the base model.
    for spec, key in ((NLL, "eval/nll_held_out/nll"), (MC, "eval/multiple_choice/accuracy")):
        out = tmp_path / spec.stem
        assert main([str(spec), "--set", "backend=fake", "--log-dir", str(out)]) == 0
        assert json.loads((out / "results.json").read_text())["score"] == metrics[0][key]

    base = metrics[0]["eval/nll_held_out/nll"]
    for step in (3, 6):
        trained = sum(r["learning_rate"] for r in metrics[:step])  # steps 0..step-1 only
        logged = metrics[step]["eval/nll_held_out/nll"]
        assert logged == pytest.approx(base / (1 + 1000 * trained), rel=1e-5)
        assert (
            metrics[step]["eval/multiple_choice/accuracy"]
            == metrics[0]["eval/multiple_choice/accuracy"]
        )


def test_the_held_out_eval_matches_the_recipe_test_split(tmp_path: Path) -> None:
    """With test_size 16 the recipe holds out the same 16 conversations as nll_held_out.yaml,
    and the eval computes the reference evaluator's NLL: both lines of metrics agree."""
    run = tmp_path / "run"
    argv = [str(SL_BASIC), *FAKE_SMALL, "--set", "dataset.offline_fallback.test_size=16"]
    assert main([*argv, "--set", f"evals=[{NLL}]", "--log-dir", str(run)]) == 0
    evaluated = [r for r in rows(run) if "test/nll" in r]
    assert [r["step"] for r in evaluated] == [0, 3, 6]
    for row in evaluated:
        assert row["eval/nll_held_out/nll"] == pytest.approx(row["test/nll"], rel=1e-6)
        assert row["eval/nll_held_out/bpb"] == pytest.approx(row["test/bpb"], rel=1e-6)


def test_a_bad_eval_reference_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    assert (
        main([str(SL_BASIC), *FAKE_SMALL, "--set", "evals=[nope.yaml]", "--log-dir", str(run)]) == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "evals.0: no such eval spec: nope.yaml" in err
    other = tmp_path / "role_colon.yaml"
    other.write_text(MC.read_text().replace("renderer_name: llama3", "renderer_name: role_colon"))
    assert (
        main([str(SL_BASIC), *FAKE_SMALL, "--set", f"evals=[{other}]", "--log-dir", str(run)]) == 2
    )
    assert "renders with 'role_colon', this recipe trains with 'llama3'" in capsys.readouterr().err
    assert not run.exists()
