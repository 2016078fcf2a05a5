"""Datums sharing a prompt share one trunk pass over it (cookbook.backends.local.model): the
loss, the per-token logprobs and the LoRA gradients are those of the per-datum computation.

In float64, on a batch shaped like an RL step: two prompts of different lengths, each with
completions of different lengths (two of them identical, as two samples of a group often are),
interleaved with a datum that shares no prompt; compared with the same code with sharing
switched off and with an independent autograd computation of each documented formula.

transformers' LlamaRMSNorm computes in float32 whatever the model's dtype, so a sum of two
datums' gradients at a shared position, rounded to float32 once, differs from the two rounded
apart at ~1e-8 relative; these tests give the norm a float64 forward (same formula) so that a
tolerance of 1e-10 tests the rewriting itself.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_rl_losses import (
    CASES,
    FORMULAS,
    VOCAB,
    _actual,
    _expected,
    _model,
    _policy_datum,
)
from tinker import types

from cookbook.backends.local import model as local_model
from cookbook.digests import datum_digest


@pytest.fixture(autouse=True)
def _float64_norms(monkeypatch):
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        variance = hidden.pow(2).mean(-1, keepdim=True)
        return self.weight * (hidden * torch.rsqrt(variance + self.variance_epsilon))

    monkeypatch.setattr(LlamaRMSNorm, "forward", forward)


# (prompt seed, prompt length, completion seed, completion length)
SHAPES = [
    (1, 6, 10, 3),
    (2, 9, 20, 5),
    (1, 6, 11, 1),
    (3, 7, 30, 4),
    (2, 9, 21, 2),
    (1, 6, 10, 3),
    (2, 9, 22, 7),
    (1, 6, 12, 6),
]


def _grouped_batch(model: torch.nn.Module) -> list[types.Datum]:
    data = []
    for prompt_seed, prompt, seed, completion in SHAPES:
        rng = np.random.default_rng(seed)
        tokens = np.concatenate(
            [
                np.random.default_rng(prompt_seed).integers(0, VOCAB, prompt),
                rng.integers(0, VOCAB, completion + 1),
            ]
        )
        data.append(_policy_datum(model, tokens, prompt, rng))
    return data


def _alone(group: list) -> list[tuple[list[int], int]]:
    return [([i], item.length) for i, item in enumerate(group)]


@pytest.mark.parametrize(("name", "config"), CASES)
def test_prefix_shared_path_equals_the_per_datum_path(name, config, monkeypatch):
    model = _model()
    data = _grouped_batch(model)
    calls: list[list[int]] = []
    shared_prefix = local_model._shared_prefix
    # run_loss computes a batch in canonical (digest) order; name members by the caller's index.
    canonical = sorted(range(len(data)), key=lambda i: datum_digest(data[i]))

    def spy(model, group, members, prefix):
        calls.append(sorted(canonical[m] for m in members))
        return shared_prefix(model, group, members, prefix)

    monkeypatch.setattr(local_model, "_shared_prefix", spy)
    out, grads = _actual(model, data, name, config)
    assert sorted(calls) == [[0, 2, 5, 7], [1, 4, 6]]  # the two prompts; datum 3 runs alone

    monkeypatch.setattr(local_model, "_prefix_clusters", _alone)
    alone, alone_grads = _actual(model, data, name, config)
    loss, formula_grads, logprobs = _expected(model, data, FORMULAS[name], config)
    assert out.metrics["loss:sum"] == pytest.approx(alone.metrics["loss:sum"], rel=1e-12)
    assert out.metrics["loss:sum"] == pytest.approx(loss, rel=1e-10, abs=1e-12)
    for key, grad in formula_grads.items():
        assert grad.abs().max() > 0, key
        torch.testing.assert_close(grads[key], alone_grads[key], rtol=1e-10, atol=1e-13)
        torch.testing.assert_close(grads[key], grad, rtol=1e-9, atol=1e-12)
    for got, per_datum, want in zip(
        out.loss_fn_outputs, alone.loss_fn_outputs, logprobs, strict=True
    ):
        np.testing.assert_allclose(got["logprobs"].data, per_datum["logprobs"].data, rtol=1e-7)
        np.testing.assert_allclose(got["logprobs"].data, want.numpy(), rtol=1e-6, atol=1e-6)


def test_forward_only_shares_prefixes_too(monkeypatch):
    model = _model()
    data = _grouped_batch(model)
    shared, _ = _actual(model, data, "importance_sampling", None, backward=False)
    monkeypatch.setattr(local_model, "_prefix_clusters", _alone)
    alone, _ = _actual(model, data, "importance_sampling", None, backward=False)
    assert shared.metrics["loss:sum"] == pytest.approx(alone.metrics["loss:sum"], rel=1e-12)


def test_clusters_join_only_when_sharing_saves_trunk_tokens():
    def item(tokens: list[int]) -> local_model.Scored:
        t = torch.tensor(tokens)
        return local_model.Scored(t, t, torch.arange(len(t)), len(t))

    group = [item([5, 1, 2, 3, 4, 9]), item([5, 8, 7]), item([5, 1, 2, 3, 4, 8, 8])]
    # 0 and 2 share 5 tokens (13 -> 8 trunk tokens); 1 shares only its first token with them.
    assert local_model._prefix_clusters(group) == [([2, 0], 5), ([1], 3)]
