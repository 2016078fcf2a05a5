"""Run a ``kind: recipe`` spec: resolve it, check everything, then train into a run directory.

Order matters for the "bad input writes nothing" rule: the renderer, tokenizer, datasets and
backend are all resolved (and any problem reported as one line) *before* the run directory is
created or touched.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from cookbook.backends.local.config import LocalModelConfig
from cookbook.data.builders import ChatDatasetCommonConfig, ConversationFileBuilder, NoRobotsBuilder
from cookbook.data.dataset import SupervisedDataset
from cookbook.data.sources import load_no_robots, packaged_file
from cookbook.evals.attach import attached_evaluators
from cookbook.exceptions import (
    BackendError,
    ConfigurationError,
    DatasetUnavailableError,
    RunInterrupted,
)
from cookbook.logging import display
from cookbook.logging.ml_log import RunLog
from cookbook.logging.plots import plot_loss_curve
from cookbook.parity.runs import write_run_artifacts
from cookbook.specs.loader import field_error
from cookbook.specs.recipe import Backend, ConversationSource, DatasetBuilder, RecipeSpec
from cookbook.supervised.checkpoints import CHECKPOINTS_FILE, last_checkpoint
from cookbook.supervised.train import ResumePoint, SupervisedTrainer
from cookbook.tokenizers import get_tokenizer, provenance
from cookbook.versions import package_versions

VERSIONED_PACKAGES = ("cookbook", "tinker", "transformers", "tokenizers", "numpy", "torch")


@dataclass
class RunOptions:
    log_dir: Path | None = None
    resume: bool = False
    overwrite: bool = False
    overrides: tuple[str, ...] = ()
    served_by: dict[str, Any] | None = None
    """What a cookbook-serve answering a ``backend: tinker`` run said of itself (healthz)."""


@dataclass
class ResolvedData:
    train: SupervisedDataset
    test: SupervisedDataset | None
    info: dict[str, Any]
    stand_ins: list[str] = field(default_factory=list)


def resolve_renderer_name(spec: RecipeSpec) -> tuple[str, str]:
    """The renderer and where it came from: the spec, or the reference's model table."""
    if spec.renderer_name:
        return spec.renderer_name, "spec"
    from cookbook.model_info import get_recommended_renderer_name

    try:
        return get_recommended_renderer_name(spec.model_name), "model_info"
    except (KeyError, ValueError) as exc:
        raise ConfigurationError(
            f"no recommended renderer for {spec.model_name!r} ({exc}); set renderer_name"
        ) from None


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


