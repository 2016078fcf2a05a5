"""The reference's own ``rl.train.main`` through cookbook-serve, and ours, call for call.

Each run gets a fresh ``cookbook-serve`` (same seed and stand-in: the small model of
tests/test_rl_local_run.py) that records every call it applies. The reference
(``tools/reference_through_server.py`` in its own virtualenv) and ``cookbook-run
specs/rl_arithmetic.yaml --set backend=tinker`` run the same shrunk spec (``--set``: 2 groups of
2 per batch, 2 steps, a save every step); :func:`cookbook.parity.served.compare_served` wants the
same calls and datums and the same metrics within float tolerance.

With the random-init stand-in the weights do not move: it never earns a reward, so every
group's advantages are zero and so are the gradients. The SmolLM2 cases
(:func:`test_with_weights_that_move_the_runs_match_call_for_call`) do move them: the pretrained
stand-in's rewards differ within a group, every step's gradient is non-zero, and each later
step samples from the moved weights - its datums carry those samples' logprobs, compared exactly.

Arrival order. Which trajectory of a group gets which sample is the arrival order of the
group's identical concurrent requests (the server seeds the k-th identical request with the k-th
seed), so the two runs send a batch's datums in different orders (compared as a multiset).
Before the local backend computed a batch in a canonical order, that alone made the float32
gradient sums differ in the last bits after step 1 and every datum of step 2 differ (measured
with these cases). What still depends on that order, in the client (the reference's own code):
a group's mean reward for group sizes above 2 (a float32 sum; ``a + b == b + a`` holds for 2,
hence ``group_size=2`` here), and the KL penalty's batch mean (below).

Advantages from the KL penalty against the base model (its ``compute_logprobs`` calls shape
them per token) cannot be compared datum for datum: its batch-mean is a float32 sum in datum
order, which is that arrival order (the reference against itself differs in the last bit), so
the datums' digests differ, and so do the weights after one step.

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


def _set_args(sets: tuple[str, ...]) -> list[str]:
    return [arg for item in sets for arg in ("--set", item)]


def _server(sets: tuple[str, ...], stand_in: dict[str, Any]) -> dict[str, Any]:
    from cookbook.backends.local.config import LocalModelConfig
    from cookbook.serve.engine import ModelMap

    seed = load_spec(SPEC, sets, local_engine=True).seed
    return {"seed": seed, "model_map": ModelMap(default=LocalModelConfig(**stand_in))}


def _reference(python: str, tmp: Path, label: str, sets: tuple[str, ...]) -> list[str]:
    log = tmp / label
    return [
        python,
        served_runs.DRIVER,
        "--spec",
        str(SPEC),
        *_set_args(sets),
        "--log-path",
        f"{log}",
    ]


def reference_run(
    python: str, tmp: Path, label: str, sets: tuple[str, ...], stand_in: dict[str, Any] = SMALL
) -> ServedRun:
    command = _reference(python, tmp, label, sets)
    return served_runs.served_run(tmp, label, command, tmp / label, _server(sets, stand_in))[0]


def our_run(
    tmp: Path, label: str, sets: tuple[str, ...], stand_in: dict[str, Any] = SMALL
) -> ServedRun:
    command = [sys.executable, "-m", "cookbook.cli", str(SPEC), "--set=backend=tinker"]
    command += [*_set_args(sets), "--log-dir", str(tmp / label)]
    return served_runs.served_run(tmp, label, command, tmp / label, _server(sets, stand_in))[0]


def _check_shape(
    run: ServedRun, loss: str, steps: int = STEPS, trajectories: int = GROUPS * GROUP_SIZE
) -> None:
    """Independent of the comparator: per step one sample per trajectory (the reference's
    group rollout samples each with n=1), one forward_backward with every trajectory's datum
    and the case's loss, one optim_step, and a save (save_every=1), then the final save."""
    kinds = [c["call"] for c in run.calls]
    assert kinds.count("sample") == steps * trajectories, kinds
    fbs = [c for c in run.calls if c["call"] == "forward_backward"]
    assert [(c["loss_fn"], c["n"]) for c in fbs] == [(loss, trajectories)] * steps
    assert kinds.count("optim_step") == steps
    assert [c["name"] for c in run.calls if c["call"] == "save_state"] == [
        *(f"{step:06d}" for step in range(1, steps + 1)),
        "final",
    ]
    assert [row["step"] for row in run.metrics] == list(range(steps))


