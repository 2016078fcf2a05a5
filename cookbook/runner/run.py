"""One recipe runner for every training loop: the run directory, the backend, config.json,
the banner, progress, the curves and the summary. A loop module (supervised, RL) resolves its
data first, then opens a :class:`RecipeRun`, trains, and closes it.

Order matters for the "bad input writes nothing" rule: the loop resolves the renderer,
tokenizer and data, and :func:`open_run` creates the backend client (which checks keys and
reachability), all before the run directory is created or touched.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from cookbook.backends.local.config import SMOLLM2_RENDERERS, LocalModelConfig
from cookbook.exceptions import BackendError, ConfigurationError, RunInterrupted
from cookbook.logging import display
from cookbook.logging.ml_log import RunLog
from cookbook.specs.loader import field_error
from cookbook.specs.recipe import Backend
from cookbook.supervised.checkpoints import CHECKPOINTS_FILE, last_checkpoint
from cookbook.tokenizers import provenance
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


def resolve_renderer_name(spec: Any) -> tuple[str, str]:
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


def make_service_client(
    spec_path: Path,
    spec: Any,
    log_dir: Path,
    tokenizer: Any,
    served_by: dict[str, Any] | None = None,
) -> Any:
    """The client factory for the spec's backend; fails before anything is written."""
    match spec.backend:
        case Backend.FAKE:
            from cookbook.backends.fake import FakeServiceClient

            # The tokenizer lets unseeded (RL) samples end at string stop sequences.
            return FakeServiceClient(state_dir=log_dir / "fake_state", tokenizer=tokenizer)
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


def engine_model(spec: Any, served_by: dict[str, Any] | None) -> LocalModelConfig | None:
    """The local stand-in this run trains: the spec's ``local.model`` in process, the serving
    cookbook-serve's for ``spec.model_name`` when served, None on any other backend."""
    if served_by is not None:
        models = served_by.get("models") or {}
        return LocalModelConfig.model_validate(models.get(spec.model_name, models.get("*", {})))
    return spec.local.model if spec.backend == Backend.LOCAL else None


def tokenizer_model_name(
    spec_path: Path, spec: Any, served_by: dict[str, Any] | None, renderer_name: str
) -> str:
    """The model whose tokenizer the run renders with: the spec model's, unless the stand-in
    trained brings its own (smollm2_gguf), which then needs a renderer that suits it - a
    one-line spec error otherwise, before anything is written."""
    model = engine_model(spec, served_by)
    if model is None or model.tokenizer_model is None:
        return spec.model_name
    if renderer_name not in SMOLLM2_RENDERERS:
        raise field_error(
            spec_path,
            ("renderer_name",),
            f"renderer {renderer_name!r} does not suit the local stand-in {model.kind} "
            f"(its own ChatML tokenizer); set renderer_name to one of "
            f"{', '.join(SMOLLM2_RENDERERS)} (e.g. in local.overlay)",
        )
    return model.tokenizer_model


