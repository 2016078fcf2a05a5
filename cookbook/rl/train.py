"""The RL training loop: ``tinker_cookbook.rl.train.main`` (0.5.8) on its default path.

Synchronous on-policy training, one optimizer step per batch (``num_substeps=1``). Per batch
``i`` (``start <= i < end``), the client calls are, in this order (what rl-golden's call layer
compares)::

    [before the first batch] save_weights_and_get_sampling_client
    [eval_every > 0 and i % eval_every == 0] sample x (test groups x group size)
    sample x (groups x group size), in (group, env) order, SamplingParams(stop, max_tokens,
        temperature), one sample per call
    [kl_penalty_coef > 0] compute_logprobs x datums (the KL reference client, created once
        with create_sampling_client(base_model, model_path) right after the training client)
    forward_backward(datums without "mask", loss_fn, loss_fn_config)
    optim_step(AdamParams(lr, beta1=0.9, beta2=0.95, eps=1e-8))
    [save_every > 0 and (i+1) % save_every == 0] save_state(f"{i+1:06d}", ttl),
        save_weights_for_sampler(same), checkpoints.jsonl row {"name", "batch": i+1, paths},
        create_sampling_client(sampler_path)
    [otherwise] save_weights_and_get_sampling_client
    [after the last batch] save_state("final", None), save_weights_for_sampler("final", None),
        row {"name": "final", "batch": end, paths}

Each batch's metrics row (``metrics.jsonl``, step ``i``) has the reference's names:
``progress/batch``, ``optim/lr``, ``progress/done_frac``, the ``test/...`` eval metrics when due,
``env/all/...`` (and ``env/<tag>/...``) trajectory metrics, ``kl_policy_base`` (with a KL
penalty), the optimizer's metrics,
``optim/kl_sample_train_v1``/``_v2`` and ``optim/entropy``. Timings go to timing.jsonl so two
runs' metrics.jsonl are byte-identical.

Resume: the last checkpoints.jsonl row with a ``state_path`` names the next batch to run; the
training client is recreated from that state with its optimizer, as in the reference.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tinker
import torch

from cookbook.exceptions import ConfigurationError
from cookbook.rl.data_processing import (
    assemble_training_data,
    compute_advantages,
    remove_constant_reward_groups,
)
from cookbook.rl.metric_util import RLTestSetEvaluator, compute_trajectory_metrics
from cookbook.rl.metrics import compute_kl_sample_train, incorporate_kl_penalty
from cookbook.rl.rollouts import do_group_rollout_and_filter_constant_reward
from cookbook.rl.types import EnvGroupBuilder, RLDataset, RLDatasetBuilder, TrajectoryGroup
from cookbook.runner.clients import create_training_client
from cookbook.supervised.checkpoints import append_checkpoint, last_checkpoint

logger = logging.getLogger(__name__)

StepCallback = Callable[[int, dict[str, Any]], None]
RL_ADAM = {"beta1": 0.9, "beta2": 0.95, "eps": 1e-8}
"""The reference's RL loop hard-codes these Adam settings."""


@dataclass
class Config:
    """The fields of the reference's ``rl.train.Config`` that its default path reads; defaults
    are the reference's. Options it has and we do not (async, stream minibatch, substeps,
    rolling saves, post-KL) are refused by the spec."""

    learning_rate: float
    dataset_builder: RLDatasetBuilder
    model_name: str
    max_tokens: int
    log_path: str
    renderer_name: str | None = None
    recipe_name: str = ""
    eval_every: int = 20
    save_every: int = 20
    load_checkpoint_path: str | None = None
    loss_fn: str = "importance_sampling"
    loss_fn_config: dict[str, Any] | None = None
    lora_rank: int = 32
    temperature: float = 1.0
    remove_constant_reward_groups: bool = False
    ttl_seconds: int | None = 604800
    max_steps: int | None = None
    kl_penalty_coef: float = 0.0
    kl_discount_factor: float = 0.0
    kl_reference_config: KLReferenceConfig | None = None


@dataclass(frozen=True)
class KLReferenceConfig:
    """The model the KL penalty compares against; weights from ``load_checkpoint_path`` if set,
    else the base model's."""

    base_model: str
    load_checkpoint_path: str | None = None


@dataclass
class TrainingResult:
    steps_run: int
    total_steps: int
    final_checkpoint: dict[str, Any] | None


def _remove_mask(datum: tinker.Datum) -> tinker.Datum:
    """The loss functions take no mask: masked tokens already have advantage 0."""
    return tinker.Datum(
        model_input=datum.model_input,
        loss_fn_inputs={k: v for k, v in datum.loss_fn_inputs.items() if k != "mask"},
    )


