"""Tinker's built-in losses on the local backend: loss value and LoRA gradients against autograd.

The expected values are an independent computation: the same tiny stand-in in float64, run the
plain transformers way (full logits for one datum at a time, ``log_softmax``, gather), with each
loss's documented formula written out below (not the implementation's), differentiated by
autograd. The batch mixes datums of different lengths, prompt positions (advantage 0, sampler
logprob 0, as the cookbook's RL loop sends them), negative advantages, and importance ratios
inside and outside the clip range; checks that this is so keep the comparison from passing
vacuously. A negative control shows subtly wrong formulas fail the same comparison.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tinker import types

from cookbook.backends.local import LocalModelConfig, LocalServiceClient
from cookbook.backends.local import model as local_model
from cookbook.backends.local.losses import LOSSES, run_loss
from cookbook.backends.local.model import LoraSettings, adapter_parameters, attach_lora
from cookbook.backends.local.runtime import build_base_model
from cookbook.exceptions import ConfigurationError

VOCAB = 97
CONFIG = LocalModelConfig(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=48,
    max_position_embeddings=64,
    threads=1,
)
# log(p/q) at completion positions: ratios 0.18 .. 4.95, so PPO's 0.8/1.2, a custom 0.9/1.1 and
# CISPO's 0/4 each clip some tokens and leave others.
LOG_RATIOS = np.array([-1.7, -0.4, -0.1, 0.05, 0.15, 0.3, 1.6])
# (prompt length, completion length, seed): different lengths in one batch.
SHAPES = [(3, 4, 1), (5, 11, 2), (2, 6, 3), (4, 17, 4)]


def _model() -> torch.nn.Module:
    """The stand-in in float64 with a non-zero adapter (B is zero at init: no gradient on A)."""
    model = attach_lora(build_base_model(CONFIG, VOCAB, 0), LoraSettings(4, 8.0, 0)).double()
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, param in adapter_parameters(model).items():
            if "lora_B" in name:
                param.copy_(0.3 * torch.randn(param.shape, generator=generator))
    return model


def _naive_logprobs(model: torch.nn.Module, datum: types.Datum) -> torch.Tensor:
    tokens = torch.tensor([datum.model_input.to_ints()])
    logits = model(input_ids=tokens, use_cache=False).logits[0]
    targets = torch.tensor(datum.loss_fn_inputs["target_tokens"].data)
    return F.log_softmax(logits, dim=-1).gather(1, targets[:, None])[:, 0]


def _policy_datum(
    model: torch.nn.Module,
    tokens: np.ndarray,
    prompt: int,
    rng: np.random.Generator,
    off_policy: bool = False,
) -> types.Datum:
    """An RL datum over ``tokens``: sampling logprobs the model's own shifted by a random log
    ratio on the completion, advantages of both signs there, zero on the prompt. With
    ``off_policy`` the whole completion is far off-policy (GSPO then clips it)."""
    draft = types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1].tolist()),
        loss_fn_inputs={"target_tokens": tokens[1:].tolist()},
    )
    with torch.no_grad():
        lp = _naive_logprobs(model, draft).numpy()
    n = len(tokens) - 1
    log_ratio = np.zeros(n)
    log_ratio[prompt:] = rng.choice(LOG_RATIOS, n - prompt)
    if off_policy:
        log_ratio[prompt:] = np.abs(log_ratio[prompt:]) + 0.3
    advantages = np.zeros(n)
    advantages[prompt:] = rng.choice([-1.5, -0.5, 0.7, 2.0], n - prompt)
    inputs = {
        "target_tokens": tokens[1:].tolist(),
        "logprobs": np.where(np.arange(n) < prompt, 0.0, lp - log_ratio).astype(np.float32),
        "advantages": advantages.astype(np.float32),
    }
    return types.Datum(model_input=draft.model_input, loss_fn_inputs=inputs)


def _batch(model: torch.nn.Module, with_ratio_mask: bool = False) -> list[types.Datum]:
    data = []
    for prompt, completion, seed in SHAPES:
        rng = np.random.default_rng(seed)
        tokens = rng.integers(0, VOCAB, prompt + completion + 1)
        # one sequence far off-policy as a whole, so GSPO clips it
        datum = _policy_datum(model, tokens, prompt, rng, off_policy=seed == 4)
        inputs = dict(datum.loss_fn_inputs)
        if with_ratio_mask and seed % 2:
            mask = np.zeros(prompt + completion, dtype=np.float32)
            mask[prompt + 1 :] = 1.0  # differs from the non-zero-advantage default
            inputs["sequence_ratio_mask"] = mask
        if seed == 2:  # a completion token with zero advantage: scored, contributes nothing
            advantages = np.asarray(inputs["advantages"].data, dtype=np.float32)
            advantages[prompt] = 0.0
            inputs["advantages"] = advantages
        data.append(types.Datum(model_input=datum.model_input, loss_fn_inputs=inputs))
    return data


def _f64(datum: types.Datum, key: str) -> torch.Tensor:
    return torch.tensor(np.asarray(datum.loss_fn_inputs[key].data, dtype=np.float64))


# -- the documented formulas, written out --------------------------------------------------------


def _importance_sampling(lp, d, c):
    return -(torch.exp(lp - _f64(d, "logprobs")) * _f64(d, "advantages")).sum()


def _ppo(lp, d, c):
    ratio, adv = torch.exp(lp - _f64(d, "logprobs")), _f64(d, "advantages")
    clipped = torch.clamp(
        ratio, c.get("clip_low_threshold", 0.8), c.get("clip_high_threshold", 1.2)
    )
    return -torch.minimum(ratio * adv, clipped * adv).sum()


def _cispo(lp, d, c):
    ratio = torch.exp(lp - _f64(d, "logprobs"))
    clipped = ratio.clamp(c.get("clip_low_threshold", 0.0), c.get("clip_high_threshold", 4.0))
    return -(clipped.detach() * lp * _f64(d, "advantages")).sum()


def _dro(lp, d, c):
    q, adv = _f64(d, "logprobs"), _f64(d, "advantages")
    return -(lp * adv - 0.5 * c["beta"] * (lp - q) ** 2).sum()


def _gspo_ratio(lp, d):
    """Sequence ratio over M (the mask, else the non-zero advantages) with the token's grad."""
    key = "sequence_ratio_mask" if "sequence_ratio_mask" in d.loss_fn_inputs else "advantages"
    members = _f64(d, key) != 0
    s = torch.exp((lp - _f64(d, "logprobs"))[members].mean())
    return s.detach() * torch.exp(lp - lp.detach())