@pytest.fixture(scope="module")
def python() -> str:
    return reference_python()


@pytest.mark.parametrize("loss", list(CASES))
def test_the_reference_rl_loop_and_ours_match_through_the_server(
    loss: str, python: str, tmp_path: Path
) -> None:
    sets = (*SETS, *CASES[loss])
    reference = reference_run(python, tmp_path, "reference", sets)
    ours = our_run(tmp_path, "cookbook-run", sets)
    _check_shape(reference, loss)
    result = compare_served(reference, ours, rl=True)
    assert result.ok, result.text()


@pytest.mark.parametrize("loss", list(OTHER_LOSSES))
def test_the_reference_rl_loop_trains_through_the_server_with(
    loss: str, python: str, tmp_path: Path
) -> None:
    run = reference_run(python, tmp_path, "reference", (*SETS, *OTHER_LOSSES[loss]))
    _check_shape(run, loss)
    kinds = [c["call"] for c in run.calls]
    assert kinds.count("compute_logprobs") == STEPS * GROUPS * GROUP_SIZE, kinds
    # Step 0's policy is the base model (LoRA starts at zero): its KL advantages are float noise;
    # by step 1 the policy has moved and the penalty is real.
    assert run.metrics[-1]["local/grad_norm"] > 1e-3, run.metrics


def test_a_loss_the_server_refuses_ends_the_reference_run_with_its_reason(
    python: str, tmp_path: Path
) -> None:
    sets = (*SETS, "loss_fn=stable_reinforce")
    command = _reference(python, tmp_path, "reference", sets)
    done, calls, _ = served_runs.run_served(tmp_path, "refused", command, _server(sets, SMALL))
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    assert "stable_reinforce" in output and "not implemented" in output, output[-3000:]
    # The loop submits optim_step before awaiting forward_backward: only the latter is refused.
    assert "forward_backward" not in [c["call"] for c in calls]


MOVING_STEPS = 3
MOVING_GROUPS = 3
MOVING = (
    # The spec's own local profile (SmolLM2 stand-in, its renderer, lr, LoRA rank), shrunk.
    f"dataset.batch_size={MOVING_GROUPS}",
    f"dataset.group_size={GROUP_SIZE}",
    f"max_steps={MOVING_STEPS}",
    "max_tokens=4",
    "save_every=1",
    "eval_every=0",
)
SMOLLM2 = {"kind": "smollm2_gguf", "threads": 1}


@pytest.mark.parametrize("loss", list(CASES))
def test_with_weights_that_move_the_runs_match_call_for_call(
    loss: str, python: str, tmp_path: Path
) -> None:
    """The pretrained SmolLM2 stand-in earns rewards that differ within a group, so the
    advantages are not zero and every step moves the weights: each later step samples from
    the moved weights, and its datums (sampling logprobs included) must still agree."""
    sets = (*MOVING, *CASES[loss])
    reference = reference_run(python, tmp_path, "reference", sets, SMOLLM2)
    ours = our_run(tmp_path, "cookbook-run", sets, SMOLLM2)
    _check_shape(reference, loss, MOVING_STEPS, MOVING_GROUPS * GROUP_SIZE)
    # Every step but the last moves the weights that a later step samples from.
    grad_norms = [row["local/grad_norm"] for row in reference.metrics]
    assert all(norm > 1e-3 for norm in grad_norms[:-1]), grad_norms
    result = compare_served(reference, ours, rl=True)
    assert result.ok, result.text()
