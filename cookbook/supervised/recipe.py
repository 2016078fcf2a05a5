"""Run a ``kind: recipe`` spec: resolve it, check everything, then train into a run directory.

The supervised loop's part of a run: its data (and the run artifacts `compare` walks), its
trainer and its final sample. The run directory, backend, config.json, banner, progress and
curves are :mod:`cookbook.runner.run`'s, shared with the RL loops.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from cookbook.data.builders import ChatDatasetCommonConfig, ConversationFileBuilder, NoRobotsBuilder
from cookbook.data.dataset import SupervisedDataset
from cookbook.data.sources import load_no_robots, packaged_file
from cookbook.evals.attach import attached_evaluators
from cookbook.exceptions import ConfigurationError, DatasetUnavailableError
from cookbook.logging import display
from cookbook.logging.plots import plot_loss_curve
from cookbook.parity.runs import write_run_artifacts
from cookbook.runner.run import (
    RunOptions,
    open_run,
    resolve_renderer_name,
    tokenizer_model_name,
)
from cookbook.specs.loader import field_error
from cookbook.specs.recipe import ConversationSource, DatasetBuilder, RecipeSpec
from cookbook.supervised.checkpoints import last_checkpoint
from cookbook.supervised.train import ResumePoint, SupervisedTrainer
from cookbook.tokenizers import get_tokenizer

__all__ = ["RunOptions", "resolve_data", "resolve_renderer_name", "run_recipe"]


@dataclass
class ResolvedData:
    train: SupervisedDataset
    test: SupervisedDataset | None
    info: dict[str, Any]
    stand_ins: list[str] = field(default_factory=list)


def _conversation_file(
    spec_path: Path, source: ConversationSource | Any, loc: tuple[str, ...]
) -> Path:
    if source.package_file is not None:
        try:
            return packaged_file(source.package_file.distribution, source.package_file.path)
        except ConfigurationError as exc:
            raise field_error(spec_path, (*loc, "package_file"), str(exc)) from None
    path = Path(source.path)
    if not path.is_file():
        raise field_error(spec_path, (*loc, "path"), f"no such file: {path}")
    return path


def resolve_data(
    spec_path: Path, spec: RecipeSpec, renderer_name: str, tokenizer_model: str | None = None
) -> ResolvedData:
    ds = spec.dataset
    common = ChatDatasetCommonConfig(
        model_name_for_tokenizer=tokenizer_model or spec.model_name,
        renderer_name=renderer_name,
        max_length=ds.max_length,
        batch_size=ds.batch_size,
        train_on_what=ds.train_on_what,
    )
    stand_ins: list[str] = []
    if ds.builder == DatasetBuilder.CONVERSATIONS_FILE:
        path = _conversation_file(spec_path, ds, ("dataset",))
        builder: Any = ConversationFileBuilder(common, path, ds.test_size, ds.shuffle_seed)
    elif ds.path is not None:
        if not (Path(ds.path) / "train.jsonl").is_file():
            raise field_error(spec_path, ("dataset", "path"), f"no train.jsonl in {ds.path}")
        builder = NoRobotsBuilder(common, local_copy=Path(ds.path))
    else:
        try:
            builder = NoRobotsBuilder(common, rows=load_no_robots())
        except DatasetUnavailableError as exc:
            fallback = ds.offline_fallback
            if fallback is None:
                raise
            path = _conversation_file(spec_path, fallback, ("dataset", "offline_fallback"))
            builder = ConversationFileBuilder(
                common, path, fallback.test_size, fallback.shuffle_seed
            )
            declared = (
                f"{fallback.package_file.distribution}:{fallback.package_file.path}"
                if fallback.package_file is not None
                else str(path)
            )
            reason = (
                "the hub is unreachable and it is not cached" if "offline" in str(exc) else str(exc)
            )
            stand_ins.append(
                f"dataset: HuggingFaceH4/no_robots cannot be loaded ({reason}); training on "
                f"the spec's declared offline fallback {declared} instead"
            )
    train, test = builder()
    if len(train) == 0:
        raise field_error(
            spec_path,
            ("dataset", "batch_size"),
            f"the training set has fewer rows than one batch of {ds.batch_size}: no step to run",
        )
    return ResolvedData(train, test, builder.describe(), stand_ins)


def _final_sample(
    spec: RecipeSpec,
    renderer_name: str,
    tokenizer: Any,
    trainer: SupervisedTrainer,
    log_dir: Path,
    console: Console,
) -> None:
    """Sample one reply to the spec's fixed prompt from the trained weights and log it."""
    import tinker

    from cookbook.renderers import get_renderer

    sample = spec.final_sample
    renderer = get_renderer(renderer_name, tokenizer)
    prompt = renderer.build_generation_prompt([{"role": "user", "content": sample.prompt}])
    sampling_client = trainer.client.save_weights_and_get_sampling_client().result()
    params = tinker.SamplingParams(
        max_tokens=sample.max_tokens,
        temperature=sample.temperature,
        stop=renderer.get_stop_sequences(),
        seed=spec.seed,
    )
    response = sampling_client.sample(prompt=prompt, num_samples=1, sampling_params=params)
    tokens = list(response.result().sequences[0].tokens)
    message, termination = renderer.parse_response(tokens)
    record = {
        "step": trainer.total_steps,
        "prompt": sample.prompt,
        "reply": message["content"],
        "termination": str(termination),
        "tokens": tokens,
    }
    with open(log_dir / "samples.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
    console.print(f"[bold]Sample after training[/bold] ({termination}): {sample.prompt!r} -> ")
    console.print(repr(message["content"]), markup=False, highlight=False)


def _resume_point(log_dir: Path) -> ResumePoint | None:
    record = last_checkpoint(log_dir)
    if record is None:
        return None
    return ResumePoint(
        epoch=int(record.get("epoch") or 0),
        batch=int(record["batch"]),
        elapsed_tokens=int(record.get("elapsed_tokens", 0)),
        state_path=record["state_path"],
    )


def run_recipe(spec_path: Path, spec: RecipeSpec, options: RunOptions, console: Console) -> int:
    renderer_name, renderer_source = resolve_renderer_name(spec)
    tokenizer_model = tokenizer_model_name(spec_path, spec, options.served_by, renderer_name)
    tokenizer = get_tokenizer(tokenizer_model)
    data = resolve_data(spec_path, spec, renderer_name, tokenizer_model)
    evaluators = attached_evaluators(spec_path, spec, renderer_name, tokenizer)
    run = open_run(spec_path, spec, options, console, tokenizer, data.stand_ins)
    log_dir = run.log_dir
    trainer = SupervisedTrainer(
        spec,
        renderer_name,
        run.service_client,
        data.train,
        data.test,
        tokenizer,
        log_dir,
        evaluators=evaluators,
    )
    resume_point = _resume_point(log_dir) if run.resume else None
    first_step = resume_point.epoch * trainer.n_batches + resume_point.batch if resume_point else 0
    run.restart_from(first_step, resume_point is not None)
    run.write_config(
        {
            "renderer_name": renderer_name,
            "renderer_source": renderer_source,
            "dataset": data.info,
        }
    )
    if not run.resume:  # what `cookbook-run compare` walks: dataset order, renderings, datums
        from cookbook.renderers import TrainOnWhat, get_renderer

        train_on_what = spec.dataset.train_on_what or TrainOnWhat.ALL_ASSISTANT_MESSAGES
        renderer = get_renderer(renderer_name, tokenizer)
        write_run_artifacts(
            log_dir, data.train, data.test, renderer, train_on_what, spec.num_epochs
        )

    resuming = f" (resuming at step {first_step})" if run.resume else ""
    run.banner(
        {
            "model": spec.model_name,
            "renderer": f"{renderer_name} (from {renderer_source})",
            "backend": spec.backend.value,
            "dataset": f"{data.info.get('source')} - {len(data.train)} batches of "
            f"{spec.dataset.batch_size}"
            + (f", {len(data.test)} test batches" if data.test else ""),
            "steps": f"{trainer.total_steps} ({spec.num_epochs} epoch(s)){resuming}",
        }
    )
    shown_first = min(first_step, trainer.total_steps)
    with run.stopping_resumably(trainer.n_batches):
        with run.progress(trainer.total_steps, shown_first, display.SUPERVISED) as progress:
            trainer.on_step = progress.on_step
            result = trainer.run(resume_point)
        if result.steps_run and spec.final_sample is not None:
            _final_sample(spec, renderer_name, tokenizer, trainer, log_dir, console)
        run.finish(progress, [("loss_curve.png", plot_loss_curve)])
    return 0
