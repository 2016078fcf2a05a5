"""The local CPU backend: Tinker's cross_entropy, AdamW steps, exact resume, sampling, seeding.

Expected values come from an independent computation: the same stand-in model (same base
weights and adapter, rebuilt from the seed or read from a checkpoint) run the plain
transformers way - full logits over every position, ``log_softmax``, gather - and torch's own
AdamW, or from the definitions themselves (greedy = argmax, stop = first stop token).
A tiny model (hidden 64, 2 layers, vocabulary 300) keeps the module to a few seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydantic
import pytest
import torch
import torch.nn.functional as F
from tinker import types

from cookbook.backends.local import LocalModelConfig, LocalServiceClient
from cookbook.backends.local import model as local_model
from cookbook.backends.local.model import LoraSettings, attach_lora
from cookbook.backends.local.runtime import build_base_model
from cookbook.exceptions import ConfigurationError

MODEL = "meta-llama/Llama-3.1-8B"
VOCAB = 300
RANK = 4
CONFIG = LocalModelConfig(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    max_position_embeddings=64,
    threads=1,  # tiny matrices gain nothing from more, and one thread never spins on a busy CPU
)
ADAM = types.AdamParams(learning_rate=1e-2, beta1=0.9, beta2=0.95, eps=1e-8)


def _datum(seed: int, length: int) -> types.Datum:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, VOCAB, length + 1)
    # Zero, fractional and unit weights, so a position mix-up or a dropped weight shows.
    weights = rng.choice(np.array([0.0, 0.0, 0.5, 1.0], dtype=np.float32), length)
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1].tolist()),
        loss_fn_inputs={"target_tokens": tokens[1:].tolist(), "weights": weights},
    )


BATCH = [_datum(1, 7), _datum(2, 19), _datum(3, 12), _datum(4, 30)]


def _service(state_dir: Path, seed: int = 0, **config: object) -> LocalServiceClient:
    model = LocalModelConfig.model_validate({**CONFIG.model_dump(), **config})
    return LocalServiceClient(state_dir, model, seed, vocab_size=VOCAB)


def _client(state_dir: Path, seed: int = 0, **config: object):
    return (
        _service(state_dir, seed, **config).create_lora_training_client(MODEL, rank=RANK).result()
    )


def _adapter(path: str) -> dict[str, torch.Tensor]:
    return torch.load(path.removeprefix("local://"), weights_only=True)["adapter"]


def _naive_model(adapter: dict[str, torch.Tensor] | None = None) -> torch.nn.Module:
    """The same stand-in, rebuilt from the seed, optionally with a checkpoint's adapter."""
    model = attach_lora(build_base_model(CONFIG, VOCAB, 0), LoraSettings(RANK, 32.0, 0))
    if adapter is not None:
        missing = set(adapter) - set(model.state_dict())
        assert not missing
        model.load_state_dict(adapter, strict=False)
    return model


def _naive_logprobs(model: torch.nn.Module, datum: types.Datum) -> torch.Tensor:
    tokens = torch.tensor([datum.model_input.to_ints()])
    logits = model(input_ids=tokens).logits[0]
    targets = torch.tensor(datum.loss_fn_inputs["target_tokens"].data)
    return F.log_softmax(logits, dim=-1).gather(1, targets[:, None])[:, 0]


def _weights(datum: types.Datum) -> np.ndarray:
    return np.asarray(datum.loss_fn_inputs["weights"].data)


def _logprobs(output: types.ForwardBackwardOutput) -> list[np.ndarray]:
    return [np.asarray(out["logprobs"].data) for out in output.loss_fn_outputs]


def test_cross_entropy_equals_full_logits_at_weighted_positions(tmp_path: Path) -> None:
    client = _client(tmp_path)
    for _ in range(3):  # train first: a fresh adapter (B = 0) would hide a broken LoRA path
        client.forward_backward(BATCH, "cross_entropy").result()
        client.optim_step(ADAM).result()
    out = client.forward(BATCH, "cross_entropy").result()
    model = _naive_model(_adapter(client.save_state("s").result().path))
    expected_loss = 0.0
    with torch.no_grad():
        for datum, got in zip(BATCH, _logprobs(out), strict=True):
            naive = _naive_logprobs(model, datum).numpy()
            weighted = _weights(datum) != 0
            assert weighted.any() and (~weighted).any()
            np.testing.assert_allclose(got[weighted], naive[weighted], rtol=1e-5, atol=1e-5)
            assert (got[~weighted] == 0.0).all()  # the documented deviation
            expected_loss -= float(np.dot(_weights(datum), naive))
    assert out.loss_fn_output_type == "ArrayRecord"
    assert out.metrics["loss:sum"] == pytest.approx(expected_loss, rel=1e-5)


