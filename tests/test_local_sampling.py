"""Several samples of one request decode together (cookbook.backends.local.sampling).

Expected values come from an independent computation: the prompt plus each sample's tokens
run through the same stand-in, rebuilt from the seed with the sampler checkpoint's adapter,
the plain transformers way (full logits, ``log_softmax``, gather); stops and limits from their
definitions applied to an unstopped run of the same request.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_local_backend import CONFIG, PROMPT, _adapter, _naive_model, _sampler
from tinker import types

SAMPLES = 4


def _teacher_forced(model: torch.nn.Module, prompt: list[int], tokens: list[int]) -> torch.Tensor:
    """Log-softmax of the model's logits at each sampled position, ``[len(tokens), vocab]``."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + tokens])).logits[0]
    return F.log_softmax(logits, dim=-1)[len(prompt) - 1 : -1]


def test_each_sample_carries_the_models_logprobs_of_its_tokens(tmp_path: Path) -> None:
    sampler, path = _sampler(tmp_path)
    model = _naive_model(_adapter(path))
    params = types.SamplingParams(max_tokens=12, temperature=0.8, top_k=40, top_p=0.95, seed=5)
    response = sampler.sample(PROMPT, SAMPLES, params).result()
    assert len({tuple(s.tokens) for s in response.sequences}) == SAMPLES
    request = response.sequences[0].sequence_id.rsplit(":", 1)[0]
    for index, sequence in enumerate(response.sequences):
        assert sequence.sequence_id == f"{request}:{index}"
        assert len(sequence.tokens) == 12 and sequence.stop_reason == "length"
        logprobs = _teacher_forced(model, PROMPT.to_ints(), sequence.tokens)
        chosen = logprobs.gather(1, torch.tensor(sequence.tokens)[:, None])[:, 0]
        np.testing.assert_allclose(sequence.logprobs, chosen.numpy(), rtol=0, atol=1e-5)
        # top_k: every drawn token is among the 40 most likely (temperature keeps the order).
        ranks = (logprobs > chosen[:, None]).sum(dim=1)
        assert int(ranks.max()) < 40


def test_many_samples_decode_in_chunks_of_decode_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cookbook.backends.local import sampling

    sampler, path = _sampler(tmp_path)
    model = _naive_model(_adapter(path))
    monkeypatch.setattr(sampling, "DECODE_ROWS", 2)
    steps: list[int] = []
    stepped = sampler._next_logits
    monkeypatch.setattr(
        sampler, "_next_logits", lambda ids, cache: steps.append(len(ids)) or stepped(ids, cache)
    )
    params = types.SamplingParams(max_tokens=5, temperature=1.0, seed=9)
    response = sampler.sample(PROMPT, 5, params).result()
    assert steps == [2] * 4 + [2] * 4 + [1] * 4
    assert [s.sequence_id.rsplit(":", 1)[1] for s in response.sequences] == list("01234")
    for sequence in response.sequences:
        logprobs = _teacher_forced(model, PROMPT.to_ints(), sequence.tokens)
        chosen = logprobs.gather(1, torch.tensor(sequence.tokens)[:, None])[:, 0]
        np.testing.assert_allclose(sequence.logprobs, chosen.numpy(), rtol=0, atol=1e-5)


def test_one_token_samples_with_prompt_logprobs(tmp_path: Path) -> None:
    sampler, path = _sampler(tmp_path)
    params = types.SamplingParams(max_tokens=1, temperature=1.0, seed=2)
    both = sampler.sample(PROMPT, SAMPLES, params, include_prompt_logprobs=True).result()
    assert both.prompt_logprobs == sampler.compute_logprobs(PROMPT).result()
    logprobs = _teacher_forced(_naive_model(_adapter(path)), PROMPT.to_ints(), [0])[0]
    for sequence in both.sequences:
        assert len(sequence.tokens) == 1
        np.testing.assert_allclose(sequence.logprobs, [float(logprobs[sequence.tokens[0]])])


def _cut(tokens: list[int], stopped: Callable[[list[int]], bool]) -> tuple[int, str]:
    """Tokens kept and the stop reason: up to and including the first token at which
    ``stopped(prefix)`` holds, else all of them."""
    hits = (n for n in range(1, len(tokens) + 1) if stopped(tokens[:n]))
    cut = next(hits, None)
    return (len(tokens), "length") if cut is None else (cut, "stop")


def _assert_stopped_rows(
    free: types.SampleResponse, stopped: types.SampleResponse, cuts: list[tuple[int, str]]
) -> None:
    """Each row of ``stopped`` is its row of ``free`` cut where its own stop fired, to the
    last bit, whichever other rows stopped earlier or later."""
    assert len(set(cuts)) >= 3, cuts  # rows really stop at different steps
    for row, got, (cut, reason) in zip(free.sequences, stopped.sequences, cuts, strict=True):
        assert got.tokens == row.tokens[:cut] and got.logprobs == row.logprobs[:cut]
        assert got.stop_reason == reason


def test_rows_stop_at_their_own_stop_token_independently_of_the_others(tmp_path: Path) -> None:
    sampler, _ = _sampler(tmp_path)
    params = types.SamplingParams(max_tokens=16, temperature=1.0, seed=3)
    free = sampler.sample(PROMPT, SAMPLES, params).result()
    assert [s.tokens for s in free.sequences] == [
        s.tokens for s in sampler.sample(PROMPT, SAMPLES, params).result().sequences
    ]
    rows = [s.tokens for s in free.sequences]
    stop = [rows[0][2], rows[1][9]]
    stopped = sampler.sample(PROMPT, SAMPLES, params.model_copy(update={"stop": stop})).result()
    cuts = [_cut(tokens, lambda prefix: prefix[-1] in stop) for tokens in rows]
    _assert_stopped_rows(free, stopped, cuts)


def test_rows_stop_at_their_own_stop_string(tmp_path: Path, llama3_tokenizer) -> None:
    sampler, _ = _sampler(tmp_path, llama3_tokenizer)
    params = types.SamplingParams(max_tokens=16, temperature=1.0, seed=4)
    free = sampler.sample(PROMPT, SAMPLES, params).result()
    rows = [s.tokens for s in free.sequences]
    stop = [llama3_tokenizer.decode(rows[0][3:5]), llama3_tokenizer.decode(rows[2][10:11])]
    assert all(stop)
    stopped = sampler.sample(PROMPT, SAMPLES, params.model_copy(update={"stop": stop})).result()

    def hit(prefix: list[int]) -> bool:
        return any(s in llama3_tokenizer.decode(prefix) for s in stop)

    _assert_stopped_rows(free, stopped, [_cut(tokens, hit) for tokens in rows])


def test_samples_end_at_the_context_length(tmp_path: Path) -> None:
    sampler, _ = _sampler(tmp_path)
    room = 3
    prompt = types.ModelInput.from_ints(list(range(CONFIG.max_position_embeddings - room)))
    params = types.SamplingParams(max_tokens=10, temperature=1.0, seed=6)
    for sequence in sampler.sample(prompt, SAMPLES, params).result().sequences:
        assert len(sequence.tokens) == room and sequence.stop_reason == "length"
