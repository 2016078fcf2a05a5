"""The reference's own ``rl.train.main`` through cookbook-serve, and ours, call for call.

Each run gets a fresh ``cookbook-serve`` (same seed and stand-in: the small model of
tests/test_rl_local_run.py) that records every call it applies. The reference
(``tools/reference_through_server.py`` in its own virtualenv) and ``cookbook-run
specs/rl_arithmetic.yaml --set backend=tinker`` run the same shrunk spec (``--set``: 2 groups of
2 per batch, 2 steps, a save every step); :func:`cookbook.parity.served.compare_served` wants the
same calls and datums and the same metrics within float tolerance.

What the call-for-call cases do NOT show: weights that move. The random-init stand-in never
earns a reward, so every group's advantages are zero and so are the gradients; sampling, the
datums (prompt, samples, sampling logprobs, advantages), the loss's outputs and metrics, the
optimizer calls and the saves are compared. Advantages that move the weights come from the KL
penalty against the base model (its ``compute_logprobs`` calls shape them per token), but those
cannot be compared datum for datum: its batch-mean is a float32 sum in datum order, and which
trajectory of a group gets which sample is the arrival order of the group's identical
concurrent requests (the reference against itself differs in the last bit), so the datums'
digests differ, and so do the weights after one step.

So the KL penalty is used where the reference alone trains through the server with each other
built-in loss the local backend implements (cispo, dro with its required ``beta``, gspo): every
call succeeds and the gradients are not zero. ``stable_reinforce``, which the local backend
refuses, must end the reference's run with the server's reason, not a hang. Needs the
reference's virtualenv (tests/served_runs.py).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import served_runs
from served_runs import SMALL, reference_python

from cookbook.parity.served import ServedRun, compare_served
from cookbook.specs.loader import load_spec

pytestmark = pytest.mark.parity

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "rl_arithmetic.yaml"
STEPS = 2
GROUPS = 2
GROUP_SIZE = 2
MODEL = "meta-llama/Llama-3.1-8B"
SETS = (
    f"model_name={MODEL}",
    # The local overlay renders for its SmolLM2 stand-in; this server trains the random stand-in
    # over the spec model's tokenizer, so the renderer is the model's recommended one again.
    "renderer_name=null",
    f"dataset.batch_size={GROUPS}",
    f"dataset.group_size={GROUP_SIZE}",
    f"max_steps={STEPS}",
    "max_tokens=5",
    "save_every=1",
    "eval_every=0",
    "learning_rate=1.0e-2",
)
KL = ("kl_penalty_coef=0.5", f"kl_reference_config.base_model={MODEL}")
CASES = {"importance_sampling": ("loss_fn=importance_sampling",), "ppo": ("loss_fn=ppo",)}
OTHER_LOSSES = {
    "cispo": ("loss_fn=cispo", *KL),
    "dro": ("loss_fn=dro", "loss_fn_config.beta=0.05", *KL),
    "gspo": ("loss_fn=gspo", *KL),
}


def _set_args(extra: tuple[str, ...]) -> list[str]:
    return [arg for item in (*SETS, *extra) for arg in ("--set", item)]


def _server() -> dict[str, Any]:
    from cookbook.backends.local.config import LocalModelConfig
    from cookbook.serve.engine import ModelMap

    seed = load_spec(SPEC, SETS, local_engine=True).seed
    return {"seed": seed, "model_map": ModelMap(default=LocalModelConfig(**SMALL))}


def _reference(python: str, tmp: Path, label: str, extra: tuple[str, ...]) -> list[str]:
    log = tmp / label
    return [
        python,
        served_runs.DRIVER,
        "--spec",
        str(SPEC),
        *_set_args(extra),
        "--log-path",
        str(log),
    ]


def reference_run(python: str, tmp: Path, label: str, extra: tuple[str, ...]) -> ServedRun:
    command = _reference(python, tmp, label, extra)
    return served_runs.served_run(tmp, label, command, tmp / label, _server())[0]


def our_run(tmp: Path, label: str, extra: tuple[str, ...]) -> ServedRun:
    command = [sys.executable, "-m", "cookbook.cli", str(SPEC), "--set=backend=tinker"]
    command += [*_set_args(extra), "--log-dir", str(tmp / label)]
    return served_runs.served_run(tmp, label, command, tmp / label, _server())[0]


def _check_shape(run: ServedRun, loss: str) -> None:
    """Independent of the comparator: per step one sample per trajectory (the reference's
    group rollout samples each with n=1), one forward_backward with every trajectory's datum
    and the case's loss, one optim_step, and a save (save_every=1), then the final save."""
    kinds = [c["call"] for c in run.calls]
    assert kinds.count("sample") == STEPS * GROUPS * GROUP_SIZE, kinds
    steps = [c for c in run.calls if c["call"] == "forward_backward"]
    assert [(c["loss_fn"], c["n"]) for c in steps] == [(loss, GROUPS * GROUP_SIZE)] * STEPS
    assert kinds.count("optim_step") == STEPS
    assert [c["name"] for c in run.calls if c["call"] == "save_state"] == [
        *(f"{step:06d}" for step in range(1, STEPS + 1)),
        "final",
    ]
    assert [row["step"] for row in run.metrics] == list(range(STEPS))


@pytest.fixture(scope="module")
def python() -> str:
    return reference_python()


@pytest.mark.parametrize("loss", list(CASES))
def test_the_reference_rl_loop_and_ours_match_through_the_server(
    loss: str, python: str, tmp_path: Path
) -> None:
    extra = CASES[loss]
    reference = reference_run(python, tmp_path, "reference", extra)
    ours = our_run(tmp_path, "cookbook-run", extra)
    _check_shape(reference, loss)
    result = compare_served(reference, ours, rl=True)
    assert result.ok, result.text()


@pytest.mark.parametrize("loss", list(OTHER_LOSSES))
def test_the_reference_rl_loop_trains_through_the_server_with(
    loss: str, python: str, tmp_path: Path
) -> None:
    run = reference_run(python, tmp_path, "reference", OTHER_LOSSES[loss])
    _check_shape(run, loss)
    kinds = [c["call"] for c in run.calls]
    assert kinds.count("compute_logprobs") == STEPS * GROUPS * GROUP_SIZE, kinds
    # Step 0's policy is the base model (LoRA starts at zero): its KL advantages are float noise;
    # by step 1 the policy has moved and the penalty is real.
    assert run.metrics[-1]["local/grad_norm"] > 1e-3, run.metrics


def test_a_loss_the_server_refuses_ends_the_reference_run_with_its_reason(
    python: str, tmp_path: Path
) -> None:
    command = _reference(python, tmp_path, "reference", ("loss_fn=stable_reinforce",))
    done, calls, _ = served_runs.run_served(tmp_path, "refused", command, _server())
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    assert "stable_reinforce" in output and "not implemented" in output, output[-3000:]
    # The loop submits optim_step before awaiting forward_backward: only the latter is refused.
    assert "forward_backward" not in [c["call"] for c in calls]