def _gspo(lp, d, c):
    ratio, adv = _gspo_ratio(lp, d), _f64(d, "advantages")
    clipped = ratio.clamp(c.get("clip_low_threshold", 0.8), c.get("clip_high_threshold", 1.2))
    return -torch.minimum(ratio * adv, clipped * adv).sum()


FORMULAS: dict[str, Callable] = {
    "importance_sampling": _importance_sampling,
    "ppo": _ppo,
    "cispo": _cispo,
    "dro": _dro,
    "gspo": _gspo,
}
CASES = [
    ("importance_sampling", None),
    ("ppo", None),
    ("ppo", {"clip_low_threshold": 0.9, "clip_high_threshold": 1.1}),
    ("cispo", None),
    ("cispo", {"clip_low_threshold": 0.8, "clip_high_threshold": 1.2}),
    ("dro", {"beta": 0.05}),
    ("gspo", None),
    ("gspo", {"clip_low_threshold": 0.95, "clip_high_threshold": 1.05}),
]


def _expected(model, data, formula, config) -> tuple[float, dict[str, torch.Tensor], list]:
    params = adapter_parameters(model)
    for p in params.values():
        p.grad = None
    logprobs = [_naive_logprobs(model, d) for d in data]
    total = sum(formula(lp, d, dict(config or {})) for lp, d in zip(logprobs, data, strict=True))
    total.backward()
    grads = {name: p.grad.clone() for name, p in params.items()}
    for p in params.values():
        p.grad = None
    return float(total.detach()), grads, [lp.detach() for lp in logprobs]


def _actual(model, data, name, config, backward=True):
    params = adapter_parameters(model)
    out = run_loss(
        model, data, name, config, vocab_size=VOCAB, full_logprobs=False, backward=backward
    )
    grads = {n: None if p.grad is None else p.grad.clone() for n, p in params.items()}
    for p in params.values():
        p.grad = None
    return out, grads


