"""Run an eval task against a sampling client: per-example records, the score and its
confidence interval.

A task is prepared once (examples loaded and checked, NLL datums rendered) and can then be run
any number of times: by ``cookbook-run`` on one checkpoint, or by the training loop at every
eval step, on the same sampling client as the held-out NLL evaluator.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tinker

from cookbook.evals.generate import GenerateAdapter, Progress, choice_logprobs
from cookbook.evals.metrics import confidence_interval, score_reply, weighted_mean
from cookbook.evals.tasks import Example, build_examples, load_rows
from cookbook.renderers import Renderer, get_renderer
from cookbook.specs.evals import EvalSpec, MetricKind
from cookbook.supervised.common import conversation_to_datum
from cookbook.supervised.evaluators import SamplerNLLEvaluator
from cookbook.tokenizers import Tokenizer


@dataclass
class EvalTask:
    spec: EvalSpec
    renderer_name: str
    renderer: Renderer
    tokenizer: Tokenizer
    examples: list[Example]
    source: dict[str, Any]
    stand_ins: list[str] = field(default_factory=list)
    datums: list[tinker.Datum] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def requests(self) -> int:
        """How many sampler requests one run makes (the progress bar's total)."""
        if self.spec.metric.kind == MetricKind.MULTIPLE_CHOICE:
            return sum(len(e.choices or ()) for e in self.examples)
        return len(self.examples)


def prepare_task(
    spec_path: Path, spec: EvalSpec, renderer_name: str, tokenizer: Tokenizer
) -> EvalTask:
    """Load and check every example (and render NLL datums) before anything runs."""
    found = load_rows(spec_path, spec)
    examples = build_examples(spec, found)
    renderer = get_renderer(renderer_name, tokenizer)
    task = EvalTask(spec, renderer_name, renderer, tokenizer, examples, found.info, found.stand_ins)
    if spec.metric.kind == MetricKind.NLL:
        metric = spec.metric
        task.datums = [
            conversation_to_datum(e.messages, renderer, metric.max_length, metric.train_on_what)
            for e in examples
        ]
    return task


@dataclass
class TaskResult:
    name: str
    metric: MetricKind
    score_name: str
    """``accuracy`` for 0/1 metrics, ``nll`` for held-out NLL (lower is better)."""
    score: float
    ci: tuple[float, float]
    num_examples: int
    num_errors: int
    records: list[dict[str, Any]]
    extra: dict[str, float] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """The flat metrics a training run logs under ``eval/<task>/``."""
        return {
            self.score_name: self.score,
            **self.extra,
            "ci_low": self.ci[0],
            "ci_high": self.ci[1],
            "num_examples": float(self.num_examples),
            "num_errors": float(self.num_errors),
        }

    def logged(self) -> dict[str, float]:
        return {f"eval/{self.name}/{key}": value for key, value in self.metrics().items()}


class _CountingSampler:
    """Counts the compute_logprobs results a reused evaluator collects (for the progress bar),
    and answers a repeated prompt from its first future instead of asking the sampler again."""

    def __init__(self, sampling_client: Any, on_done: Progress | None):
        self._client = sampling_client
        self._on_done = on_done
        self._futures: dict[tuple[int, ...], Any] = {}

    def compute_logprobs(self, prompt: tinker.ModelInput) -> Any:
        key = tuple(prompt.to_ints())
        if key not in self._futures:
            self._futures[key] = _Counted(self._client.compute_logprobs(prompt), self._on_done)
        return self._futures[key]


class _Counted:
    def __init__(self, future: Any, on_done: Progress | None):
        self._future, self._on_done, self._value = future, on_done, None

    def result(self) -> Any:
        if self._value is None:
            self._value = self._future.result()
            if self._on_done is not None:
                self._on_done(1)
        return self._value


def _messages_json(messages: list[Any]) -> list[dict[str, Any]]:
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _run_nll(task: EvalTask, client: Any, on_done: Progress | None) -> TaskResult:
    # The reference's evaluator, unchanged, for the aggregate (nll over all weighted tokens,
    # bpb); then one evaluator per datum for the per-example records and the interval, served
    # from the same logprobs.
    sampler = _CountingSampler(client, on_done)
    aggregate = SamplerNLLEvaluator(task.datums, name="all", tokenizer=task.tokenizer)(sampler)
    per_datum = [SamplerNLLEvaluator([d], name="one")(sampler)["one/nll"] for d in task.datums]
    weights = np.array([sum(d.loss_fn_inputs["weights"].data) for d in task.datums], float)
    values = np.array([0.0 if math.isnan(v) else v for v in per_datum])
    records = [
        {
            "id": example.id,
            "prompt": _messages_json(example.messages[:-1]),
            "reply": example.messages[-1]["content"],
            "score": nll,
            "weight": float(weight),
            "tokens": datum.model_input.length + 1,
        }
        for example, datum, nll, weight in zip(
            task.examples, task.datums, per_datum, weights, strict=True
        )
    ]
    ci = confidence_interval(task.spec.confidence, values, weights, task.spec.seed)
    return TaskResult(
        task.name,
        MetricKind.NLL,
        "nll",
        aggregate["all/nll"],
        ci,
        len(records),
        0,
        records,
        extra={"bpb": aggregate["all/bpb"]},
    )


def _run_choices(task: EvalTask, client: Any, on_done: Progress | None) -> list[dict[str, Any]]:
    spec = task.spec
    scores = choice_logprobs(
        task.renderer,
        client,
        [e.messages for e in task.examples],
        [e.choices or [] for e in task.examples],
        spec.metric.choice_score,
        spec.concurrency,
        on_done,
    )
    records = []
    for example, logprobs in zip(task.examples, scores, strict=True):
        picked = int(np.argmax(logprobs))  # ties go to the first choice
        records.append(
            {
                "id": example.id,
                "prompt": _messages_json(example.messages),
                "reply": (example.choices or [])[picked],
                "answer": example.answer,
                "score": float(picked == example.answer_index),
                "choice_logprobs": logprobs,
            }
        )
    return records


def _run_generation(task: EvalTask, client: Any, on_done: Progress | None) -> list[dict[str, Any]]:
    spec = task.spec
    adapter = GenerateAdapter(task.renderer, client, spec.sampling, spec.seed, spec.concurrency)
    generations = adapter.generate(
        [e.messages for e in task.examples], spec.template.prefill, on_done
    )
    records = []
    for example, gen in zip(task.examples, generations, strict=True):
        score, extracted = (
            (0.0, None)
            if gen.reply is None
            else score_reply(spec.metric, gen.reply, example.answer)
        )
        record = {
            "id": example.id,
            "prompt": _messages_json(example.messages),
            "reply": gen.reply,
            "answer": example.answer,
            "score": score,
            "termination": gen.termination,
            "stop_reason": gen.stop_reason,
            "tokens": gen.tokens,
        }
        if extracted is not None:
            record["extracted"] = extracted
        if gen.error is not None:
            record["error"] = gen.error
        records.append(record)
    return records


def run_task(task: EvalTask, sampling_client: Any, on_done: Progress | None = None) -> TaskResult:
    """Score every example with ``sampling_client``; ``on_done(n)`` after each n requests."""
    spec = task.spec
    if spec.metric.kind == MetricKind.NLL:
        return _run_nll(task, sampling_client, on_done)
    runner: Callable[[EvalTask, Any, Progress | None], list[dict[str, Any]]] = (
        _run_choices if spec.metric.kind == MetricKind.MULTIPLE_CHOICE else _run_generation
    )
    records = runner(task, sampling_client, on_done)
    values = np.array([r["score"] for r in records], dtype=float)
    weights = np.ones_like(values)
    return TaskResult(
        task.name,
        spec.metric.kind,
        "accuracy",
        weighted_mean(values, weights),
        confidence_interval(spec.confidence, values, weights, spec.seed),
        len(records),
        sum(1 for r in records if "error" in r),
        records,
        extra={"num_correct": float(values.sum())},
    )


class TaskEvaluator:
    """A prepared task as a training-loop evaluator: ``sampling_client -> eval/<task>/...``."""

    def __init__(self, task: EvalTask):
        self.task = task

    def __call__(self, sampling_client: Any) -> dict[str, float]:
        return run_task(self.task, sampling_client).logged()