class RLTrainer:
    """One run of the loop; see the module docstring for its calls and metrics."""

    def __init__(
        self,
        config: Config,
        service_client: Any,
        dataset: RLDataset,
        test_dataset: RLDataset | None,
        run_log: Any,
        on_step: StepCallback | None = None,
    ):
        self.config = config
        self.service_client = service_client
        self.dataset = dataset
        self.log_dir = Path(config.log_path)
        self.run_log = run_log
        self.on_step = on_step
        self.evaluators = (
            [RLTestSetEvaluator(test_dataset, max_tokens=config.max_tokens)]
            if test_dataset is not None
            else []
        )
        n = len(dataset)
        self.total_steps = min(config.max_steps, n) if config.max_steps is not None else n
        self.client: Any = None
        self.kl_reference_client: Any = None
        self.created = time.perf_counter()

    async def run(self) -> TrainingResult:
        cfg = self.config
        resume = last_checkpoint(self.log_dir)
        start = int(resume["batch"]) if resume else 0
        # Creating clients blocks on a future: in a worker thread, not on the event loop (the
        # tinker SDK warns about, and a served run would stall on, a sync wait inside it).
        self.client = await asyncio.to_thread(
            create_training_client,
            self.service_client,
            model_name=cfg.model_name,
            lora_rank=cfg.lora_rank,
            renderer_name=cfg.renderer_name,
            resume_state_path=resume["state_path"] if resume else None,
            load_checkpoint_path=cfg.load_checkpoint_path,
        )
        self.kl_reference_client = await asyncio.to_thread(self._kl_reference_client)
        sampling_client = await self.client.save_weights_and_get_sampling_client()
        for i_batch in range(start, self.total_steps):
            sampling_client = await self._step(i_batch, sampling_client)
        final = None
        if start < self.total_steps:
            final = await self._save("final", self.total_steps, ttl_seconds=None)
        return TrainingResult(max(self.total_steps - start, 0), self.total_steps, final)

    def _kl_reference_client(self) -> Any:
        """Created once, after the training client, as the reference does."""
        cfg = self.config
        if cfg.kl_penalty_coef <= 0:
            return None
        if cfg.kl_reference_config is None:
            raise ConfigurationError(
                "kl_reference_config must be specified when kl_penalty_coef > 0"
            )
        return self.service_client.create_sampling_client(
            base_model=cfg.kl_reference_config.base_model,
            model_path=cfg.kl_reference_config.load_checkpoint_path,
        ).result()

    async def _step(self, i_batch: int, sampling_client: Any) -> Any:
        cfg = self.config
        started = time.perf_counter()
        metrics: dict[str, Any] = {
            "progress/batch": i_batch,
            "optim/lr": cfg.learning_rate,
            "progress/done_frac": (i_batch + 1) / self.total_steps,
        }
        if cfg.eval_every > 0 and i_batch % cfg.eval_every == 0:
            for evaluator in self.evaluators:
                metrics.update(await evaluator(sampling_client))
        builders_P = self.dataset.get_batch(i_batch)
        groups_P = await asyncio.gather(
            *[
                do_group_rollout_and_filter_constant_reward(
                    sampling_client,
                    builder,
                    max_tokens=cfg.max_tokens,
                    temperature=cfg.temperature,
                    do_remove_constant_reward_groups=False,
                )
                for builder in builders_P
            ]
        )
        trajectory_groups_P = [g for g in groups_P if g is not None]
        if cfg.remove_constant_reward_groups:
            trajectory_groups_P = remove_constant_reward_groups(trajectory_groups_P)
        sampling_client = await self._train(i_batch, builders_P, trajectory_groups_P, metrics)
        self.run_log.log_metrics(metrics, step=i_batch)
        now = time.perf_counter()
        timings = {"time/total": now - started, "time/since_start": now - self.created}
        self.run_log.log_timing(timings, i_batch)
        if self.on_step is not None:
            self.on_step(i_batch, metrics)
        return sampling_client

    async def _train(
        self,
        i_batch: int,
        builders_P: list[EnvGroupBuilder] | Any,
        groups_P: list[TrajectoryGroup],
        metrics: dict[str, Any],
    ) -> Any:
        cfg = self.config
        # Tags come from every builder of the batch, as in the reference (where the lists can
        # be misaligned once constant groups were removed; zip stops at the shorter).
        metrics.update(compute_trajectory_metrics(groups_P, [b.logging_tags() for b in builders_P]))
        data_D, _ = assemble_training_data(groups_P, compute_advantages(groups_P))
        if self.kl_reference_client is not None:
            metrics.update(
                await incorporate_kl_penalty(
                    data_D, self.kl_reference_client, cfg.kl_penalty_coef, cfg.kl_discount_factor
                )
            )
        adam = tinker.AdamParams(learning_rate=cfg.learning_rate, **RL_ADAM)
        fwd_bwd = self.client.forward_backward(
            [_remove_mask(d) for d in data_D], cfg.loss_fn, cfg.loss_fn_config
        )
        optim = self.client.optim_step(adam)
        fwd_bwd_result = await fwd_bwd
        optim_result = await optim
        training_logprobs_D: list[torch.Tensor] = [
            out["logprobs"].to_torch() for out in fwd_bwd_result.loss_fn_outputs
        ]
        if optim_result.metrics:
            metrics.update(optim_result.metrics)
        metrics.update(compute_kl_sample_train(data_D, training_logprobs_D))
        step = i_batch + 1
        if cfg.save_every > 0 and step % cfg.save_every == 0:
            record = await self._save(f"{step:06d}", step, ttl_seconds=cfg.ttl_seconds)
            return await self.client.create_sampling_client(record["sampler_path"])
        return await self.client.save_weights_and_get_sampling_client()

    async def _save(self, name: str, batch: int, ttl_seconds: int | None) -> dict[str, Any]:
        """Both saves submitted, then awaited; the row names the next batch to run."""
        state = self.client.save_state(name, ttl_seconds=ttl_seconds)
        sampler = self.client.save_weights_for_sampler(name, ttl_seconds=ttl_seconds)
        record = {
            "name": name,
            "batch": batch,
            "state_path": (await state).path,
            "sampler_path": (await sampler).path,
        }
        append_checkpoint(self.log_dir, record)
        return record


async def main(
    config: Config,
    service_client: Any,
    run_log: Any,
    on_step: StepCallback | None = None,
) -> TrainingResult:
    """Build the datasets, then train; the service client is given (any backend), unlike the
    reference's, which creates a ``tinker.ServiceClient`` itself."""
    dataset, test_dataset = await config.dataset_builder()
    trainer = RLTrainer(config, service_client, dataset, test_dataset, run_log, on_step)
    return await trainer.run()