def _assert_covered(model, data, name, config) -> None:
    """The batch exercises what the formula distinguishes (not a vacuous comparison)."""
    config = dict(config or {})
    clipped = inside = 0
    for d in data:
        adv = _f64(d, "advantages")
        with torch.no_grad():
            lp = _naive_logprobs(model, d)
            ratio = _gspo_ratio(lp, d) if name == "gspo" else torch.exp(lp - _f64(d, "logprobs"))
        low = config.get("clip_low_threshold", LOSSES[name].config.get("clip_low_threshold"))
        high = config.get("clip_high_threshold", LOSSES[name].config.get("clip_high_threshold"))
        live = adv != 0
        if low is not None:
            out = (ratio < low) | (ratio > high)
            clipped += int((out & live).sum())
            inside += int((~out & live).sum())
    assert any((_f64(d, "advantages") < 0).any() for d in data)
    assert any((_f64(d, "advantages") == 0).any() for d in data)
    assert len({d.model_input.length for d in data}) == len(data)
    if name in ("ppo", "cispo", "gspo"):
        assert clipped and inside, (clipped, inside)


@pytest.fixture(params=["one chunk", "many groups and chunks"])
def chunking(request, monkeypatch):
    if request.param != "one chunk":
        monkeypatch.setattr(local_model, "LM_HEAD_CHUNK", 5)
        monkeypatch.setattr(local_model, "GROUP_TOKENS", 20)


@pytest.mark.parametrize(("name", "config"), CASES)
def test_loss_and_lora_gradients_match_the_documented_formula(name, config, chunking):
    model = _model()
    data = _batch(model, with_ratio_mask=name == "gspo" and config is not None)
    _assert_covered(model, data, name, config)
    loss, grads, logprobs = _expected(model, data, FORMULAS[name], config)
    out, actual = _actual(model, data, name, config)
    assert out.metrics["loss:sum"] == pytest.approx(loss, rel=1e-10, abs=1e-12)
    assert set(actual) == set(grads)
    for key, grad in grads.items():
        assert grad.abs().max() > 0, key
        torch.testing.assert_close(actual[key], grad, rtol=1e-9, atol=1e-12)
    for got, want in zip(out.loss_fn_outputs, logprobs, strict=True):
        np.testing.assert_allclose(got["logprobs"].data, want.numpy(), rtol=1e-6, atol=1e-6)
    forward, none = _actual(model, data, name, config, backward=False)
    assert forward.metrics["loss:sum"] == pytest.approx(loss, rel=1e-10, abs=1e-12)
    assert all(g is None for g in none.values())


@pytest.mark.parametrize("name", ["importance_sampling", "ppo"])
def test_a_batch_in_another_order_gives_bit_identical_results(name, chunking):
    """In float32, as runs train: the loss, every gradient and each datum's outputs (returned
    in the caller's order) do not depend on the order of the batch. An RL group's samples are
    assigned by the arrival order of its identical concurrent requests; without this the same
    batch moves the weights differently in the last bits and later samples can diverge."""
    model = _model().float()
    data = _batch(_model())
    order = [2, 0, 3, 1]
    out, grads = _actual(model, data, name, None)
    again, regrads = _actual(model, [data[i] for i in order], name, None)
    assert again.metrics["loss:sum"] == out.metrics["loss:sum"]
    for key, grad in grads.items():
        assert torch.equal(regrads[key], grad), key
    for position, index in enumerate(order):
        got, want = again.loss_fn_outputs[position], out.loss_fn_outputs[index]
        assert got["logprobs"].tolist() == want["logprobs"].tolist()


def test_cross_entropy_matches_its_formula_too():
    model = _model()
    data = []
    for d in _batch(model):
        weights = (_f64(d, "advantages").numpy() > 0).astype(np.float32) * 0.5
        data.append(
            types.Datum(
                model_input=d.model_input,
                loss_fn_inputs={
                    "target_tokens": d.loss_fn_inputs["target_tokens"],
                    "weights": weights,
                },
            )
        )
    loss, grads, _ = _expected(model, data, lambda lp, d, c: -(_f64(d, "weights") * lp).sum(), None)
    out, actual = _actual(model, data, "cross_entropy", None)
    assert out.metrics["loss:sum"] == pytest.approx(loss, rel=1e-10)
    for key, grad in grads.items():
        torch.testing.assert_close(actual[key], grad, rtol=1e-9, atol=1e-12)


