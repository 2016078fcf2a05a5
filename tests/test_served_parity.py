"""Reference-through-server parity: the reference's own sl_basic and ours, through the real SDK.

Each run gets a fresh ``cookbook-serve`` (same seed: same stand-in weights, same model ids)
that records every call it applies. The reference (``tools/reference_through_server.py``, in
its own virtualenv) and ``cookbook-run --set backend=tinker`` train the spec's offline sl_basic
for one epoch with the local profile (14 steps of 8 conversations, an eval at step 0, a final
save); :mod:`cookbook.parity.served` then wants the same calls, learning rates and saves, and
the same metrics within float tolerance.

The reference's virtualenv comes from ``nox -s parity`` (see tests/served_runs.py).

The comparator's own tests (a perturbed recording must be reported) run everywhere, on
recordings of the fake backend: the same ``describe_call`` shape as the server's.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import served_runs
from served_runs import reference_python

from cookbook.backends.fake import CallRecorder, FakeServiceClient
from cookbook.parity.recipe import read_jsonl
from cookbook.parity.served import ServedRun, canonical_order, compare_served
from cookbook.specs.loader import load_spec
from cookbook.supervised.recipe import resolve_data
from cookbook.supervised.train import SupervisedTrainer
from cookbook.tokenizers import get_tokenizer

pytestmark = pytest.mark.parity

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "sl_basic.yaml"
SETS = ("num_epochs=1", "checkpoint_semantics=reference", "final_sample=null")
"""One epoch of the local profile. The reference only has its own checkpoint order and no
final sample, so ours is set to match (the driver ignores both settings)."""
SET_ARGS = tuple(arg for item in SETS for arg in ("--set", item))


def served_run(
    tmp: Path, label: str, command: list[str], log_dir: Path, faults: str | None = None
) -> tuple[ServedRun, list[dict[str, Any]]]:
    """``command`` against a fresh server seeded as backend=local would seed the stand-in."""
    from cookbook.serve.faults import FaultPlan  # torch: only for the served tests

    seed = load_spec(SPEC, SETS).seed
    plan = FaultPlan.parse(faults) if faults else None
    return served_runs.served_run(tmp, label, command, log_dir, {"seed": seed, "faults": plan})


def _driver(python: str) -> list[str]:
    return [python, served_runs.DRIVER, "--spec", str(SPEC), *SET_ARGS]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[ServedRun, ServedRun]:
    python = reference_python()
    tmp = tmp_path_factory.mktemp("served")
    driver = _driver(python)
    reference, _ = served_run(
        tmp, "reference", [*driver, "--log-path", str(tmp / "ref")], tmp / "ref"
    )
    ours_cmd = [sys.executable, "-m", "cookbook.cli", str(SPEC), "--set=backend=tinker", *SET_ARGS]
    ours, _ = served_run(
        tmp, "cookbook-run", [*ours_cmd, "--log-dir", str(tmp / "ours")], tmp / "ours"
    )
    return reference, ours


def test_reference_and_ours_match_through_the_server(served: tuple[ServedRun, ServedRun]) -> None:
    reference, ours = served
    # Independent of the comparator: one epoch of 112 training rows in batches of 8 (the
    # overlay holds 16 of the 128 example conversations out) is 14 steps, each one
    # forward_backward and one optim_step, and the run ends with the final save.
    kinds = [c["call"] for c in reference.calls]
    assert kinds.count("forward_backward") == kinds.count("optim_step") == 14
    assert [c["name"] for c in reference.calls if c["call"] == "save_state"] == ["final"]
    result = compare_served(reference, ours)
    assert result.ok, result.text()


# Every kind of fault, on the calls the reference's loop makes: a refused, a dropped and a slow
# training call, a lost eval request, a refused save and a flaky result poll.
REFERENCE_FAULTS = (
    "500@forward_backward#2,drop@optim_step#3,slow:2@forward_backward#5,drop@asample#4,"
    "429@save_weights#1,500@retrieve_future~0.03,seed=11"
)


def test_the_reference_under_faults_loses_and_repeats_no_step(
    served: tuple[ServedRun, ServedRun], tmp_path: Path
) -> None:
    """The reference's loop has no retries of its own: the SDK's, against a server that
    dedupes resent requests, must deliver every step exactly once."""
    reference, _ = served
    log_dir = tmp_path / "ref"
    command = [*_driver(reference_python()), "--log-path", str(log_dir)]
    faulty, injected = served_run(tmp_path, "reference-faults", command, log_dir, REFERENCE_FAULTS)
    result = compare_served(reference, faulty)
    assert result.ok, result.text()
    fired = {(f["endpoint"], f["kind"]) for f in injected}
    assert fired >= {
        ("forward_backward", "500"),
        ("optim_step", "drop"),
        ("forward_backward", "slow"),
        ("asample", "drop"),
        ("save_weights", "429"),
    }, fired


def test_a_perturbed_server_recording_is_reported(served: tuple[ServedRun, ServedRun]) -> None:
    reference, ours = served
    calls = copy.deepcopy(ours.calls)
    next(c for c in calls if c["call"] == "optim_step")["adam"]["learning_rate"] *= 1.01
    perturbed = ServedRun(ours.label, calls, ours.metrics, ours.checkpoints)
    result = compare_served(reference, perturbed)
    assert set(result.differences) == {"calls", "learning rates"}, result.text()


# -- the comparator, on fake-backend recordings --------------------------------------------------


def fake_run(tmp: Path, label: str) -> ServedRun:
    """Our loop on the fake backend with the served configuration (local overlay applied)."""
    spec = load_spec(SPEC, [*SETS, "backend=fake"], local_engine=True)
    data = resolve_data(SPEC, spec, spec.renderer_name)
    client = FakeServiceClient(state_dir=tmp / f"{label}-state", recorder=CallRecorder())
    log_dir = tmp / label
    log_dir.mkdir()
    tokenizer = get_tokenizer(spec.model_name)
    SupervisedTrainer(
        spec, spec.renderer_name, client, data.train, data.test, tokenizer, log_dir
    ).run()
    return ServedRun(
        label,
        client.recorder.calls,
        read_jsonl(log_dir / "metrics.jsonl"),
        read_jsonl(log_dir / "checkpoints.jsonl"),
    )


@pytest.fixture(scope="module")
def fake_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[ServedRun, ServedRun]:
    tmp = tmp_path_factory.mktemp("fake-served")
    return fake_run(tmp, "expected"), fake_run(tmp, "actual")


def _index(run: ServedRun, kind: str, nth: int) -> int:
    return [i for i, c in enumerate(run.calls) if c["call"] == kind][nth]


def _datum(run: ServedRun) -> None:
    run.calls[_index(run, "forward_backward", 2)]["datums"][5] = "0" * 64


def _lr(run: ServedRun) -> None:
    run.calls[_index(run, "optim_step", 4)]["adam"]["learning_rate"] *= 1 + 1e-9


def _save_name(run: ServedRun) -> None:
    run.calls[_index(run, "save_state", 0)]["name"] = "000013"


def _dropped_step(run: ServedRun) -> None:
    del run.calls[_index(run, "optim_step", 13)]


def _swapped_batches(run: ServedRun) -> None:
    first, second = _index(run, "forward_backward", 6), _index(run, "forward_backward", 7)
    run.calls[first], run.calls[second] = run.calls[second], run.calls[first]


def _nll(run: ServedRun) -> None:
    run.metrics[3]["train_mean_nll"] *= 1 + 3e-4


def _no_eval(run: ServedRun) -> None:
    del run.metrics[0]["test/nll"]


PERTURBATIONS: dict[str, tuple[Callable[[ServedRun], None], set[str], str]] = {
    # name: (perturbation, layers that must differ, text the report must contain)
    "datum digest": (_datum, {"calls"}, "call 22 (forward_backward, step 2): datums[5]"),
    "learning rate": (_lr, {"calls", "learning rates"}, "step    4"),
    "save name": (_save_name, {"calls", "checkpoints"}, "save_state 000013"),
    "dropped optim_step": (_dropped_step, {"calls", "learning rates"}, "optim_step x13"),
    "swapped batches": (_swapped_batches, {"calls"}, "call 30 (forward_backward, step 6)"),
    "train NLL": (_nll, {"metrics"}, "3  train_mean_nll"),
    "missing eval": (_no_eval, {"metrics"}, "test/nll               1."),
}


def test_identical_runs_match(fake_runs: tuple[ServedRun, ServedRun]) -> None:
    result = compare_served(*fake_runs)
    assert result.ok, result.text()


@pytest.mark.parametrize("name", list(PERTURBATIONS))
def test_a_perturbation_is_reported(name: str, fake_runs: tuple[ServedRun, ServedRun]) -> None:
    expected, actual = fake_runs
    perturb, layers, shown = PERTURBATIONS[name]
    changed = copy.deepcopy(actual)
    perturb(changed)
    result = compare_served(expected, changed)
    assert set(result.differences) == layers, result.text()
    assert shown in result.text(), result.text()


def test_float_noise_within_tolerance_is_not_a_difference(
    fake_runs: tuple[ServedRun, ServedRun],
) -> None:
    expected, actual = fake_runs
    changed: Any = copy.deepcopy(actual)
    for row in changed.metrics:  # 1e-6 relative: float32 reduction-order noise
        row["train_mean_nll"] *= 1 + 1e-6
    assert compare_served(expected, changed).ok


def test_eval_requests_in_another_order_are_not_a_difference(
    fake_runs: tuple[ServedRun, ServedRun],
) -> None:
    """The reference submits an eval's requests concurrently: the server may apply them in
    any order, and as they change nothing, the comparison must not care."""
    expected, actual = fake_runs
    changed = copy.deepcopy(actual)
    evals = [i for i, c in enumerate(changed.calls) if c["call"] == "compute_logprobs"]
    assert len(evals) == 16  # the overlay's 16 held-out conversations, evaluated at step 0
    block = [changed.calls[i] for i in evals]
    for i, call in zip(evals, reversed(block), strict=True):
        changed.calls[i] = call
    assert changed.calls != actual.calls
    assert compare_served(expected, changed).ok


def test_datums_in_another_order_differ_unless_a_batch_is_a_multiset(
    fake_runs: tuple[ServedRun, ServedRun],
) -> None:
    """RL groups sample their trajectories as identical concurrent requests: which trajectory
    gets which sample is arrival order, so ``rl=True`` compares a batch's datums as a set."""
    expected, actual = fake_runs
    changed = copy.deepcopy(actual)
    call = changed.calls[_index(changed, "forward_backward", 3)]
    call["datums"] = call["datums"][::-1]
    assert canonical_order(changed.calls) != canonical_order(expected.calls)
    assert canonical_order(changed.calls, datums_unordered=True) == canonical_order(
        expected.calls, datums_unordered=True
    )
    assert set(compare_served(expected, changed).differences) == {"calls"}
