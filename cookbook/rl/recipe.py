"""Run a ``kind: rl_recipe`` spec on the shared runner (:mod:`cookbook.runner.run`): resolve the
renderer, tokenizer and data (any problem is one line, nothing written), open the run, train
with ``rl.train`` or ``rl_loop``, draw the reward curve.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from cookbook.exceptions import ConfigurationError, DatasetUnavailableError
from cookbook.logging import display
from cookbook.logging.plots import plot_reward_curve
from cookbook.parity.rl_runs import recording_rl_steps
from cookbook.recipes import rl_loop
from cookbook.recipes.math_rl.arithmetic_env import ArithmeticDatasetBuilder
from cookbook.recipes.math_rl.gsm8k_data import OFFLINE_FALLBACK_HINT, STAND_IN_NOTE, Gsm8kRows
from cookbook.recipes.math_rl.math_env import Gsm8kDatasetBuilder
from cookbook.renderers import get_renderer
from cookbook.rl import train
from cookbook.runner.run import (
    RunOptions,
    open_run,
    resolve_renderer_name,
    tokenizer_model_name,
)
from cookbook.specs.loader import field_error
from cookbook.specs.recipe import Backend
from cookbook.specs.rl import RLDatasetKind, RLLoop, RLRecipeSpec
from cookbook.supervised.checkpoints import last_checkpoint
from cookbook.tokenizers import get_tokenizer


@dataclass
class ResolvedRLData:
    builder: Any
    info: dict[str, Any]
    rows: Gsm8kRows | None = None
    stand_ins: list[str] = field(default_factory=list)


def resolve_rl_data(
    spec_path: Path, spec: RLRecipeSpec, renderer_name: str, tokenizer_model: str
) -> ResolvedRLData:
    """The spec's dataset builder, with GSM8K's rows loaded now so a missing dataset fails
    before the run directory exists, and a stand-in is known for the banner."""
    ds = spec.dataset
    if ds.builder == RLDatasetKind.ARITHMETIC:
        builder = ArithmeticDatasetBuilder(
            batch_size=ds.batch_size,
            model_name_for_tokenizer=tokenizer_model,
            renderer_name=renderer_name,
            n_batches=ds.n_batches,
            group_size=ds.group_size,
            include_fewshot=ds.include_fewshot,
        )
        info = {"builder": "arithmetic", "source": "generated (needs no data)", **ds.model_dump()}
        return ResolvedRLData(builder, info)
    if ds.local_copy is not None and not (Path(ds.local_copy) / "train.jsonl").is_file():
        raise field_error(
            spec_path, ("dataset", "local_copy"), f"no train.jsonl in {ds.local_copy}"
        )
    gsm = Gsm8kDatasetBuilder(
        batch_size=ds.batch_size,
        model_name_for_tokenizer=tokenizer_model,
        renderer_name=renderer_name,
        group_size=ds.group_size,
        seed=ds.seed,
        local_copy=ds.local_copy,
        offline_fallback=ds.offline_fallback is not None,
    )
    try:
        rows = gsm.rows()
    except DatasetUnavailableError as exc:
        raise field_error(spec_path, ("dataset",), f"{exc}; {OFFLINE_FALLBACK_HINT}") from None
    stand_ins = [STAND_IN_NOTE] if rows.is_stand_in else []
    return ResolvedRLData(gsm, {"builder": "gsm8k", **rows.describe()}, rows, stand_ins)


def train_config(
    spec: RLRecipeSpec, renderer_name: str, builder: Any, log_dir: Path
) -> train.Config:
    """The loop's config for ``spec``; tools/reference_through_server.py builds the reference's
    ``rl.train.Config`` from it, so both sides of the served parity read one mapping."""
    return train.Config(
        learning_rate=spec.learning_rate,
        dataset_builder=builder,
        model_name=spec.model_name,
        max_tokens=spec.max_tokens,
        log_path=str(log_dir),
        renderer_name=renderer_name,
        recipe_name=spec.recipe_name,
        eval_every=spec.eval_every,
        save_every=spec.save_every,
        load_checkpoint_path=spec.load_checkpoint_path,
        loss_fn=spec.loss_fn.value,
        loss_fn_config=spec.loss_fn_config,
        lora_rank=spec.lora_rank,
        temperature=spec.temperature,
        remove_constant_reward_groups=spec.remove_constant_reward_groups,
        ttl_seconds=spec.ttl_seconds,
        max_steps=spec.max_steps,
        kl_penalty_coef=spec.kl_penalty_coef,
        kl_discount_factor=spec.kl_discount_factor,
        kl_reference_config=(
            train.KLReferenceConfig(**spec.kl_reference_config.model_dump())
            if spec.kl_reference_config is not None
            else None
        ),
    )


def _loop_config(spec: RLRecipeSpec, log_dir: Path) -> rl_loop.Config:
    return rl_loop.Config(
        log_path=str(log_dir),
        model_name=spec.model_name,
        batch_size=spec.dataset.batch_size,
        group_size=spec.dataset.group_size,
        learning_rate=spec.learning_rate,
        lora_rank=spec.lora_rank,
        save_every=spec.save_every,
        max_tokens=spec.max_tokens,
        ttl_seconds=spec.ttl_seconds,
        max_steps=spec.max_steps,
    )


def _total_steps(spec: RLRecipeSpec, data: ResolvedRLData) -> int:
    ds = spec.dataset
    if spec.loop == RLLoop.RL_LOOP:
        assert data.rows is not None
        return rl_loop.total_steps(_loop_config(spec, Path()), len(data.rows.train))
    if ds.builder == RLDatasetKind.ARITHMETIC:
        n = ds.n_batches
    else:
        assert data.rows is not None
        n = -(-len(data.rows.train) // ds.batch_size)
    return min(n, spec.max_steps) if spec.max_steps is not None else n


def run_rl_recipe(
    spec_path: Path, spec: RLRecipeSpec, options: RunOptions, console: Console
) -> int:
    renderer_name, renderer_source = resolve_renderer_name(spec)
    tokenizer_model = tokenizer_model_name(spec_path, spec, options.served_by, renderer_name)
    tokenizer = get_tokenizer(tokenizer_model)
    data = resolve_rl_data(spec_path, spec, renderer_name, tokenizer_model)
    if spec.backend == Backend.LOCAL:
        # A loss the local backend refuses (stable_reinforce) is a spec error, reported
        # before the run directory exists rather than at the first forward_backward.
        from cookbook.backends.local.losses import loss_fn

        try:
            loss_fn(spec.loss_fn.value)
        except ConfigurationError as exc:
            raise field_error(spec_path, ("loss_fn",), str(exc)) from None
    run = open_run(spec_path, spec, options, console, tokenizer, data.stand_ins)
    total = _total_steps(spec, data)
    checkpoint = last_checkpoint(run.log_dir) if run.resume else None
    first_step = min(int(checkpoint["batch"]), total) if checkpoint else 0
    run.restart_from(first_step, checkpoint is not None)
    run.write_config(
        {
            "loop": spec.loop.value,
            "renderer_name": renderer_name,
            "renderer_source": renderer_source,
            "dataset": data.info,
        }
    )
    ds = spec.dataset
    resuming = f" (resuming at step {first_step})" if run.resume else ""
    run.banner(
        {
            "model": spec.model_name,
            "renderer": f"{renderer_name} (from {renderer_source})",
            "backend": spec.backend.value,
            "loop": f"{spec.loop.value}, loss {spec.loss_fn.value}",
            "dataset": f"{data.info['source']} - {ds.batch_size} groups of {ds.group_size} "
            "per batch",
            "steps": f"{total}{resuming}",
        }
    )
    shown = display.RL_LOOP if spec.loop == RLLoop.RL_LOOP else display.RL
    with run.stopping_resumably():
        with run.progress(total, first_step, shown) as progress:
            if spec.loop == RLLoop.RL_LOOP:
                assert data.rows is not None
                renderer = get_renderer(renderer_name, tokenizer)
                rl_loop.main(
                    _loop_config(spec, run.log_dir),
                    run.service_client,
                    renderer,
                    data.rows,
                    run.run_log,
                    progress.on_step,
                )
            else:
                config = train_config(spec, renderer_name, data.builder, run.log_dir)
                # rl_steps.jsonl: the step layers `cookbook-run compare` reads (parity/rl_runs.py)
                renderer = get_renderer(renderer_name, tokenizer)
                with recording_rl_steps(run.log_dir, first_step, renderer):
                    asyncio.run(
                        train.main(config, run.service_client, run.run_log, progress.on_step)
                    )
        run.finish(progress, [("reward_curve.png", plot_reward_curve)])
    return 0
