"""Which weights an eval samples from: the base model, a checkpoint path, or a run directory.

``--checkpoint RUN_DIR`` reads the run's ``checkpoints.jsonl`` and takes the last record with a
``sampler_path`` (the final weights of a finished run). A run directory also says how it was
trained (config.json), which settles what a bare path cannot: a fake checkpoint lives in that
run's ``fake_state``; a local one needs the same stand-in model and seed. A run trained on
another backend or with another renderer is refused: its weights would be scored on a model
or chat format they were not trained for.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cookbook.backends.local.config import LocalModelConfig
from cookbook.exceptions import ConfigurationError
from cookbook.specs.evals import EvalSpec
from cookbook.specs.recipe import Backend
from cookbook.supervised.checkpoints import CHECKPOINTS_FILE

SCHEMES = {Backend.FAKE: "fake://", Backend.LOCAL: "local://", Backend.TINKER: "tinker://"}


@dataclass(frozen=True)
class Checkpoint:
    sampler_path: str
    run_dir: Path | None = None
    run_config: dict[str, Any] | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "sampler_path": self.sampler_path,
            "run_dir": None if self.run_dir is None else str(self.run_dir),
        }


def _run_checkpoint(run_dir: Path, spec: EvalSpec, renderer_name: str) -> Checkpoint:
    where = f"--checkpoint {run_dir}"
    try:
        config = json.loads((run_dir / "config.json").read_text("utf-8"))
        lines = (run_dir / CHECKPOINTS_FILE).read_text("utf-8").splitlines()
    except FileNotFoundError as exc:
        missing = Path(exc.filename or "").name
        raise ConfigurationError(f"{where}: not a run directory (no {missing})") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"{where}: unreadable run directory ({exc})") from None
    records = [json.loads(line) for line in lines if line.strip()]
    paths = [r["sampler_path"] for r in records if r.get("sampler_path")]
    if not paths:
        raise ConfigurationError(f"{where}: {CHECKPOINTS_FILE} has no sampler_path yet")
    trained = config.get("spec", {}).get("backend")
    if trained != spec.backend:
        raise ConfigurationError(
            f"{where}: the run trained on backend {trained!r}, this eval runs on "
            f"{spec.backend.value!r}; add --set backend={trained}"
        )
    if config.get("renderer_name") != renderer_name:
        raise ConfigurationError(
            f"{where}: the run trained with renderer {config.get('renderer_name')!r}, this "
            f"eval renders with {renderer_name!r}; add --set renderer_name="
            f"{config.get('renderer_name')}"
        )
    return Checkpoint(paths[-1], run_dir, config)


def resolve_checkpoint(given: str | None, spec: EvalSpec, renderer_name: str) -> Checkpoint | None:
    """The weights to evaluate; None means the base model."""
    if given is None:
        return None
    if Path(given).is_dir():
        return _run_checkpoint(Path(given), spec, renderer_name)
    scheme = next((b for b, s in SCHEMES.items() if given.startswith(s)), None)
    if scheme is None:
        raise ConfigurationError(
            f"--checkpoint {given}: neither a run directory nor a checkpoint path "
            f"({', '.join(s + '...' for s in SCHEMES.values())})"
        )
    if scheme != spec.backend:
        raise ConfigurationError(
            f"--checkpoint {given}: a {scheme.value} checkpoint, but this eval runs on "
            f"{spec.backend.value!r}; add --set backend={scheme.value}"
        )
    if scheme == Backend.FAKE:
        raise ConfigurationError(
            f"--checkpoint {given}: fake checkpoints live in their run's fake_state; pass the "
            "run directory instead"
        )
    return Checkpoint(given)


@contextmanager
def sampling_client(
    spec: EvalSpec, checkpoint: Checkpoint | None, tokenizer: Any, scratch: Path
) -> Iterator[tuple[Any, list[str]]]:
    """A sampling client of the spec's backend, and what stands in for what (for the banner),
    for the duration of the block.

    ``scratch`` is where a fake or local service may keep state; nothing is written there
    unless a backend needs to.
    """
    notes: list[str] = []
    match spec.backend:
        case Backend.FAKE:
            from cookbook.backends.fake import FakeServiceClient

            state = checkpoint.run_dir / "fake_state" if checkpoint and checkpoint.run_dir else None
            service: Any = FakeServiceClient(state_dir=state or scratch / "fake_state")
            notes.append("backend: the deterministic fake model (no network, no weights)")
        case Backend.LOCAL:
            from cookbook.backends.local.service import LocalServiceClient

            model, seed = spec.local.model, spec.seed
            if checkpoint is not None and checkpoint.run_config is not None:
                trained = checkpoint.run_config["spec"]
                model, seed = LocalModelConfig(**trained["local"]["model"]), trained["seed"]
            service = LocalServiceClient(
                state_dir=scratch / "local_state", model=model, seed=seed, tokenizer=tokenizer
            )
            notes.append(
                f"model: {spec.model_name} is not run here; the local backend samples the "
                f"stand-in {model.kind} ({model.hidden_size} hidden, {model.num_hidden_layers} "
                f"layers, seed {seed}) with the real tokenizer"
            )
        case Backend.TINKER:
            # Key check, bounded reachability probe, and the recipes' retries.
            from cookbook.backends.tinker.service import connect
            from cookbook.specs.recipe import TinkerOptions

            options = TinkerOptions()
            service = connect(
                spec.base_url,
                seed=spec.seed,
                connect_timeout_s=options.connect_timeout_s,
                max_attempts=options.max_attempts,
                user_metadata={"eval": spec.name},
            )
    # A Tinker session ends with the block (its heartbeat would outlive the eval otherwise).
    with service.closing() if spec.backend == Backend.TINKER else nullcontext():
        if checkpoint is None:
            client = service.create_sampling_client(base_model=spec.model_name)
        else:
            client = service.create_sampling_client(model_path=checkpoint.sampler_path)
        yield client.result(), notes
