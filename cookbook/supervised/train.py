"""The supervised training loop: ``tinker_cookbook.supervised.train.main`` (0.5.8), call for call.

Per step: build the batch; run the evals due at this step on the *pre-step* weights; submit
``forward_backward(cross_entropy)`` and ``optim_step(AdamParams)``; keep up to
``submit_ahead`` steps in flight before waiting for the oldest one's results (the reference's
pipelining, which hides the service's latency); log the step's metrics when its results arrive.

The loop talks to any object with the 0.38 tinker client surface (futures with ``.result()``),
so the real SDK, the local backend and the fake all run the same code. It is synchronous: with
futures the service already overlaps the work, and no event loop is needed for that.

One deliberate divergence, declared in ``golden/recipes/DIVERGENCES.md`` and switchable with
``checkpoint_semantics: reference``: see :class:`~cookbook.specs.recipe.CheckpointSemantics`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tinker

from cookbook.data.dataset import SupervisedDataset
from cookbook.logging.ml_log import RunLog
from cookbook.runner.clients import create_training_client
from cookbook.specs.recipe import CheckpointSemantics, RecipeSpec
from cookbook.supervised.checkpoints import append_checkpoint
from cookbook.supervised.common import compute_bpb, compute_mean_nll
from cookbook.supervised.evaluators import SamplerNLLEvaluator
from cookbook.supervised.schedule import lr_multiplier
from cookbook.tokenizers import Tokenizer

StepCallback = Callable[[int, dict[str, Any]], None]
Evaluator = Callable[[Any], dict[str, float]]
"""sampling client -> metrics, as the reference's ``SamplingClientEvaluator``."""


@dataclass
class _InFlight:
    """A submitted step whose results have not been collected yet."""

    step: int
    epoch: int
    batch: int
    data: list[tinker.Datum]
    forward_backward: Any
    optim_step: Any
    metrics: dict[str, Any]
    num_tokens: int
    started: float
    saves: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ResumePoint:
    """Where a resumed run continues: the next batch to run and what it has trained so far."""

    epoch: int
    batch: int
    elapsed_tokens: int
    state_path: str


@dataclass
class TrainingResult:
    steps_run: int
    total_steps: int
    final_checkpoint: dict[str, Any] | None


