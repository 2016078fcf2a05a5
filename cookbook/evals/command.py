"""``cookbook-run specs/evals/X.yaml [--checkpoint RUN_DIR_OR_PATH]``: one eval task, end to end.

Everything that can be wrong with the input (spec, examples, checkpoint, backend) is found
before the results directory is touched. The directory then holds ``results.json`` (score,
confidence interval, what ran on what) and ``samples.jsonl`` (one record per example: prompt,
reply, score).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from cookbook.evals.backend import Checkpoint, resolve_checkpoint, sampling_client
from cookbook.evals.display import EvalProgress, result_table
from cookbook.evals.runner import EvalTask, TaskResult, prepare_task, run_task
from cookbook.exceptions import ConfigurationError
from cookbook.logging import display
from cookbook.logging.ml_log import write_json_atomic
from cookbook.runner.run import VERSIONED_PACKAGES, resolve_renderer_name
from cookbook.specs.evals import EvalSpec, MetricKind
from cookbook.tokenizers import get_tokenizer, provenance
from cookbook.versions import package_versions

RESULTS_FILE = "results.json"
SAMPLES_FILE = "samples.jsonl"


@dataclass
class EvalOptions:
    log_dir: Path | None = None
    overwrite: bool = False
    checkpoint: str | None = None
    overrides: tuple[str, ...] = ()


def finite(value: Any) -> Any:
    """JSON has no NaN: non-finite floats (an empty task's score) are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def default_log_dir(spec: EvalSpec, checkpoint: Checkpoint | None) -> Path:
    """Beside the evaluated run when there is one, so its results travel with it."""
    if spec.log_path:
        return Path(spec.log_path)
    if checkpoint is not None and checkpoint.run_dir is not None:
        return checkpoint.run_dir / "evals" / spec.name
    return Path("runs") / "evals" / spec.name


def _prepare_log_dir(log_dir: Path, overwrite: bool) -> None:
    existing = [log_dir / name for name in (RESULTS_FILE, SAMPLES_FILE)]
    if any(path.exists() for path in existing):
        if not overwrite:
            raise ConfigurationError(
                f"{log_dir} already holds eval results; pass --overwrite to replace them or "
                "--log-dir to write elsewhere"
            )
        for path in existing:
            path.unlink(missing_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)


def write_results(
    log_dir: Path, task: EvalTask, result: TaskResult, context: dict[str, Any]
) -> None:
    spec = task.spec
    summary = {
        "task": task.name,
        "description": spec.description,
        "metric": result.metric.value,
        "score_name": result.score_name,
        "score": result.score,
        "ci": {
            "method": spec.confidence.method.value,
            "level": spec.confidence.level,
            "low": result.ci[0],
            "high": result.ci[1],
        },
        "num_examples": result.num_examples,
        "num_errors": result.num_errors,
        "metrics": result.metrics(),
        "renderer_name": task.renderer_name,
        "source": task.source,
        "tokenizer": provenance(task.tokenizer).to_json(),
        "versions": package_versions(VERSIONED_PACKAGES),
        **context,
    }
    write_json_atomic(log_dir / RESULTS_FILE, finite(summary))
    with open(log_dir / SAMPLES_FILE, "w", encoding="utf-8") as handle:
        for record in result.records:
            handle.write(json.dumps(finite(record), ensure_ascii=False) + "\n")


def run_eval_spec(spec_path: Path, spec: EvalSpec, options: EvalOptions, console: Console) -> int:
    renderer_name, renderer_source = resolve_renderer_name(spec)
    tokenizer = get_tokenizer(spec.model_name)
    checkpoint = resolve_checkpoint(options.checkpoint or spec.checkpoint, spec, renderer_name)
    task = prepare_task(spec_path, spec, renderer_name, tokenizer)
    log_dir = options.log_dir or default_log_dir(spec, checkpoint)
    with sampling_client(spec, checkpoint, tokenizer, log_dir) as (client, notes):
        _prepare_log_dir(log_dir, options.overwrite)

        tok = provenance(tokenizer)
        stand_ins = [*task.stand_ins, *notes]
        if not tok.source.startswith("hub:"):
            stand_ins.append(f"tokenizer: {tok.source} ({tok.note or 'offline build'})")
        weights = checkpoint.sampler_path if checkpoint else f"{spec.model_name} (base model)"
        facts = {
            "task": f"{spec.name}: {spec.description}" if spec.description else spec.name,
            "metric": spec.metric.kind.value,
            "examples": f"{len(task.examples)} from {task.source['kind']}",
            "renderer": f"{renderer_name} (from {renderer_source})",
            "backend": spec.backend.value,
            "weights": weights,
            "results": str(log_dir),
        }
        display.banner(console, f"cookbook-run eval {spec.name}", facts, stand_ins)
        what = (
            "scoring"
            if spec.metric.kind in (MetricKind.NLL, MetricKind.MULTIPLE_CHOICE)
            else ("sampling")
        )
        with EvalProgress(console, spec.name, task.requests, what) as progress:
            result = run_task(task, client, progress.advance)
    context = {
        "spec_file": str(spec_path),
        "overrides": list(options.overrides),
        "spec": spec.model_dump(mode="json"),
        "model_name": spec.model_name,
        "backend": spec.backend.value,
        "checkpoint": checkpoint.describe() if checkpoint else None,
        "stand_ins": stand_ins,
    }
    write_results(log_dir, task, result, context)
    console.print(result_table([result], spec.confidence.level))
    console.print(f"Results: {log_dir / RESULTS_FILE}, per-example records: {SAMPLES_FILE}")
    return 0
