"""The fake tinker backend: its documented model, both client surfaces, persistence, faults.

Expected numbers come from the formula in cookbook/backends/fake.py's docstring, worked by hand
here (token t at predicting position i: -(1 + ((31 t + 7 i) mod 97) / 97) / (1 + 1000 S)).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tinker import types

from cookbook.backends.fake import (
    DEFAULT_MAX_TOKENS,
    CallRecorder,
    FakeSamplingClient,
    FakeServiceClient,
    FakeTrainingClient,
)
from cookbook.digests import datum_digest
from cookbook.exceptions import ConfigurationError

MODEL = "meta-llama/Llama-3.1-8B"


def _datum(inputs: list[int], targets: list[int], weights: list[float]) -> types.Datum:
    return types.Datum(
        model_input=types.ModelInput.from_ints(inputs),
        loss_fn_inputs={"target_tokens": targets, "weights": weights},
    )


# inputs [5, 2, 3], targets [2, 3, 4]:
#   t=2, i=0: (62 + 0) % 97 = 62  -> -(1 + 62/97) = -159/97
#   t=3, i=1: (93 + 7) % 97 = 3   -> -(1 + 3/97)  = -100/97
#   t=4, i=2: (124 + 14) % 97 = 41 -> -(1 + 41/97) = -138/97
DATUM = _datum([5, 2, 3], [2, 3, 4], [0.0, 0.5, 0.5])
HAND_LOGPROBS = [-159 / 97, -100 / 97, -138 / 97]
HAND_LOSS = 0.5 * 100 / 97 + 0.5 * 138 / 97


def _training_client(tmp_path: Path, recorder: CallRecorder | None = None) -> FakeTrainingClient:
    service = FakeServiceClient(tmp_path, recorder)
    return service.create_lora_training_client(MODEL, rank=4).result()


def test_forward_backward_follows_the_documented_formula(tmp_path: Path) -> None:
    out = _training_client(tmp_path).forward_backward([DATUM], "cross_entropy").result()
    assert isinstance(out, types.ForwardBackwardOutput)
    logprobs = out.loss_fn_outputs[0]["logprobs"]
    assert isinstance(logprobs, types.TensorData) and logprobs.dtype == "float32"
    assert logprobs.data == np.asarray(HAND_LOGPROBS, dtype=np.float32).tolist()
    assert out.metrics["loss:sum"] == pytest.approx(HAND_LOSS, rel=1e-6)


def test_an_optimizer_step_scales_the_loss_by_one_over_one_plus_1000_lr(tmp_path: Path) -> None:
    client = _training_client(tmp_path)
    before = client.forward_backward([DATUM], "cross_entropy").result().metrics["loss:sum"]
    response = client.optim_step(types.AdamParams(learning_rate=1e-3)).result()
    assert isinstance(response, types.OptimStepResponse)
    after = client.forward_backward([DATUM], "cross_entropy").result().metrics["loss:sum"]
    # S = 1e-3 -> every logprob is divided by 1 + 1000 * 1e-3 = 2 (exact in float32).
    assert after == pytest.approx(before / 2, rel=1e-12)
    # forward_backward alone never trains.
    again = client.forward_backward([DATUM], "cross_entropy").result().metrics["loss:sum"]
    assert again == after


def test_two_independent_backends_agree_call_for_call(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        recorder = CallRecorder()
        client = _training_client(tmp_path / name, recorder)
        outputs = []
        for lr in (2e-4, 1e-4):
            outputs.append(client.forward_backward([DATUM], "cross_entropy").result().metrics)
            client.optim_step(types.AdamParams(learning_rate=lr)).result()
        outputs.append(client.save_state("000001").result().path)
        runs.append((recorder.calls, outputs))
    assert runs[0] == runs[1]
    calls = runs[0][0]
    assert json.loads(json.dumps(calls)) == calls  # JSON-able, floats round-trip
    assert [c["call"] for c in calls] == [
        "create_lora_training_client",
        "forward_backward",
        "optim_step",
        "forward_backward",
        "optim_step",
        "save_state",
    ]
    assert calls[1]["datums"] == [datum_digest(DATUM)]
    assert calls[2]["adam"] == {
        "learning_rate": 2e-4,
        "beta1": 0.9,
        "beta2": 0.95,
        "eps": 1e-12,
        "weight_decay": 0.0,
        "grad_clip_norm": 0.0,
    }


def test_the_deprecated_async_forms_match_the_future_forms(tmp_path: Path) -> None:
    sync_recorder, async_recorder = CallRecorder(), CallRecorder()
    service = FakeServiceClient(tmp_path / "sync", sync_recorder)
    client = service.create_lora_training_client(MODEL, rank=4).result()
    sync_loss = client.forward_backward([DATUM], "cross_entropy").result().metrics
    client.optim_step(types.AdamParams(learning_rate=1e-3)).result()
    sync_path = client.save_state("s").result().path
    sync_scores = (
        client.save_weights_and_get_sampling_client().result().compute_logprobs(DATUM.model_input)
    )

    async def deprecated_surface():
        service = FakeServiceClient(tmp_path / "async", async_recorder)
        client = await service.create_lora_training_client_async(base_model=MODEL, rank=4)
        future = await client.forward_backward_async([DATUM], loss_fn="cross_entropy")
        loss = (await future.result_async()).metrics
        await (await client.optim_step_async(types.AdamParams(learning_rate=1e-3)))
        path = (await (await client.save_state_async("s")).result_async()).path
        sampler = await client.save_weights_and_get_sampling_client_async()
        assert isinstance(sampler, FakeSamplingClient)
        return loss, path, await sampler.compute_logprobs_async(DATUM.model_input)

    assert asyncio.run(deprecated_surface()) == (sync_loss, sync_path, sync_scores.result())
    assert sync_recorder.calls == async_recorder.calls


def test_state_persists_on_disk_for_a_new_process(tmp_path: Path) -> None:
    client = _training_client(tmp_path)
    client.optim_step(types.AdamParams(learning_rate=3e-4)).result()
    saved = client.save_state("000001").result()
    assert isinstance(saved, types.SaveWeightsResponse)
    assert saved.path == "fake://run-0001/weights/000001"
    on_disk = json.loads((tmp_path / "run-0001" / "weights" / "000001.json").read_text())
    assert on_disk["applied_lr_sum"] == 3e-4 and on_disk["optim_steps"] == 1
    expected = client.forward_backward([DATUM], "cross_entropy").result()
    child = """
