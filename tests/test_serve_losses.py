"""The built-in RL losses through cookbook-serve and the unmodified tinker SDK: every loss (with
and without ``loss_fn_config``) gives exactly the in-process local backend's logprobs, loss and
gradient norms; refused losses reach the SDK caller as their one-line reason; and the SDK's own
``forward_backward_custom`` (forward + cross_entropy backward) is served."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tinker
import torch
from test_serve import MODEL, SMALL, _no_telemetry, _sdk  # noqa: F401 (an autouse fixture)
from tinker import types

from cookbook.backends.local.service import LocalServiceClient
from cookbook.serve.engine import ModelMap
from cookbook.serve.server import RunningServer, ServeConfig, serve
from cookbook.tokenizers import get_tokenizer

ADAM = types.AdamParams(learning_rate=1e-2, beta1=0.9, beta2=0.95, eps=1e-8)
LOSSES = [
    ("importance_sampling", None),
    ("ppo", None),
    ("ppo", {"clip_low_threshold": 0.9, "clip_high_threshold": 1.1}),
    ("cispo", None),
    ("dro", {"beta": 0.05}),
    ("gspo", {"clip_low_threshold": 0.95, "clip_high_threshold": 1.05}),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    state = tmp_path_factory.mktemp("serve")
    with serve(ServeConfig(state_dir=state, model_map=ModelMap(default=SMALL))) as running:
        yield running


def _rl_datum(seed: int, prompt: int, completion: int) -> types.Datum:
    """Shaped as the cookbook's RL loop sends it: prompt positions with advantage 0 and
    sampler logprob 0; torch tensors, as its data_processing builds them."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 128_000, size=prompt + completion + 1)
    n = prompt + completion
    sampler = np.where(np.arange(n) < prompt, 0.0, -rng.uniform(8, 14, n))
    advantages = np.where(np.arange(n) < prompt, 0.0, rng.choice([-1.0, 0.5, 1.0], n))
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1].tolist()),
        loss_fn_inputs={
            "target_tokens": types.TensorData.from_torch(torch.tensor(tokens[1:])),
            "logprobs": types.TensorData.from_torch(torch.tensor(sampler, dtype=torch.float32)),
            "advantages": types.TensorData.from_torch(
                torch.tensor(advantages, dtype=torch.float32)
            ),
        },
    )


BATCHES = [[_rl_datum(0, 6, 9), _rl_datum(1, 4, 14)], [_rl_datum(2, 8, 5)]]


def _train(service: object, loss_fn: str, config: dict | None) -> dict[str, list]:
    tc = service.create_lora_training_client(base_model=MODEL, rank=8).result()
    out: dict[str, list] = {"logprobs": [], "loss": [], "grad_norms": []}
    for batch in BATCHES:
        fb = tc.forward_backward(batch, loss_fn, config)
        step = tc.optim_step(ADAM)
        result = fb.result()
        out["logprobs"].append([o["logprobs"].tolist() for o in result.loss_fn_outputs])
        out["loss"].append(result.metrics["loss:sum"])
        out["grad_norms"].append(step.result().metrics["local/grad_norm"])
    forward = tc.forward(BATCHES[0], loss_fn, config).result()
    out["loss"].append(forward.metrics["loss:sum"])
    return out


@pytest.mark.parametrize(("loss_fn", "config"), LOSSES)
def test_each_loss_through_the_server_equals_the_local_backend(
    server: RunningServer, tmp_path: Path, loss_fn: str, config: dict | None
) -> None:
    with _sdk(server) as sdk:
        served = _train(sdk, loss_fn, config)
    local = _train(
        LocalServiceClient(tmp_path, SMALL, seed=0, tokenizer=get_tokenizer(MODEL)), loss_fn, config
    )
    assert served == local
    assert all(norm > 0 for norm in served["grad_norms"])
    assert served["loss"][0] != served["loss"][2]  # the steps changed the model
    last = server.recorded()[-1]
    assert (last["call"], last["loss_fn"]) == ("forward", loss_fn)
    assert last.get("loss_fn_config") == config  # recorded only when given