def test_full_logprobs_scores_every_position(tmp_path: Path) -> None:
    out = _client(tmp_path, full_logprobs=True).forward(BATCH, "cross_entropy").result()
    with torch.no_grad():
        model = _naive_model()
        for datum, got in zip(BATCH, _logprobs(out), strict=True):
            np.testing.assert_allclose(got, _naive_logprobs(model, datum).numpy(), atol=1e-5)


def test_optim_step_is_torch_adamw_on_the_summed_gradient_with_clipping(tmp_path: Path) -> None:
    """eps = 1 makes Adam's first update ~ lr * g / (|g| + 1): it depends on the gradient's
    values, not just signs; a clip norm below the gradient's norm makes clipping matter."""
    adam = types.AdamParams(learning_rate=0.05, eps=1.0, weight_decay=0.1, grad_clip_norm=0.5)
    service = _service(tmp_path)
    trained = service.create_lora_training_client(MODEL, rank=RANK).result()
    trained.forward_backward(BATCH, "cross_entropy").result()
    trained.optim_step(ADAM).result()  # a non-zero adapter first
    saved = trained.save_state("start").result().path
    client = service.create_training_client_from_state(saved).result()  # fresh AdamW
    client.forward_backward(BATCH[:2], "cross_entropy").result()  # accumulates ...
    client.forward_backward(BATCH[2:], "cross_entropy").result()  # ... over two calls
    norm = client.optim_step(adam).result().metrics["local/grad_norm"]
    ours = _adapter(client.save_state("end").result().path)

    start = _adapter(saved)
    model = _naive_model(start)
    params = [p for p in model.parameters() if p.requires_grad]
    loss = -sum((torch.from_numpy(_weights(d)) * _naive_logprobs(model, d)).sum() for d in BATCH)
    loss.backward()
    naive_norm = float(torch.nn.utils.clip_grad_norm_(params, adam.grad_clip_norm))
    optimizer = torch.optim.AdamW(params, lr=0.05, betas=(0.9, 0.95), eps=1.0, weight_decay=0.1)
    optimizer.step()
    assert norm == pytest.approx(naive_norm, rel=1e-4) and norm > adam.grad_clip_norm
    naive = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    for name, value in ours.items():
        assert not torch.equal(value, start[name]), name
        torch.testing.assert_close(value, naive[name], rtol=1e-5, atol=1e-7)