import json, sys
from tinker import types
from cookbook.backends.fake import FakeServiceClient
service = FakeServiceClient(sys.argv[1])
client = service.create_training_client_from_state_with_optimizer(sys.argv[2]).result()
datum = types.Datum(model_input=types.ModelInput.from_ints([5, 2, 3]),
                    loss_fn_inputs={"target_tokens": [2, 3, 4], "weights": [0.0, 0.5, 0.5]})
out = client.forward_backward([datum], "cross_entropy").result()
print(json.dumps([out.loss_fn_outputs[0]["logprobs"].data, client.model_id]))
"""
    done = subprocess.run(
        [sys.executable, "-c", child, str(tmp_path), saved.path],
        capture_output=True,
        text=True,
        check=True,
    )
    logprobs, run_id = json.loads(done.stdout)
    assert logprobs == expected.loss_fn_outputs[0]["logprobs"].data
    assert run_id == "run-0002"  # a resumed client is a new run: its saves overwrite nothing


def test_loading_weights_only_resets_the_optimizer_but_keeps_the_weights(tmp_path: Path) -> None:
    service = FakeServiceClient(tmp_path)
    client = service.create_lora_training_client(MODEL).result()
    client.optim_step(types.AdamParams(learning_rate=1e-3)).result()
    path = client.save_state("w").result().path
    fresh = service.create_training_client_from_state(path).result()
    assert fresh.applied_lr_sum == 1e-3
    resaved = fresh.save_state("again").result().path
    on_disk = json.loads((tmp_path / "run-0002" / "weights" / "again.json").read_text())
    assert resaved == "fake://run-0002/weights/again" and on_disk["optim_steps"] == 0


def test_a_sampling_client_snapshots_the_weights(tmp_path: Path) -> None:
    client = _training_client(tmp_path)
    sampler = client.save_weights_and_get_sampling_client().result()
    before = sampler.compute_logprobs(DATUM.model_input).result()
    client.optim_step(types.AdamParams(learning_rate=1e-3)).result()
    assert sampler.compute_logprobs(DATUM.model_input).result() == before
    path = client.save_weights_for_sampler("s").result()
    assert isinstance(path, types.SaveWeightsForSamplerResponse)
    assert path.path == "fake://run-0001/sampler_weights/s"
    service = FakeServiceClient(tmp_path)
    later = service.create_sampling_client(model_path=path.path).result()
    halved = [v / 2 for v in before[1:]]  # S = 1e-3 halves every logprob
    assert later.compute_logprobs(DATUM.model_input).result() == [None, *halved]


def test_compute_logprobs_scores_a_datum_like_forward_backward(tmp_path: Path) -> None:
    """The reference's SamplerNLLEvaluator appends the last target and drops entry 0."""
    client = _training_client(tmp_path)
    full = DATUM.model_input.append_int(DATUM.loss_fn_inputs["target_tokens"].data[-1])
    scores = client.save_weights_and_get_sampling_client().result().compute_logprobs(full)
    trained = client.forward_backward([DATUM], "cross_entropy").result()
    assert scores.result()[0] is None
    assert scores.result()[1:] == trained.loss_fn_outputs[0]["logprobs"].data


