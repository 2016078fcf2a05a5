"""Creating the training client of a run, the same way for every loop and as the reference.

Fresh: ``create_lora_training_client(base_model, rank, user_metadata={"renderer_name": ...})``.
Resumed: the checkpoint's run metadata is read first (a renderer mismatch is a warning, as in
the reference), then ``create_training_client_from_state_with_optimizer``. Started from
weights (``load_checkpoint_path``): the same check, then ``create_training_client_from_state``.
"""

from __future__ import annotations

import logging
from typing import Any

import tinker

from cookbook.exceptions import BackendError

logger = logging.getLogger(__name__)


def warn_if_renderer_differs(service_client: Any, checkpoint_path: str, renderer: str) -> None:
    """Weights trained with one chat format and continued with another silently degrade;
    the training run's metadata says which renderer made the checkpoint."""
    try:
        rest = service_client.create_rest_client()
        run = rest.get_training_run_by_tinker_path(checkpoint_path).result()
    except (tinker.TinkerError, BackendError, ValueError) as exc:
        logger.warning("Could not fetch renderer metadata for %s: %s", checkpoint_path, exc)
        return
    saved = (getattr(run, "user_metadata", None) or {}).get("renderer_name")
    if saved is not None and saved != renderer:
        logger.warning(
            "Checkpoint %s was trained with renderer %r, this run uses %r",
            checkpoint_path,
            saved,
            renderer,
        )


def create_training_client(
    service_client: Any,
    *,
    model_name: str,
    lora_rank: int,
    renderer_name: str | None,
    resume_state_path: str | None = None,
    load_checkpoint_path: str | None = None,
) -> Any:
    """No renderer (an RL config may leave it unset): no metadata and no check, as the
    reference."""
    metadata = {"renderer_name": renderer_name} if renderer_name else {}
    source = resume_state_path or load_checkpoint_path
    if source and renderer_name:
        warn_if_renderer_differs(service_client, source, renderer_name)
    if resume_state_path:
        future = service_client.create_training_client_from_state_with_optimizer(
            resume_state_path, user_metadata=metadata
        )
    elif load_checkpoint_path:
        future = service_client.create_training_client_from_state(
            load_checkpoint_path, user_metadata=metadata
        )
    else:
        future = service_client.create_lora_training_client(
            base_model=model_name, rank=lora_rank, user_metadata=metadata
        )
    return future.result()