def test_chunked_lm_head_and_datum_groups_change_nothing(tmp_path: Path, monkeypatch) -> None:
    """The batch is split into LM-head chunks and trunk groups only to bound memory."""

    def run(state_dir: Path) -> list:
        client = _client(state_dir)
        client.forward_backward(BATCH, "cross_entropy").result()
        client.optim_step(ADAM).result()
        out = client.forward(BATCH, "cross_entropy").result()
        return [out.metrics["loss:sum"], *_logprobs(out)]

    whole = run(tmp_path / "whole")
    monkeypatch.setattr(local_model, "LM_HEAD_CHUNK", 5)  # 5 positions per vocab projection
    monkeypatch.setattr(local_model, "GROUP_TOKENS", 20)  # every group of 1-2 datums
    chunked = run(tmp_path / "chunked")
    assert chunked[0] == pytest.approx(whole[0], rel=1e-5)
    for got, want in zip(chunked[1:], whole[1:], strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_loss_falls_on_a_repeated_batch(tmp_path: Path) -> None:
    client = _client(tmp_path)
    losses = []
    for _ in range(6):
        losses.append(client.forward_backward(BATCH, "cross_entropy").result().metrics["loss:sum"])
        client.optim_step(ADAM).result()
    assert losses[-1] < 0.8 * losses[0], losses


def test_resume_in_a_new_process_reproduces_the_next_step_exactly(tmp_path: Path) -> None:
    client = _client(tmp_path)
    for _ in range(2):
        client.forward_backward(BATCH, "cross_entropy").result()
        client.optim_step(ADAM).result()
    saved = client.save_state("000002").result().path
    assert saved == f"local://{tmp_path.resolve()}/run-0001/weights/000002.pt"
    expected = [client.forward_backward(BATCH, "cross_entropy").result()]
    client.optim_step(ADAM).result()
    expected.append(client.forward(BATCH, "cross_entropy").result())

    child = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from test_local_backend import ADAM, BATCH, _service
service = _service(Path(sys.argv[1]))
client = service.create_training_client_from_state_with_optimizer(sys.argv[2]).result()
outs = [client.forward_backward(BATCH, "cross_entropy").result()]
client.optim_step(ADAM).result()
outs.append(client.forward(BATCH, "cross_entropy").result())
print(json.dumps([[o.metrics["loss:sum"], [x["logprobs"].data for x in o.loss_fn_outputs]]
                  for o in outs] + [client.model_id]))
"""
    args = [sys.executable, "-c", child, str(tmp_path), saved, str(Path(__file__).parent)]
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    *resumed, run_id = json.loads(done.stdout)
    for (loss, logprobs), want in zip(resumed, expected, strict=True):
        assert loss == want.metrics["loss:sum"]  # bit for bit, the AdamW moments included
        assert logprobs == [x["logprobs"].data for x in want.loss_fn_outputs]
    assert run_id == "run-0002"  # a resumed client is a new run: its saves overwrite nothing


def test_weights_only_load_keeps_weights_and_restarts_the_optimizer(tmp_path: Path) -> None:
    service = _service(tmp_path)
    client = service.create_lora_training_client(MODEL, rank=RANK).result()
    for _ in range(2):
        client.forward_backward(BATCH, "cross_entropy").result()
        client.optim_step(ADAM).result()
    path = client.save_state("s").result().path
    fresh = service.create_training_client_from_state(path).result()
    resumed = service.create_training_client_from_state_with_optimizer(path).result()
    assert (fresh.optim_steps, resumed.optim_steps) == (0, 2)
    forward = [
        c.forward(BATCH, "cross_entropy").result().metrics["loss:sum"] for c in (fresh, resumed)
    ]
    assert forward[0] == forward[1]
    for c in (fresh, resumed):
        c.forward_backward(BATCH, "cross_entropy").result()
        c.optim_step(ADAM).result()
    after = [
        c.forward(BATCH, "cross_entropy").result().metrics["loss:sum"] for c in (fresh, resumed)
    ]
    assert after[0] != after[1]  # fresh Adam moments take a different step


def test_same_seed_same_results_other_seed_other_model(tmp_path: Path) -> None:
    def run(state_dir: Path, seed: int) -> list:
        client = _client(state_dir, seed)
        results = []
        for _ in range(2):
            out = client.forward_backward(BATCH, "cross_entropy").result()
            client.optim_step(ADAM).result()
            results.append([out.metrics["loss:sum"], [x.tolist() for x in _logprobs(out)]])
        sampler = client.save_weights_and_get_sampling_client().result()
        params = types.SamplingParams(max_tokens=6, temperature=1.0)  # seed None: derived
        results.append(sampler.sample(types.ModelInput.from_ints([1, 2, 3]), 2, params).result())
        return results

    first, second = run(tmp_path / "a", 0), run(tmp_path / "b", 0)
    assert first[:2] == second[:2]
    assert [s.tokens for s in first[2].sequences] == [s.tokens for s in second[2].sequences]
    assert run(tmp_path / "c", 1)[:2] != first[:2]


def _sampler(tmp_path: Path, tokenizer: object = None):
    """A sampling client on a trained adapter, and the sampler checkpoint of that adapter."""
    service = LocalServiceClient(tmp_path, CONFIG, 0, tokenizer=tokenizer, vocab_size=VOCAB)
    client = service.create_lora_training_client(MODEL, rank=RANK).result()
    client.forward_backward(BATCH, "cross_entropy").result()
    client.optim_step(ADAM).result()
    path = client.save_weights_for_sampler("s").result().path
    return client.save_weights_and_get_sampling_client().result(), path


PROMPT = types.ModelInput.from_ints([5, 17, 42, 7])
GREEDY = types.SamplingParams(max_tokens=8, temperature=0.0)


def test_greedy_sampling_is_the_argmax_with_the_models_logprobs(tmp_path: Path) -> None:
    sampler, path = _sampler(tmp_path)
    sequence = sampler.sample(PROMPT, 1, GREEDY).result().sequences[0]
    assert len(sequence.tokens) == 8 and sequence.stop_reason == "length"
    full = torch.tensor([PROMPT.to_ints() + sequence.tokens])
    with torch.no_grad():
        logits = _naive_model(_adapter(path))(input_ids=full).logits[0]
    logprobs = F.log_softmax(logits, dim=-1)[PROMPT.length - 1 : -1]
    assert sequence.tokens == logprobs.argmax(dim=-1).tolist()
    chosen = logprobs.gather(1, torch.tensor(sequence.tokens)[:, None])[:, 0]
    np.testing.assert_allclose(sequence.logprobs, chosen.numpy(), atol=1e-5)
    scored = sampler.compute_logprobs(types.ModelInput.from_ints(full[0].tolist())).result()
    assert scored[0] is None
    np.testing.assert_allclose(scored[PROMPT.length :], chosen.numpy(), atol=1e-5)
    # top_k=1 and a tiny top_p leave only the argmax token, whatever the temperature.
    for params in (
        types.SamplingParams(max_tokens=8, temperature=1.5, top_k=1, seed=3),
        types.SamplingParams(max_tokens=8, temperature=1.5, top_p=1e-6, seed=3),
    ):
        assert sampler.sample(PROMPT, 1, params).result().sequences[0].tokens == sequence.tokens


def test_one_token_sample_with_prompt_logprobs_runs_one_forward_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """How the SDK sends compute_logprobs (so how cookbook-serve receives it): scored and
    sampled from one pass, with the scores of compute_logprobs and the token of a plain
    one-token sample."""
    sampler, _ = _sampler(tmp_path)
    one = types.SamplingParams(max_tokens=1, temperature=0.0)
    alone = sampler.sample(PROMPT, 1, one).result().sequences[0]
    scores = sampler.compute_logprobs(PROMPT).result()
    passes: list[int] = []
    counted = sampler._logits
    monkeypatch.setattr(sampler, "_logits", lambda *a, **k: passes.append(1) or counted(*a, **k))
    both = sampler.sample(PROMPT, 1, one, include_prompt_logprobs=True).result()
    assert len(passes) == 1
    assert both.prompt_logprobs == scores
    assert both.sequences[0].tokens == alone.tokens
    np.testing.assert_allclose(both.sequences[0].logprobs, alone.logprobs, atol=1e-5)


def test_requests_for_one_prompt_share_its_pass_and_match_a_fresh_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The RL loop sends one request per sample: a group's requests reuse the prompt's pass
    and sample exactly what a client that never saw the prompt samples."""
    sampler, path = _sampler(tmp_path / "cached")
    service = LocalServiceClient(tmp_path / "fresh", CONFIG, 0, vocab_size=VOCAB)
    other = types.ModelInput.from_ints([9, 3])
    params = [types.SamplingParams(max_tokens=4, temperature=1.0, seed=s) for s in (1, 2, 3)]
    passes: list[int] = []
    counted = sampler._logits
    monkeypatch.setattr(
        sampler, "_logits", lambda ids, **k: passes.append(ids.shape[1]) or counted(ids, **k)
    )
    requests = [(PROMPT, params[0]), (PROMPT, params[1]), (other, params[0]), (PROMPT, params[2])]
    got = [sampler.sample(p, 1, sp).result().sequences[0] for p, sp in requests]
    assert passes.count(PROMPT.length) == 1 and passes.count(other.length) == 1
    for (prompt, sp), sequence in zip(requests, got, strict=True):
        fresh = service.create_sampling_client(model_path=path).result()
        alone = fresh.sample(prompt, 1, sp).result().sequences[0]
        assert (sequence.tokens, sequence.logprobs) == (alone.tokens, alone.logprobs)


def _reference_pick(
    logits: torch.Tensor, params: types.SamplingParams, generator: torch.Generator
) -> tuple[int, float]:
    """The documented token choice for one sample (vocabulary-sized ``logits``): greedy at
    temperature 0, else temperature, top-k, top-p, then ``torch.multinomial`` with the
    sample's generator; the logprob is the unfiltered temperature-1 one."""
    logprobs = torch.log_softmax(logits, dim=-1)
    if params.temperature == 0:
        token = int(torch.argmax(logits))
        return token, float(logprobs[token])
    scores = logits / params.temperature
    if 0 < params.top_k < len(scores):
        scores = scores.masked_fill(
            scores < torch.topk(scores, params.top_k).values[-1], -torch.inf
        )
    if params.top_p < 1:
        ordered, order = torch.sort(scores, descending=True)
        probs = torch.softmax(ordered, dim=-1)
        drop = (torch.cumsum(probs, dim=-1) - probs) >= params.top_p
        scores = scores.index_fill(0, order[drop], -torch.inf)
    token = int(torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=generator))
    return token, float(logprobs[token])