@pytest.mark.parametrize(
    ("loss_fn", "config", "message"),
    [
        ("stable_reinforce", None, "'stable_reinforce' is not implemented by the local backend"),
        ("dro", None, "loss_fn 'dro': loss_fn_config needs 'beta'"),
        ("ppo", {"clip_low": 0.9}, r"loss_fn_config key\(s\) \['clip_low'\] not understood"),
    ],
)
def test_refused_losses_reach_the_sdk_caller_with_their_reason(
    server: RunningServer, loss_fn: str, config: dict | None, message: str
) -> None:
    with _sdk(server) as sdk:
        tc = sdk.create_lora_training_client(base_model=MODEL, rank=8).result()
        with pytest.raises(tinker.TinkerError, match=message):
            tc.forward_backward(BATCHES[0], loss_fn, config).result()


def _ce(seed: int) -> types.Datum:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 128_000, size=20).tolist()
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={
            "target_tokens": tokens[1:],
            "weights": (np.arange(19) >= 6).astype(np.float32),
        },
    )


def test_the_sdks_forward_backward_custom_is_served(server: RunningServer, tmp_path: Path):
    """A custom loss equal to cross_entropy trains exactly like the built-in one in process
    (it depends only on weighted positions: the served forward scores only those)."""
    batch = [_ce(0), _ce(1)]

    def custom(data: list[types.Datum], logprobs: list[torch.Tensor]):
        weights = [torch.tensor(d.loss_fn_inputs["weights"].data) for d in data]
        loss = sum(-(w * lp).sum() for w, lp in zip(weights, logprobs, strict=True))
        return loss, {"custom": float(loss.detach())}

    with _sdk(server) as sdk:
        tc = sdk.create_lora_training_client(base_model=MODEL, rank=8).result()
        result = tc.forward_backward_custom(batch, custom).result()
        served_norm = tc.optim_step(ADAM).result().metrics["local/grad_norm"]
    local = LocalServiceClient(tmp_path, SMALL, seed=0, tokenizer=get_tokenizer(MODEL))
    ltc = local.create_lora_training_client(base_model=MODEL, rank=8).result()
    want = ltc.forward_backward(batch, "cross_entropy").result()
    assert served_norm == ltc.optim_step(ADAM).result().metrics["local/grad_norm"]
    assert result.metrics["loss:sum"] == pytest.approx(want.metrics["loss:sum"], rel=1e-6)
    assert result.metrics["custom"] == result.metrics["loss:sum"]


def test_stable_reinforce_what_is_published_is_served_and_the_loss_is_refused_saying_why(
    server: RunningServer,
) -> None:
    """The published part of StableReinforce: a sampling client made with
    ``record_stability_info=True`` samples, each sequence gets a session-scoped ``sequence_id``
    distinct from every other, and a datum naming them in its provenance spans reaches the
    server; the loss itself is refused with the docs' address and what they leave out."""
    from cookbook.backends.local.losses import STABLE_REINFORCE_DOCS

    prompt = types.ModelInput.from_ints([1, 2, 3, 4])
    params = types.SamplingParams(max_tokens=3, seed=5)
    with _sdk(server) as sdk:
        tc = sdk.create_lora_training_client(base_model=MODEL, rank=8).result()
        sampler = tc.save_weights_and_get_sampling_client(record_stability_info=True).result()
        sequences = [
            seq
            for _ in range(2)  # identical requests: their sequences are still named apart
            for seq in sampler.sample(prompt, 2, params).result().sequences
        ]
        ids = [seq.sequence_id for seq in sequences]
        assert len(set(ids)) == len(ids) == 4 and all(ids), ids
        seq = sequences[0]
        full = [*prompt.to_ints(), *seq.tokens]
        datum = types.Datum(
            model_input=types.ModelInput.from_ints(full[:-1]),
            loss_fn_inputs={
                "target_tokens": full[1:],
                "logprobs": [0.0] * (len(prompt.to_ints()) - 1) + list(seq.logprobs),
                "advantages": [0.0] * (len(prompt.to_ints()) - 1) + [1.0] * len(seq.tokens),
            },
        ).with_provenance(
            model_input=[
                types.PromptProvenanceSpan(sequence_id=seq.sequence_id, length=4),
                types.SampledProvenanceSpan(sequence_id=seq.sequence_id, length=2),
            ],
            loss_fn_inputs=[
                types.PromptProvenanceSpan(sequence_id=seq.sequence_id, offset=1, length=3),
                types.SampledProvenanceSpan(sequence_id=seq.sequence_id, length=3),
            ],
        )
        with pytest.raises(tinker.TinkerError) as refused:
            tc.forward_backward([datum], "stable_reinforce", {"kl_coeff": 0.01}).result()
    message = str(refused.value)
    assert STABLE_REINFORCE_DOCS in message and "not its objective" in message, message
