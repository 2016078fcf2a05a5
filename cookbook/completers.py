"""Token-level policies (``tinker_cookbook.completers``): what RL rollouts sample through.

Only the token completer is mirrored; the message-level completer belongs to the evals slice,
which samples through its own generate adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

import tinker

StopCondition: TypeAlias = list[str] | list[int]


@dataclass
class TokensWithLogprobs:
    """A sampled sequence; ``maybe_logprobs`` is None when the sampler did not return them."""

    tokens: list[int]
    maybe_logprobs: list[float] | None
    stop_reason: tinker.StopReason = "stop"

    @property
    def logprobs(self) -> list[float]:
        if self.maybe_logprobs is None:
            raise ValueError("Logprobs are not available")
        return self.maybe_logprobs


class TokenCompleter:
    """Generates tokens from a prompt; RL works on tokens so its policies are these."""

    async def __call__(
        self,
        model_input: tinker.ModelInput,
        stop: StopCondition,
        *,
        max_tokens: int | None = None,
    ) -> TokensWithLogprobs:
        raise NotImplementedError


@dataclass
class TinkerTokenCompleter(TokenCompleter):
    """One sample per call from a sampling client, as the reference's RL rollouts issue them.

    The call is ``sample(prompt=..., num_samples=1, sampling_params=SamplingParams(
    stop=stop, max_tokens=..., temperature=self.temperature))`` with ``max_tokens`` the least of
    the completer's, the call's and (with ``context_window``) the room left after the prompt;
    parity of the call sequence depends on these exact arguments.
    """

    sampling_client: tinker.SamplingClient
    max_tokens: int
    temperature: float = 1.0
    context_window: int | None = None

    async def __call__(
        self,
        model_input: tinker.ModelInput,
        stop: StopCondition,
        *,
        max_tokens: int | None = None,
    ) -> TokensWithLogprobs:
        effective_max = self.max_tokens if max_tokens is None else min(self.max_tokens, max_tokens)
        if self.context_window is not None:
            effective_max = min(effective_max, self.context_window - model_input.length)
            if effective_max <= 0:
                raise ValueError(
                    f"Prompt length ({model_input.length}) exceeds context window "
                    f"({self.context_window}). No room for generation."
                )
        response = await self.sampling_client.sample(
            prompt=model_input,
            num_samples=1,
            sampling_params=tinker.SamplingParams(
                stop=stop, max_tokens=effective_max, temperature=self.temperature
            ),
        )
        sequence = response.sequences[0]
        if sequence.logprobs is None:
            raise ValueError("The sampler returned no logprobs; RL training needs them")
        return TokensWithLogprobs(
            tokens=sequence.tokens,
            maybe_logprobs=sequence.logprobs,
            stop_reason=sequence.stop_reason,
        )