def _per_sample_decoding(
    model: torch.nn.Module, params: types.SamplingParams, seed: int, count: int
) -> list[tuple[list[int], list[float]]]:
    """The plain loop, written out with transformers: per sample, its own cache, prompt pass
    and seeded generator, one new token a step through the model's own head."""
    from transformers import DynamicCache

    from cookbook.backends.local import sampling

    results = []
    for index in range(count):
        generator = torch.Generator().manual_seed(sampling._derive_seed(seed, index))
        cache, ids, tokens, logprobs = DynamicCache(), torch.tensor([PROMPT.to_ints()]), [], []
        while len(tokens) < params.max_tokens:
            with torch.no_grad():
                logits = model(
                    input_ids=ids, use_cache=True, **{local_model.cache_keyword(): cache}
                ).logits
            token, logprob = _reference_pick(logits[0, -1], params, generator)
            tokens.append(token)
            logprobs.append(logprob)
            ids = torch.tensor([[token]])
        results.append((tokens, logprobs))
    return results


def test_one_sample_is_exactly_the_per_sample_loop(tmp_path: Path) -> None:
    """A single-sample request (how the RL loop samples) decodes through the model's own head,
    so its tokens and logprobs are those of the plain loop to the last bit."""
    sampler, path = _sampler(tmp_path)
    model = _naive_model(_adapter(path))
    for params in (
        types.SamplingParams(max_tokens=10, temperature=0.9, top_k=50, seed=11),
        types.SamplingParams(max_tokens=10, temperature=1.0, top_p=0.9, seed=12),
        types.SamplingParams(max_tokens=10, temperature=1.0, seed=13),
    ):
        got = sampler.sample(PROMPT, 1, params).result().sequences[0]
        ((tokens, logprobs),) = _per_sample_decoding(model, params, params.seed, 1)
        assert (got.tokens, got.logprobs) == (tokens, logprobs)


