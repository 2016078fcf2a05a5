"""The fake backend's RL side (cookbook/backends/fake_rl.py): unseeded sampling and the losses.

Expected values are derived here from the documented formulas, not read back from the fake.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from tinker import types

from cookbook.backends.fake import CallRecorder, FakeServiceClient, fake_logprobs
from cookbook.backends.fake_rl import LOSSES, RL_LOSSES
from cookbook.exceptions import ConfigurationError

MODEL = "meta-llama/Llama-3.1-8B"
PROMPT = types.ModelInput.from_ints([5, 6, 7, 8, 9, 99, 5, 6])
STOP = 99


def _sampler(tmp_path: Path, **kwargs):
    service = FakeServiceClient(tmp_path, **kwargs)
    client = service.create_lora_training_client(MODEL).result()
    return client, client.save_weights_and_get_sampling_client().result()


def _draw(sampler, n: int = 1, **params):
    params.setdefault("max_tokens", 6)
    return sampler.sample(PROMPT, n, types.SamplingParams(**params)).result().sequences


def test_unseeded_samples_are_fresh_per_call_yet_reproducible(tmp_path: Path) -> None:
    _, one = _sampler(tmp_path / "a")
    _, two = _sampler(tmp_path / "b")
    first = [_draw(one, stop=[STOP])[0].tokens for _ in range(8)]
    again = [_draw(two, stop=[STOP])[0].tokens for _ in range(8)]
    assert first == again  # same call sequence, same samples
    assert len({tuple(t) for t in first}) > 1  # a group of one-sample calls is not constant
    three = _draw(one, 4, stop=[STOP])
    assert len({tuple(s.tokens) for s in three}) > 1  # num_samples draws differ too
    ids = [s.sequence_id for s in [*three, *_draw(one, 4, stop=[STOP])]]
    assert len(set(ids)) == len(ids)  # distinct per sequence, as the SDK's SampledSequence says
    hot = [_draw(two, stop=[STOP], temperature=0.5)[0].tokens for _ in range(8)]
    assert hot != first[:8]  # the sampling params are part of the key


def test_unseeded_samples_honour_stop_ids_and_max_tokens(tmp_path: Path) -> None:
    _, sampler = _sampler(tmp_path)
    alphabet = set(PROMPT.to_ints()) - {STOP}
    reasons = []
    for _ in range(40):
        (seq,) = _draw(sampler, stop=[STOP, 7], max_tokens=6)
        reasons.append(seq.stop_reason)
        assert 1 <= len(seq.tokens) <= 6
        assert set(seq.tokens) <= alphabet | {STOP}
        assert not {STOP, 7} & set(seq.tokens[:-1])
        if seq.stop_reason == "stop":
            assert seq.tokens[-1] in {STOP, 7}
        else:
            assert len(seq.tokens) == 6 and seq.tokens[-1] not in {STOP, 7}
        position = PROMPT.length - 1
        assert seq.logprobs == fake_logprobs(seq.tokens, position, 0.0).tolist()
    assert {"stop", "length"} == set(reasons)  # the mix that gives ProblemEnv mixed rewards


class CharTokenizer:
    """Token ``i`` is ``chr(i)``: enough to show string stops work through decode/encode."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, tokens: list[int]) -> str:
        return "".join(chr(t) for t in tokens)


def test_string_stops_need_and_use_the_tokenizer(tmp_path: Path) -> None:
    prompt = types.ModelInput.from_ints([ord(c) for c in "ab\nUser:"])
    _, sampler = _sampler(tmp_path / "tok", tokenizer=CharTokenizer())
    stopped = []
    for _ in range(30):
        params = types.SamplingParams(max_tokens=12, stop=["\nUser:"])
        (seq,) = sampler.sample(prompt, 1, params).result().sequences
        text = CharTokenizer().decode(seq.tokens)
        if seq.stop_reason == "stop":
            stopped.append(text)
            assert text.endswith("\nUser:") and "\nUser:" not in text[:-1]
        else:
            assert "\nUser:" not in text and len(seq.tokens) == 12
    assert stopped
    _, blind = _sampler(tmp_path / "none")
    params = types.SamplingParams(max_tokens=5, stop=["\nUser:"])
    reasons = {blind.sample(prompt, 1, params).result().sequences[0].stop_reason for _ in range(9)}
    assert reasons == {"length"}  # without a tokenizer a string cannot be seen