def test_sampling_is_deterministic_and_honours_max_tokens_and_stop_ids(tmp_path: Path) -> None:
    sampler = _training_client(tmp_path).save_weights_and_get_sampling_client().result()
    prompt = types.ModelInput.from_ints([10, 11, 12, 13, 14])
    params = types.SamplingParams(max_tokens=7, seed=3)
    first = sampler.sample(prompt, 3, params).result()
    assert isinstance(first, types.SampleResponse)
    again = sampler.sample(prompt, 3, params).result()
    drawn = [(s.tokens, s.logprobs, s.stop_reason) for s in first.sequences]
    assert drawn == [(s.tokens, s.logprobs, s.stop_reason) for s in again.sequences]
    assert first.prompt_logprobs == again.prompt_logprobs
    for sequence in first.sequences:
        assert isinstance(sequence, types.SampledSequence)
        assert sequence.stop_reason == "length" and len(sequence.tokens) == 7
        # tokens cycle through the prompt from some offset
        start = prompt.to_ints().index(sequence.tokens[0])
        assert sequence.tokens == [10 + (start + k) % 5 for k in range(7)]
    stopped = sampler.sample(prompt, 1, types.SamplingParams(max_tokens=20, stop=[12])).result()
    tokens = stopped.sequences[0].tokens
    assert tokens[-1] == 12 and 12 not in tokens[:-1] and stopped.sequences[0].stop_reason == "stop"
    strings = sampler.sample(prompt, 1, types.SamplingParams(stop=["\n"], seed=0)).result()
    assert len(strings.sequences[0].tokens) == DEFAULT_MAX_TOKENS  # string stops are ignored


def test_an_injected_fault_is_recorded_and_leaves_the_state_alone(tmp_path: Path) -> None:
    recorder = CallRecorder()
    service = FakeServiceClient(tmp_path, recorder, faults={2: RuntimeError("boom")})
    client = service.create_lora_training_client(MODEL).result()
    client.forward_backward([DATUM], "cross_entropy").result()
    with pytest.raises(RuntimeError, match="boom"):
        client.optim_step(types.AdamParams(learning_rate=1e-3))
    assert recorder.calls[2]["fault"] == "RuntimeError('boom')"
    assert client.applied_lr_sum == 0.0
    client.optim_step(types.AdamParams(learning_rate=1e-3)).result()  # index 3: no fault
    assert client.applied_lr_sum == 1e-3


def test_the_rest_client_reports_the_run_metadata(tmp_path: Path) -> None:
    service = FakeServiceClient(tmp_path)
    client = service.create_lora_training_client(
        MODEL, rank=8, user_metadata={"renderer_name": "llama3"}
    ).result()
    path = client.save_state("x").result().path
    run = asyncio.run(service.create_rest_client().get_training_run_by_tinker_path_async(path))
    assert isinstance(run, types.TrainingRun)
    assert (run.training_run_id, run.base_model, run.lora_rank) == ("run-0001", MODEL, 8)
    assert run.user_metadata == {"renderer_name": "llama3"}


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (lambda s, c: c.forward_backward([DATUM], "custom"), "cross_entropy"),
        (lambda s, c: c.forward_backward([DATUM], "ppo"), r"needs loss_fn_inputs \['advantages'"),
        (lambda s, c: c.forward_backward([_datum([1, 2], [2], [1.0])], "cross_entropy"), "has 1"),
        (lambda s, c: s.create_training_client_from_state("tinker://x/weights/y"), "not a fake"),
        (lambda s, c: s.create_training_client_from_state("fake://run-0009/weights/y"), "no such"),
        (
            lambda s, c: s.create_training_client_from_state(
                c.save_weights_for_sampler("s").result().path
            ),
            "sampler checkpoint",
        ),
        (lambda s, c: c.optim_step(None), "AdamParams"),
    ],
)
def test_misuse_fails_with_a_one_line_error(tmp_path: Path, action, message: str) -> None:
    service = FakeServiceClient(tmp_path)
    client = service.create_lora_training_client(MODEL).result()
    with pytest.raises(ConfigurationError, match=message) as info:
        action(service, client)
    assert "\n" not in str(info.value)