class SupervisedTrainer:
    """One run of the loop over prepared datasets; see the module docstring."""

    def __init__(
        self,
        spec: RecipeSpec,
        renderer_name: str,
        service_client: Any,
        dataset: SupervisedDataset,
        test_dataset: SupervisedDataset | None,
        tokenizer: Tokenizer,
        log_dir: Path,
        on_step: StepCallback | None = None,
        evaluators: Sequence[Evaluator] = (),
    ):
        self.spec = spec
        self.renderer_name = renderer_name
        self.service_client = service_client
        self.dataset = dataset
        self.tokenizer = tokenizer
        self.log_dir = log_dir
        self.run_log = RunLog(log_dir)
        self.on_step = on_step
        self.created = time.perf_counter()
        self.n_batches = len(dataset)
        total = self.n_batches * spec.num_epochs
        self.total_steps = min(total, spec.max_steps) if spec.max_steps is not None else total
        # As the reference: every test batch is rendered once, up front.
        self.evaluators = (
            [SamplerNLLEvaluator.from_dataset(test_dataset, tokenizer=tokenizer)]
            if test_dataset is not None
            else []
        )
        # More sampling-client evaluators (the recipe's eval tasks), run at the same points.
        self.evaluators.extend(evaluators)

    # -- loop -------------------------------------------------------------------------------

    def run(self, resume: ResumePoint | None = None) -> TrainingResult:
        spec = self.spec
        start_epoch, start_batch = (resume.epoch, resume.batch) if resume else (0, 0)
        self.elapsed_tokens = resume.elapsed_tokens if resume else 0
        self.client = create_training_client(
            self.service_client,
            model_name=spec.model_name,
            lora_rank=spec.lora_rank,
            renderer_name=self.renderer_name,
            resume_state_path=resume.state_path if resume is not None else None,
            load_checkpoint_path=spec.load_checkpoint_path,
        )
        pending: deque[_InFlight] = deque()
        steps_run = 0
        for epoch in range(start_epoch, spec.num_epochs):
            self.dataset.set_epoch(seed=epoch)
            for batch in range(start_batch if epoch == start_epoch else 0, self.n_batches):
                step = epoch * self.n_batches + batch
                if step >= self.total_steps:
                    break
                pending.append(self._submit(epoch, batch, step))
                steps_run += 1
                if len(pending) >= 1 + spec.submit_ahead:
                    self._finish(pending.popleft())
        while pending:
            self._finish(pending.popleft())
        first_step = start_epoch * self.n_batches + start_batch
        final = None
        if start_epoch < spec.num_epochs and first_step < self.total_steps:
            # The final checkpoint never expires.
            final = self._record("final", spec.num_epochs, 0, self._submit_saves("final", None))
        return TrainingResult(steps_run, self.total_steps, final)

    def _submit(self, epoch: int, batch: int, step: int) -> _InFlight:
        spec = self.spec
        lr = spec.learning_rate * lr_multiplier(spec.lr_schedule, step, self.total_steps)
        metrics: dict[str, Any] = {
            "epoch": epoch,
            "progress": step / max(self.total_steps, 1),
            "learning_rate": lr,
        }
        started = time.perf_counter()
        data = self.dataset.get_batch(batch)
        if self.evaluators and spec.eval_every > 0 and step % spec.eval_every == 0:
            sampling_client = self.client.save_weights_and_get_sampling_client().result()
            for evaluator in self.evaluators:
                metrics.update(evaluator(sampling_client))
        adam = tinker.AdamParams(
            learning_rate=lr, beta1=spec.adam_beta1, beta2=spec.adam_beta2, eps=spec.adam_eps
        )
        flight = _InFlight(
            step=step,
            epoch=epoch,
            batch=batch,
            data=data,
            forward_backward=self.client.forward_backward(data, "cross_entropy"),
            optim_step=self.client.optim_step(adam),
            metrics=metrics,
            num_tokens=sum(d.model_input.length for d in data),
            started=started,
        )
        if spec.checkpoint_semantics == CheckpointSemantics.EXACT_RESUME and self._due(step):
            # Issued before the next step is submitted, so the saved state holds exactly
            # steps 0..step; the record names the batch after this one.
            flight.saves = self._submit_saves(f"{step:06d}", spec.ttl_seconds)
        return flight

    def _due(self, step: int) -> bool:
        return step > 0 and self.spec.save_every > 0 and step % self.spec.save_every == 0

    def _finish(self, flight: _InFlight) -> None:
        metrics = flight.metrics
        metrics["progress"] = min((flight.step + 1) / max(self.total_steps, 1), 1.0)
        self.elapsed_tokens += flight.num_tokens
        if self.spec.checkpoint_semantics == CheckpointSemantics.REFERENCE and self._due(
            flight.step
        ):
            # The reference: saved after the next step was submitted, recording this batch.
            name = f"{flight.step:06d}"
            saves = self._submit_saves(name, self.spec.ttl_seconds)
            self._record(name, flight.epoch, flight.batch, saves)
        fb_result = flight.forward_backward.result()
        optim_result = flight.optim_step.result()
        if optim_result.metrics:
            metrics.update(optim_result.metrics)
        logprobs = [out["logprobs"] for out in fb_result.loss_fn_outputs]
        weights = [d.loss_fn_inputs["weights"] for d in flight.data]
        targets = [d.loss_fn_inputs["target_tokens"] for d in flight.data]
        metrics.update(
            num_sequences=len(flight.data),
            num_tokens=flight.num_tokens,
            num_loss_tokens=sum(sum(w.data) for w in weights),
            train_mean_nll=compute_mean_nll(logprobs, weights),
        )
        if flight.data:
            metrics["train_mean_bpb"] = compute_bpb(logprobs, weights, targets, self.tokenizer)
        self.run_log.log_metrics(metrics, step=flight.step)
        now = time.perf_counter()
        timings = {"time/total": now - flight.started, "time/since_start": now - self.created}
        self.run_log.log_timing(timings, flight.step)
        if flight.saves:
            epoch, batch = flight.epoch, flight.batch + 1
            if batch == self.n_batches:
                epoch, batch = epoch + 1, 0
            self._record(f"{flight.step:06d}", epoch, batch, flight.saves)
        if self.on_step is not None:
            self.on_step(flight.step, metrics)

    # -- checkpoints ------------------------------------------------------------------------

    def _submit_saves(self, name: str, ttl_seconds: int | None) -> dict[str, Any]:
        return {
            "state": self.client.save_state(name, ttl_seconds=ttl_seconds),
            "sampler": self.client.save_weights_for_sampler(name, ttl_seconds=ttl_seconds),
        }

    def _record(self, name: str, epoch: int, batch: int, saves: dict[str, Any]) -> dict[str, Any]:
        """Wait for the saves, then append the reference's checkpoints.jsonl row."""
        paths = {f"{kind}_path": future.result().path for kind, future in saves.items()}
        record = {
            "name": name,
            "epoch": epoch,
            "batch": batch,
            "elapsed_tokens": self.elapsed_tokens,
            **paths,
        }
        append_checkpoint(self.log_dir, record)
        return record