def _ppo_max(lp, d, c):
    ratio, adv = torch.exp(lp - _f64(d, "logprobs")), _f64(d, "advantages")
    return -torch.maximum(ratio * adv, ratio.clamp(0.8, 1.2) * adv).sum()


def _cispo_not_detached(lp, d, c):
    ratio = torch.exp(lp - _f64(d, "logprobs"))
    return -(ratio.clamp(0.0, 4.0) * lp * _f64(d, "advantages")).sum()


def _gspo_through_the_mean(lp, d, c):
    members = _f64(d, "advantages") != 0
    ratio = torch.exp((lp - _f64(d, "logprobs"))[members].mean()).expand_as(lp)
    adv = _f64(d, "advantages")
    return -torch.minimum(ratio * adv, ratio.clamp(0.8, 1.2) * adv).sum()


def _dro_plus(lp, d, c):
    q, adv = _f64(d, "logprobs"), _f64(d, "advantages")
    return -(lp * adv + 0.5 * c["beta"] * (lp - q) ** 2).sum()


@pytest.mark.parametrize(
    ("name", "config", "wrong"),
    [
        ("ppo", None, _ppo_max),
        ("cispo", None, _cispo_not_detached),
        ("gspo", None, _gspo_through_the_mean),
        ("dro", {"beta": 0.05}, _dro_plus),
    ],
)
def test_negative_control_subtly_wrong_formulas_are_detected(name, config, wrong):
    model = _model()
    data = _batch(model)
    _, grads, _ = _expected(model, data, wrong, config)
    _, actual = _actual(model, data, name, config)
    assert any(not torch.allclose(actual[k], g, rtol=1e-6, atol=1e-9) for k, g in grads.items())


def test_bad_names_inputs_and_configs_say_which(tmp_path: Path):
    model = _model()
    data = _batch(model)
    no_adv = [
        types.Datum(
            model_input=data[0].model_input,
            loss_fn_inputs={k: v for k, v in data[0].loss_fn_inputs.items() if k != "advantages"},
        )
    ]
    extra = [
        types.Datum(
            model_input=data[0].model_input,
            loss_fn_inputs={
                **data[0].loss_fn_inputs,
                "mask": np.ones(data[0].model_input.length, np.float32),
            },
        )
    ]
    bad = [
        ("bogus", data, None, r"loss_fn 'bogus' is not a Tinker loss; .* importance_sampling"),
        ("stable_reinforce", data, None, "'stable_reinforce' is not implemented .* sampling time"),
        ("custom", data, None, "'custom' is not implemented .* create_custom_loss"),
        ("ppo", no_adv, None, r"datum 0: loss_fn 'ppo' needs loss_fn_inputs \['advantages'\]"),
        ("ppo", extra, None, r"datum 0: loss_fn 'ppo' does not take loss_fn_inputs \['mask'\]"),
        ("dro", data, None, "loss_fn 'dro': loss_fn_config needs 'beta'"),
        ("ppo", data, {"clip_low": 0.9}, r"'ppo': loss_fn_config key\(s\) \['clip_low'\]"),
        ("importance_sampling", data, {"beta": 1.0}, "it takes no keys"),
        ("cispo", data, {"clip_high_threshold": "4"}, "'clip_high_threshold' must be a number"),
        ("gspo", data, {"clip_low_threshold": 2.0}, "clip_low_threshold 2.0 > clip_high"),
    ]
    for name, batch, config, message in bad:
        with pytest.raises(ConfigurationError, match=message):
            run_loss(
                model, batch, name, config, vocab_size=VOCAB, full_logprobs=False, backward=True
            )
    client = (
        LocalServiceClient(tmp_path, CONFIG, 0, vocab_size=VOCAB)
        .create_lora_training_client("m", rank=4)
        .result()
    )
    with pytest.raises(ConfigurationError, match="forward_backward_custom is not implemented"):
        client.forward_backward_custom(data, lambda d, lp: (lp[0].sum(), {}))