def resolve_data(spec_path: Path, spec: RecipeSpec, renderer_name: str) -> ResolvedData:
    ds = spec.dataset
    common = ChatDatasetCommonConfig(
        model_name_for_tokenizer=spec.model_name,
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


def make_service_client(
    spec_path: Path,
    spec: RecipeSpec,
    log_dir: Path,
    tokenizer: Any,
    served_by: dict[str, Any] | None = None,
) -> Any:
    """The client factory for the spec's backend; fails before anything is written."""
    match spec.backend:
        case Backend.FAKE:
            from cookbook.backends.fake import FakeServiceClient

            return FakeServiceClient(state_dir=log_dir / "fake_state")
        case Backend.TINKER:
            # Key check, bounded connectivity probe, retries, record/replay (spec.tinker).
            from cookbook.backends.tinker import make_tinker_service_client

            return make_tinker_service_client(spec_path, spec, served_by)
        case Backend.LOCAL:
            from cookbook.backends.local.service import LocalServiceClient

            return LocalServiceClient(
                state_dir=log_dir / "local_state",
                model=spec.local.model,
                seed=spec.seed,
                tokenizer=tokenizer,
            )


def local_engine_notes(spec: RecipeSpec, served_by: dict[str, Any] | None) -> list[str]:
    """What the banner and config.json say when the local stand-in, not the spec's model, is
    trained: in process (``backend: local``) or by the cookbook-serve answering the run."""
    if spec.backend != Backend.LOCAL and served_by is None:
        return []
    model, where = spec.local.model, "the local backend"
    notes = []
    if served_by is not None:
        where = f"cookbook-serve at {served_by['url']}"
        models = served_by.get("models") or {}
        served = LocalModelConfig.model_validate(models.get(spec.model_name, models.get("*", {})))
        if served != model or served_by.get("seed") != spec.seed:
            notes.append(
                f"cookbook-serve's stand-in (seed {served_by.get('seed')}) is not this spec's "
                f"local.model with seed {spec.seed}: metrics will differ from a backend=local "
                "run (start it with --seed / --model-map to match)"
            )
        model = served
    notes.insert(
        0,
        f"model: {spec.model_name} is not trained here; {where} trains the stand-in "
        f"{model.kind} ({model.hidden_size} hidden, {model.num_hidden_layers} layers, randomly "
        "initialised) with the real tokenizer",
    )
    if spec.local.overlay:
        shown = ", ".join(f"{k}={v}" for k, v in spec.local.overlay.items())
        notes.append(f"local profile overlay: {shown} (--set overrides it)")
    return notes


def prepare_log_dir(log_dir: Path, options: RunOptions, console: Console) -> bool:
    """Decide whether to resume; never clobber an existing run without being told to."""
    if not log_dir.exists() or not any(log_dir.iterdir()):
        return False
    if options.resume:
        return True
    if options.overwrite:
        shutil.rmtree(log_dir)
        return False
    if sys.stdin.isatty() and console.is_terminal:
        answer = console.input(
            Text(f"{log_dir} already holds a run. Resume, overwrite or abort? (r/o/a) ")
        )
        if answer.strip().lower().startswith("r"):
            return True
        if answer.strip().lower().startswith("o"):
            shutil.rmtree(log_dir)
            return False
        raise ConfigurationError(f"{log_dir}: left untouched")
    raise ConfigurationError(
        f"log dir {log_dir} already holds a run; pass --resume to continue it or --overwrite "
        "to delete it and start over"
    )


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


def resume_note(log_dir: Path, n_batches: int) -> str:
    """Where a stopped run can go on from, and the command that does it."""
    record = last_checkpoint(log_dir)
    if record is None:
        return f"no checkpoint in {log_dir} yet: --log-dir {log_dir} --resume starts it over"
    step = int(record.get("epoch") or 0) * n_batches + int(record["batch"])
    return (
        f"last checkpoint {record['name']} in {log_dir}: rerun with --log-dir {log_dir} "
        f"--resume to continue at step {step}"
    )


def run_recipe(spec_path: Path, spec: RecipeSpec, options: RunOptions, console: Console) -> int:
    renderer_name, renderer_source = resolve_renderer_name(spec)
    tokenizer = get_tokenizer(spec.model_name)
    data = resolve_data(spec_path, spec, renderer_name)
    evaluators = attached_evaluators(spec_path, spec, renderer_name, tokenizer)
    log_dir = Path(options.log_dir or spec.log_path or Path("runs") / spec.name)
    service_client = make_service_client(spec_path, spec, log_dir, tokenizer, options.served_by)
    resume = prepare_log_dir(log_dir, options, console)
    log_dir.mkdir(parents=True, exist_ok=True)

    tok = provenance(tokenizer)
    stand_ins = list(data.stand_ins)
    stand_ins += local_engine_notes(spec, options.served_by)
    if not tok.source.startswith("hub:"):
        stand_ins.append(f"tokenizer: {tok.source} ({tok.note or 'offline build'})")
    config = {
        "spec": spec.model_dump(mode="json"),
        "spec_file": str(spec_path),
        "overrides": list(options.overrides),
        "renderer_name": renderer_name,
        "renderer_source": renderer_source,
        "dataset": data.info,
        "tokenizer": tok.to_json(),
        "stand_ins": stand_ins,
        "versions": package_versions(VERSIONED_PACKAGES),
    }
    if spec.backend == Backend.LOCAL:
        # Which stand-in exactly: parameter count, seed and a fingerprint of its base weights.
        config["local_model"] = service_client.describe()
    if options.served_by is not None:
        config["served_by"] = options.served_by
    run_log = RunLog(log_dir)
    trainer = SupervisedTrainer(
        spec,
        renderer_name,
        service_client,
        data.train,
        data.test,
        tokenizer,
        log_dir,
        evaluators=evaluators,
    )
    resume_point = _resume_point(log_dir) if resume else None
    first_step = resume_point.epoch * trainer.n_batches + resume_point.batch if resume_point else 0
    if resume:
        # Steps past the checkpoint are run (and logged) again; a run with no checkpoint
        # yet starts over.
        run_log.truncate_after(first_step - 1)
        if resume_point is None:
            (log_dir / CHECKPOINTS_FILE).unlink(missing_ok=True)
    run_log.write_config(config)
    if not resume:  # what `cookbook-run compare` walks: dataset order, renderings, datums
        from cookbook.renderers import TrainOnWhat, get_renderer

        train_on_what = spec.dataset.train_on_what or TrainOnWhat.ALL_ASSISTANT_MESSAGES
        renderer = get_renderer(renderer_name, tokenizer)
        write_run_artifacts(
            log_dir, data.train, data.test, renderer, train_on_what, spec.num_epochs
        )

    facts = {
        "model": spec.model_name,
        "renderer": f"{renderer_name} (from {renderer_source})",
        "backend": spec.backend.value,
        "dataset": f"{data.info.get('source')} - {len(data.train)} batches of "
        f"{spec.dataset.batch_size}" + (f", {len(data.test)} test batches" if data.test else ""),
        "steps": f"{trainer.total_steps} ({spec.num_epochs} epoch(s))",
        "run dir": str(log_dir) + (f" (resuming at step {first_step})" if resume else ""),
    }
    display.banner(console, f"cookbook-run {spec.name}", facts, stand_ins)
    shown_first = min(first_step, trainer.total_steps)
    try:
        with display.TrainingProgress(console, trainer.total_steps, shown_first) as progress:
            trainer.on_step = progress.on_step
            result = trainer.run(resume_point)
        if result.steps_run and spec.final_sample is not None:
            _final_sample(spec, renderer_name, tokenizer, trainer, log_dir, console)
        if spec.backend == Backend.TINKER:
            service_client.finish()
    except BackendError as exc:
        if spec.tinker.replay is not None:  # a replay starts from its first call: no resume
            raise
        raise BackendError(f"{exc} ({resume_note(log_dir, trainer.n_batches)})") from None
    except KeyboardInterrupt:
        raise RunInterrupted(resume_note(log_dir, trainer.n_batches)) from None
    rows = run_log.read_metrics()
    png = plot_loss_curve(rows, log_dir / "loss_curve.png")
    display.summary(console, progress.history, str(log_dir))
    if png is not None:
        console.print(f"Loss curve: {png}")
    return 0
