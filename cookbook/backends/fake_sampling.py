"""The fake backend's sampling client (:mod:`cookbook.backends.fake`): scores prompts and
samples from a frozen copy of the fake model's state.

Seeded sampling (evals) cycles the prompt's tokens deterministically; unseeded sampling (the RL
completers) draws afresh on every call (:mod:`cookbook.backends.fake_rl`). Every call is
recorded by the prompt's digest, as the training calls are by their datums'.
"""

from __future__ import annotations

from dataclasses import asdict

from tinker import types

from cookbook.backends.fake_core import (
    Backend,
    FakeFuture,
    ModelState,
    SamplingClientAsyncTwins,
    fake_logprobs,
)
from cookbook.backends.fake_rl import cycle_sequence, draw_key, draw_sequence
from cookbook.digests import tokens_digest
from cookbook.exceptions import ConfigurationError

DEFAULT_MAX_TOKENS = 16
"""Sampled tokens per sequence when ``SamplingParams.max_tokens`` is None."""


class FakeSamplingClient(SamplingClientAsyncTwins):
    """Scores and samples with a frozen copy of the model state."""

    def __init__(self, backend: Backend, state: ModelState) -> None:
        self._backend = backend
        self._state = ModelState(**asdict(state))

    def get_base_model(self) -> str:
        return self._state.base_model

    def compute_logprobs(
        self, prompt: types.ModelInput, prompt_logprobs_last_n: int | None = None
    ) -> FakeFuture[list[float | None]]:
        call_index = self._backend.call("compute_logprobs", prompt=tokens_digest(prompt))
        return self._backend.future(
            call_index, self._prompt_logprobs(prompt.to_ints(), prompt_logprobs_last_n)
        )

    def _prompt_logprobs(self, tokens: list[int], last_n: int | None) -> list[float | None]:
        scored = fake_logprobs(tokens[1:], 0, self._state.applied_lr_sum).tolist()
        values: list[float | None] = [None, *scored]
        if last_n is not None:
            values[: len(values) - last_n] = [None] * (len(values) - last_n)
        return values

    def sample(
        self,
        prompt: types.ModelInput,
        num_samples: int,
        sampling_params: types.SamplingParams,
        include_prompt_logprobs: bool = False,
        topk_prompt_logprobs: int = 0,
        topk_sample_logprobs: int = 0,
        target_prompt_logprobs: types.TensorData | None = None,
        prompt_alt_tokens_k: int = 0,
        prompt_logprobs_last_n: int | None = None,
    ) -> FakeFuture[types.SampleResponse]:
        call_index = self._backend.call(
            "sample",
            prompt=tokens_digest(prompt),
            num_samples=num_samples,
            sampling_params=sampling_params.model_dump(mode="json"),
        )
        tokens = prompt.to_ints()
        if not tokens:
            raise ConfigurationError("fake sample: the prompt is empty")
        max_tokens = sampling_params.max_tokens
        limit = DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
        sequences = []
        for index in range(num_samples):
            if sampling_params.seed is None:
                key = [*draw_key(tokens, sampling_params, call_index), index]
                out, reason = draw_sequence(
                    tokens, key, limit, sampling_params.stop, self._backend.tokenizer
                )
            else:
                out, reason = cycle_sequence(tokens, sampling_params, index, limit)
            logprobs = fake_logprobs(out, len(tokens) - 1, self._state.applied_lr_sum)
            sequences.append(
                types.SampledSequence(
                    stop_reason=reason,
                    sequence_id=f"fake-{call_index}:{index}",  # distinct, as the SDK says
                    _tokens_list=out,
                    _logprobs_list=logprobs.tolist(),
                )
            )
        prompt_logprobs = (
            self._prompt_logprobs(tokens, prompt_logprobs_last_n)
            if include_prompt_logprobs
            else None
        )
        return self._backend.future(
            call_index,
            types.SampleResponse(sequences=sequences, _prompt_logprobs_list=prompt_logprobs),
        )
