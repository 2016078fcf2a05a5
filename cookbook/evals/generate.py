"""The generate adapter: eval prompts -> renderer generation prompts -> any backend's sampling
client -> parsed replies; and logprob scoring of given replies (multiple choice).

All three backends (fake, local, the tinker SDK) return futures from ``sample`` and
``compute_logprobs``, so requests are kept ``concurrency`` deep in flight and collected in
order: against the Tinker service that overlaps the round trips (the reference gets the same
from ``asyncio.gather``); in-process backends resolve each future as it is made.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import tinker

from cookbook.exceptions import RendererError
from cookbook.renderers import Renderer, get_text_content
from cookbook.renderers.types import Message, TrainOnWhat
from cookbook.specs.evals import ChoiceScore, SamplingSpec

Progress = Callable[[int], None]
"""Called with the number of requests just completed."""


def in_flight(
    requests: Sequence[Callable[[], Any]], concurrency: int, on_done: Progress | None = None
) -> list[Any]:
    """Results of ``request()`` futures, in order, with at most ``concurrency`` outstanding."""
    results: list[Any] = []
    pending: deque[Any] = deque()

    def collect() -> None:
        results.append(pending.popleft().result())
        if on_done is not None:
            on_done(1)

    for request in requests:
        pending.append(request())
        if len(pending) >= concurrency:
            collect()
    while pending:
        collect()
    return results


@dataclass
class Generation:
    prompt_tokens: list[int]
    tokens: list[int]
    stop_reason: str
    reply: str | None
    """The assistant's text (prefill included); None when the reply could not be parsed."""
    termination: str | None
    error: str | None = None


class GenerateAdapter:
    """Samples one reply per prompt conversation and parses it with the renderer."""

    def __init__(
        self,
        renderer: Renderer,
        sampling_client: Any,
        sampling: SamplingSpec,
        seed: int,
        concurrency: int,
    ):
        self.renderer = renderer
        self.sampling_client = sampling_client
        self.concurrency = concurrency
        self.params = tinker.SamplingParams(
            max_tokens=sampling.max_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,
            seed=seed if sampling.seed is None else sampling.seed,
            stop=renderer.get_stop_sequences(),
        )

    def generate(
        self,
        conversations: Sequence[list[Message]],
        prefill: str | None = None,
        on_done: Progress | None = None,
    ) -> list[Generation]:
        prompts = [
            self.renderer.build_generation_prompt(messages, prefill=prefill)
            for messages in conversations
        ]
        requests = [
            lambda p=prompt: self.sampling_client.sample(
                prompt=p, num_samples=1, sampling_params=self.params
            )
            for prompt in prompts
        ]
        responses = in_flight(requests, self.concurrency, on_done)
        return [
            self._parse(prompt.to_ints(), response.sequences[0], prefill or "")
            for prompt, response in zip(prompts, responses, strict=True)
        ]

    def _parse(self, prompt: list[int], sequence: Any, prefill: str) -> Generation:
        tokens = list(sequence.tokens)
        try:
            message, termination = self.renderer.parse_response(tokens)
        except RendererError as exc:
            return Generation(prompt, tokens, sequence.stop_reason, None, None, str(exc))
        reply = prefill + get_text_content(message)
        return Generation(prompt, tokens, sequence.stop_reason, reply, str(termination))


def choice_logprobs(
    renderer: Renderer,
    sampling_client: Any,
    prompts: Sequence[list[Message]],
    choices: Sequence[Sequence[str]],
    score: ChoiceScore,
    concurrency: int,
    on_done: Progress | None = None,
) -> list[list[float]]:
    """Per prompt, the logprob of each choice as the assistant's reply.

    The reply is rendered the way training renders it (``build_supervised_example`` with
    LAST_ASSISTANT_MESSAGE), and the tokens it weights - the reply and its end-of-turn, not the
    prompt - are scored with ``compute_logprobs`` on the whole sequence. So a choice is judged
    exactly by what supervised training on it would optimise.
    """
    jobs: list[tuple[tinker.ModelInput, list[int]]] = []
    for messages, options in zip(prompts, choices, strict=True):
        for option in options:
            conversation = [*messages, Message(role="assistant", content=option)]
            model_input, weights = renderer.build_supervised_example(
                conversation, TrainOnWhat.LAST_ASSISTANT_MESSAGE
            )
            jobs.append((model_input, [j for j, w in enumerate(weights.tolist()) if w > 0]))
    requests = [
        lambda m=model_input: sampling_client.compute_logprobs(m) for model_input, _ in jobs
    ]
    results = in_flight(requests, concurrency, on_done)
    scores = []
    for (_, positions), logprobs in zip(jobs, results, strict=True):
        values = [float(logprobs[j]) for j in positions]
        total = sum(values)
        scores.append(total / len(values) if score == ChoiceScore.MEAN and values else total)
    out, start = [], 0
    for options in choices:
        out.append(scores[start : start + len(options)])
        start += len(options)
    return out