def test_samples_share_one_prompt_pass_and_decode_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The prompt runs once per request; the samples then take one batched step per token and
    draw what the per-sample loop draws (their logits agree to float32 rounding)."""
    sampler, path = _sampler(tmp_path)
    params = types.SamplingParams(max_tokens=10, temperature=0.9, top_k=50, seed=11)
    passes: list[int] = []
    counted = sampler._logits
    monkeypatch.setattr(
        sampler, "_logits", lambda ids, **k: passes.append(ids.shape[1]) or counted(ids, **k)
    )
    steps: list[tuple[int, ...]] = []
    stepped = sampler._next_logits
    monkeypatch.setattr(
        sampler, "_next_logits", lambda ids, cache: steps.append(ids.shape) or stepped(ids, cache)
    )
    got = sampler.sample(PROMPT, 3, params).result().sequences
    assert passes == [PROMPT.length] and steps == [(3, 1)] * 9
    expected = _per_sample_decoding(_naive_model(_adapter(path)), params, 11, 3)
    for sequence, (tokens, logprobs) in zip(got, expected, strict=True):
        assert sequence.tokens == tokens
        np.testing.assert_allclose(sequence.logprobs, logprobs, rtol=1e-5, atol=1e-6)


def test_seeded_sampling_is_reproducible_and_stops_at_a_stop_token(tmp_path: Path) -> None:
    sampler, _ = _sampler(tmp_path)
    params = types.SamplingParams(max_tokens=12, temperature=1.0, seed=7)
    first = sampler.sample(PROMPT, 3, params).result()
    again = sampler.sample(PROMPT, 3, params).result()
    tokens = [s.tokens for s in first.sequences]
    assert tokens == [s.tokens for s in again.sequences]
    assert len({tuple(t) for t in tokens}) == 3  # each sample has its own stream
    other = sampler.sample(PROMPT, 3, params.model_copy(update={"seed": 8})).result()
    assert [s.tokens for s in other.sequences] != tokens
    ids = [s.sequence_id for r in (first, again, other) for s in r.sequences]
    assert len(set(ids)) == len(ids)  # distinct per sequence, as the SDK's SampledSequence says

    stop_token = tokens[0][4]
    cut = tokens[0].index(stop_token) + 1
    stopped = sampler.sample(PROMPT, 1, params.model_copy(update={"stop": [stop_token]})).result()
    assert stopped.sequences[0].tokens == tokens[0][:cut]
    assert stopped.sequences[0].stop_reason == "stop"


def test_string_stop_sequences_need_and_use_the_tokenizer(tmp_path: Path, llama3_tokenizer) -> None:
    with pytest.raises(ConfigurationError, match="tokenizer"):
        _sampler(tmp_path / "a")[0].sample(PROMPT, 1, GREEDY.model_copy(update={"stop": ["x"]}))
    sampler, _ = _sampler(tmp_path / "b", llama3_tokenizer)
    tokens = sampler.sample(PROMPT, 1, GREEDY).result().sequences[0].tokens
    text = llama3_tokenizer.decode(tokens)
    stop = llama3_tokenizer.decode(tokens[3:5])
    assert stop and stop in text
    # Stops after the first token whose decoded prefix contains the stop string.
    cut = next(n for n in range(1, 9) if stop in llama3_tokenizer.decode(tokens[:n]))
    got = sampler.sample(PROMPT, 1, GREEDY.model_copy(update={"stop": stop})).result()
    assert got.sequences[0].tokens == tokens[:cut] and got.sequences[0].stop_reason == "stop"


def test_sampler_checkpoint_round_trip(tmp_path: Path) -> None:
    service = _service(tmp_path)
    client = service.create_lora_training_client(MODEL, rank=RANK).result()
    client.forward_backward(BATCH, "cross_entropy").result()
    client.optim_step(ADAM).result()
    path = client.save_weights_for_sampler("s").result().path
    assert path.endswith("/run-0001/sampler_weights/s.pt")
    live = client.save_weights_and_get_sampling_client().result()
    client.forward_backward(BATCH, "cross_entropy").result()
    client.optim_step(ADAM).result()  # later training changes neither snapshot nor file
    want = live.compute_logprobs(PROMPT).result()
    for sampler in (
        service.create_sampling_client(model_path=path).result(),
        client.create_sampling_client(path).result(),
    ):
        assert sampler.compute_logprobs(PROMPT).result() == want
    base = service.create_sampling_client(base_model=MODEL).result()
    assert base.compute_logprobs(PROMPT).result() != want


def _bad_datum(tokens: list[int], targets: list[int]) -> types.Datum:
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens),
        loss_fn_inputs={"target_tokens": targets, "weights": [1.0] * len(targets)},
    )


def test_bad_calls_raise_configuration_errors(tmp_path: Path) -> None:
    service = _service(tmp_path)
    client = service.create_lora_training_client(MODEL, rank=RANK).result()
    state = client.save_state("s").result().path
    sampler = client.save_weights_for_sampler("s").result().path
    bad = [
        (
            lambda: client.forward_backward(BATCH, "ppo"),
            r"datum 0: loss_fn 'ppo' needs loss_fn_inputs \['logprobs', 'advantages'\]",
        ),
        (
            lambda: client.forward([_bad_datum([1, 2], [1, 2, 3])], "cross_entropy"),
            "datum 0: target_tokens has 3 entries, model_input has 2 tokens",
        ),
        (
            lambda: client.forward([_bad_datum([1, VOCAB], [1, 2])], "cross_entropy"),
            f"datum 0 model_input: token id {VOCAB} is outside the vocabulary",
        ),
        (lambda: client.save_state("../escape"), "checkpoint name '../escape'"),
        (lambda: service.create_training_client_from_state(sampler), "is a sampler checkpoint"),
        (lambda: client.create_sampling_client(state), "is a state checkpoint"),
        (lambda: service.create_sampling_client("tinker://r/weights/s"), "not a local checkpoint"),
        (lambda: service.create_sampling_client(state + "x"), "no such local checkpoint"),
        (
            lambda: _service(tmp_path, seed=1).create_training_client_from_state(state),
            r"another local stand-in model \(differs in base_fingerprint, seed\)",
        ),
    ]
    for call, message in bad:
        with pytest.raises(ConfigurationError, match=message):
            call()


def test_config_validation(tmp_path: Path) -> None:
    with pytest.raises(pydantic.ValidationError, match="multiple of num_attention_heads"):
        LocalModelConfig(hidden_size=65)
    with pytest.raises(pydantic.ValidationError, match="extra"):
        LocalModelConfig(hidden=64)
    with pytest.raises(pydantic.ValidationError, match="own architecture; remove hidden_size"):
        LocalModelConfig(kind="smollm2_gguf", hidden_size=64)
    smollm2 = LocalModelConfig(kind="smollm2_gguf")
    with pytest.raises(ConfigurationError, match="smollm2_gguf needs its own tokenizer"):
        LocalServiceClient(tmp_path, smollm2, vocab_size=VOCAB)


def test_importing_the_package_does_not_import_torch() -> None:
    code = "import sys, cookbook.backends.local; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