def local_engine_notes(spec: Any, served_by: dict[str, Any] | None) -> list[str]:
    """What the banner and config.json say when the local stand-in, not the spec's model, is
    trained: in process (``backend: local``) or by the cookbook-serve answering the run."""
    model = engine_model(spec, served_by)
    if model is None:
        return []
    where = "the local backend"
    notes = []
    if served_by is not None:
        where = f"cookbook-serve at {served_by['url']}"
        if model != spec.local.model or served_by.get("seed") != spec.seed:
            notes.append(
                f"cookbook-serve's stand-in (seed {served_by.get('seed')}) is not this spec's "
                f"local.model with seed {spec.seed}: metrics will differ from a backend=local "
                "run (start it with --seed / --model-map to match)"
            )
    notes.insert(
        0,
        f"model: {spec.model_name} is not trained here; {where} trains the stand-in "
        f"{model.summary()}",
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


def resume_note(log_dir: Path, n_batches: int = 1) -> str:
    """Where a stopped run can go on from, and the command that does it. A supervised record
    counts batches within an epoch (``n_batches`` per epoch); an RL record counts steps."""
    record = last_checkpoint(log_dir)
    if record is None:
        return f"no checkpoint in {log_dir} yet: --log-dir {log_dir} --resume starts it over"
    step = int(record.get("epoch") or 0) * n_batches + int(record["batch"])
    return (
        f"last checkpoint {record['name']} in {log_dir}: rerun with --log-dir {log_dir} "
        f"--resume to continue at step {step}"
    )


@dataclass
class RecipeRun:
    """An opened run directory and its backend client."""

    spec_path: Path
    spec: Any
    options: RunOptions
    console: Console
    log_dir: Path
    service_client: Any
    resume: bool
    stand_ins: list[str]
    tokenizer_info: dict[str, Any]
    run_log: RunLog = field(init=False)

    def __post_init__(self) -> None:
        self.run_log = RunLog(self.log_dir)

    def restart_from(self, first_step: int, has_checkpoint: bool) -> None:
        """On resume: steps past the checkpoint are run (and logged) again; a run with no
        checkpoint yet starts over."""
        if not self.resume:
            return
        self.run_log.truncate_after(first_step - 1)
        if not has_checkpoint:
            (self.log_dir / CHECKPOINTS_FILE).unlink(missing_ok=True)

    def write_config(self, facts: dict[str, Any]) -> None:
        """config.json: the resolved spec, the loop's ``facts`` (renderer, data provenance...),
        the tokenizer, every stand-in and the package versions."""
        config = {
            "spec": self.spec.model_dump(mode="json"),
            "spec_file": str(self.spec_path),
            "overrides": list(self.options.overrides),
            **facts,
            "tokenizer": self.tokenizer_info,
            "stand_ins": self.stand_ins,
            "versions": package_versions(VERSIONED_PACKAGES),
        }
        if self.spec.backend == Backend.LOCAL:
            # Which stand-in exactly: parameter count, seed and a fingerprint of its weights.
            config["local_model"] = self.service_client.describe()
        if self.options.served_by is not None:
            config["served_by"] = self.options.served_by
        self.run_log.write_config(config)

    def banner(self, facts: dict[str, str]) -> None:
        facts = {**facts, "run dir": str(self.log_dir)}
        display.banner(self.console, f"cookbook-run {self.spec.name}", facts, self.stand_ins)

    def progress(
        self, total_steps: int, first_step: int, shown: display.Shown
    ) -> display.TrainingProgress:
        return display.TrainingProgress(self.console, total_steps, first_step, shown)

    @contextmanager
    def stopping_resumably(self, n_batches: int = 1) -> Iterator[None]:
        """A service failure (exit 1) or Ctrl-C (exit 130) mid-run ends in one line that names
        the last checkpoint and the ``--resume`` command; the run directory stays as it is. A
        replay starts from its first call, so it gets no resume note. However the run ends, a
        Tinker session is closed with that outcome (every service call happens in here)."""
        tinker = self.spec.backend == Backend.TINKER
        try:
            with self.service_client.closing() if tinker else nullcontext():
                yield
        except BackendError as exc:
            if getattr(getattr(self.spec, "tinker", None), "replay", None) is not None:
                raise
            raise BackendError(f"{exc} ({resume_note(self.log_dir, n_batches)})") from None
        except KeyboardInterrupt:
            raise RunInterrupted(resume_note(self.log_dir, n_batches)) from None

    def finish(
        self,
        progress: display.TrainingProgress,
        plots: list[tuple[str, Callable[[list[dict[str, Any]], Path], Path | None]]],
    ) -> None:
        """Check a replay used its whole recording, draw the curves from metrics.jsonl, print
        the summary. (:meth:`stopping_resumably` closes the session.)"""
        if self.spec.backend == Backend.TINKER:
            self.service_client.finish()
        rows = self.run_log.read_metrics()
        pngs = [plot(rows, self.log_dir / name) for name, plot in plots]
        display.summary(self.console, progress.history, str(self.log_dir), progress.shown)
        for png in pngs:
            if png is not None:  # loss_curve.png -> "Loss curve: ..."
                self.console.print(f"{png.stem.replace('_', ' ').capitalize()}: {png}")


def open_run(
    spec_path: Path,
    spec: Any,
    options: RunOptions,
    console: Console,
    tokenizer: Any,
    data_stand_ins: list[str],
) -> RecipeRun:
    log_dir = Path(options.log_dir or spec.log_path or Path("runs") / spec.name)
    service_client = make_service_client(spec_path, spec, log_dir, tokenizer, options.served_by)
    resume = prepare_log_dir(log_dir, options, console)
    log_dir.mkdir(parents=True, exist_ok=True)
    tok = provenance(tokenizer)
    stand_ins = [*data_stand_ins, *local_engine_notes(spec, options.served_by)]
    fake_overlay = getattr(getattr(spec, "fake", None), "overlay", None)
    if spec.backend == Backend.FAKE and fake_overlay:
        shown = ", ".join(f"{k}={v}" for k, v in fake_overlay.items())
        stand_ins.append(f"fake profile overlay: {shown} (--set overrides it)")
    if not tok.source.startswith("hub:"):
        stand_ins.append(f"tokenizer: {tok.source} ({tok.note or 'offline build'})")
    return RecipeRun(
        spec_path,
        spec,
        options,
        console,
        log_dir,
        service_client,
        resume,
        stand_ins,
        tok.to_json(),
    )