def _rl_datum(advantages: list[float], mask: bool = False) -> types.Datum:
    tokens = [3, 4, 5, 6]
    n = len(tokens)
    inputs = {
        "target_tokens": types.TensorData.from_numpy(np.asarray([4, 5, 6, 7], dtype=np.int64)),
        "logprobs": types.TensorData.from_numpy(np.full(n, -1.2, dtype=np.float32)),
        "advantages": types.TensorData.from_numpy(np.asarray(advantages, dtype=np.float32)),
    }
    if mask:
        inputs["mask"] = types.TensorData.from_numpy(np.ones(n, dtype=np.float32))
    return types.Datum(model_input=types.ModelInput.from_ints(tokens), loss_fn_inputs=inputs)


@pytest.mark.parametrize("loss_fn", RL_LOSSES)
def test_every_rl_loss_is_accepted_and_returns_per_token_logprobs(
    tmp_path: Path, loss_fn: str
) -> None:
    client, _ = _sampler(tmp_path)
    data = [_rl_datum([0.0, 0.5, 0.5, 0.5]), _rl_datum([0.0, -1.0, -1.0, -1.0], mask=True)]
    out = client.forward_backward(data, loss_fn).result()
    expected = fake_logprobs([4, 5, 6, 7], 0, 0.0).tolist()
    assert [o["logprobs"].data for o in out.loss_fn_outputs] == [expected, expected]
    again = client.forward_backward(data, loss_fn).result()
    assert again.metrics == out.metrics and np.isfinite(out.metrics["loss:sum"])


def test_importance_sampling_and_ppo_follow_the_documented_formulas(tmp_path: Path) -> None:
    client, _ = _sampler(tmp_path)
    adv = [0.0, 0.5, 2.0, -1.0]
    lp = fake_logprobs([4, 5, 6, 7], 0, 0.0).astype(np.float64)
    old = np.float64(np.float32(-1.2))
    ratio = np.exp(lp - old)
    a = np.asarray(adv)
    is_loss = client.forward_backward([_rl_datum(adv)], "importance_sampling").result()
    assert is_loss.metrics["loss:sum"] == pytest.approx(-np.sum(ratio * a), rel=1e-12)
    config = {"clip_low_threshold": 0.9, "clip_high_threshold": 1.1}
    ppo = client.forward_backward([_rl_datum(adv)], "ppo", config).result()
    clipped = np.clip(ratio, 0.9, 1.1)
    assert ppo.metrics["loss:sum"] == pytest.approx(
        -np.sum(np.minimum(ratio * a, clipped * a)), rel=1e-12
    )
    assert client._backend.recorder.calls[-1]["loss_fn_config"] == config


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.forward_backward([_rl_datum([0.0] * 4)], "custom"), "not 'custom'"),
        (lambda c: c.forward_backward([_rl_datum([0.0] * 3)], "cispo"), "advantages has 3"),
    ],
)
def test_rl_misuse_is_one_line(tmp_path: Path, call, message: str) -> None:
    client, _ = _sampler(tmp_path)
    with pytest.raises(ConfigurationError, match=message) as info:
        call(client)
    assert "\n" not in str(info.value)
    assert "cross_entropy" in LOSSES


def test_the_arithmetic_env_gets_mixed_rewards_on_the_fake(tmp_path: Path) -> None:
    """Without mixed groups every advantage is 0 and RL parity would check nothing."""
    from cookbook.recipes.math_rl.arithmetic_env import ArithmeticDataset
    from cookbook.renderers import get_renderer
    from cookbook.rl.rollouts import do_group_rollout_and_filter_constant_reward
    from cookbook.tokenizers import get_tokenizer

    renderer = get_renderer("llama3", get_tokenizer(MODEL, "offline"))
    dataset = ArithmeticDataset(batch_size=16, renderer=renderer, group_size=4)
    _, sampler = _sampler(tmp_path, recorder=CallRecorder())

    async def rollouts():
        return [
            await do_group_rollout_and_filter_constant_reward(sampler, b, 8, 1.0, False)
            for b in dataset.get_batch(0)
        ]

    groups = asyncio.run(rollouts())
    rewards = [tuple(g.get_total_rewards()) for g in groups]
    values = {r for group in rewards for r in group}
    mixed = [g for g in rewards if len(set(g)) > 1]
    assert {0.0, -0.1} <= {round(v, 6) for v in values}
    assert len(mixed) >= len(rewards) // 2
