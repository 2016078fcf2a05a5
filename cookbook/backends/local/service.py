"""Entry point of the local backend, shaped like ``tinker.ServiceClient`` (0.38 surface)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from tinker import types

from cookbook.backends.fake_core import FakeFuture, ServiceClientAsyncTwins
from cookbook.backends.local.config import LocalModelConfig
from cookbook.backends.local.model import LoraSettings
from cookbook.backends.local.runtime import Runtime
from cookbook.backends.local.sampling import LocalSamplingClient, sampling_client_from_path
from cookbook.backends.local.training import LocalTrainingClient
from cookbook.exceptions import ConfigurationError


def _check_optimizer(optimizer: Any) -> None:
    if optimizer is not None and getattr(optimizer, "type", None) != "adamw":
        raise ConfigurationError(f"the local backend trains with AdamW only, not {optimizer!r}")


class LocalServiceClient(ServiceClientAsyncTwins):
    """Creates training and sampling clients of the local stand-in model.

    ``tokenizer`` (the spec model's) gives the vocabulary size and decodes string stop
    sequences; without one, pass ``vocab_size``. ``seed`` determines the base weights; the
    adapter's initialisation comes from ``create_lora_training_client(seed=)`` when given, else
    from this seed too. Creating a client sets torch's process-wide thread count
    (``model.threads``, default ``os.cpu_count()``) and turns on
    ``torch.use_deterministic_algorithms``: the backend promises identical results for
    identical calls, which a different thread count could break (reduction order).
    """

    def __init__(
        self,
        state_dir: Path | str,
        model: LocalModelConfig | None = None,
        seed: int = 0,
        *,
        tokenizer: Any = None,
        vocab_size: int | None = None,
    ) -> None:
        if vocab_size is None:
            if tokenizer is None:
                raise ConfigurationError("LocalServiceClient needs a tokenizer or a vocab_size")
            vocab_size = len(tokenizer)
        config = model if model is not None else LocalModelConfig()
        torch.set_num_threads(config.threads or os.cpu_count() or 1)
        torch.use_deterministic_algorithms(True)
        self._runtime = Runtime(Path(state_dir), config, vocab_size, seed, tokenizer)

    def describe(self) -> dict[str, Any]:
        """The stand-in, for the console banner and config.json (builds the base weights)."""
        return self._runtime.describe()

    def create_lora_training_client(
        self,
        base_model: str,
        rank: int = 32,
        seed: int | None = None,
        train_mlp: bool = True,
        train_attn: bool = True,
        train_unembed: bool = True,
        user_metadata: dict[str, str] | None = None,
        optimizer: Any = None,
    ) -> FakeFuture[LocalTrainingClient]:
        _check_optimizer(optimizer)
        lora = LoraSettings(
            rank=rank,
            alpha=self._runtime.config.lora_alpha,
            seed=self._runtime.seed if seed is None else seed,
            train_mlp=train_mlp,
            train_attn=train_attn,
            train_unembed=train_unembed,
        )
        client = LocalTrainingClient(
            self._runtime, lora, base_model=base_model, user_metadata=user_metadata
        )
        return FakeFuture(client)

    def _from_state(
        self, path: str, user_metadata: dict[str, str] | None, with_optimizer: bool
    ) -> FakeFuture[LocalTrainingClient]:
        payload = self._runtime.load_checkpoint(path, "state")
        client = LocalTrainingClient(
            self._runtime,
            LoraSettings(**payload["lora"]),
            base_model=payload["base_model"],
            user_metadata=payload["user_metadata"] if user_metadata is None else user_metadata,
            adapter=payload["adapter"],
            optimizer_state=payload["optimizer"] if with_optimizer else None,
            optim_steps=payload["optim_steps"] if with_optimizer else 0,
        )
        return FakeFuture(client)

    def create_training_client_from_state(
        self,
        path: str,
        base_model: str | None = None,
        user_metadata: dict[str, str] | None = None,
        weights_access_token: str | None = None,
        optimizer: Any = None,
    ) -> FakeFuture[LocalTrainingClient]:
        """The saved adapter with a fresh optimizer (step count back to 0)."""
        _check_optimizer(optimizer)
        return self._from_state(path, user_metadata, with_optimizer=False)

    def create_training_client_from_state_with_optimizer(
        self,
        path: str,
        base_model: str | None = None,
        user_metadata: dict[str, str] | None = None,
        weights_access_token: str | None = None,
    ) -> FakeFuture[LocalTrainingClient]:
        """Exact resume: the saved adapter, AdamW moments and step count."""
        return self._from_state(path, user_metadata, with_optimizer=True)

    def create_sampling_client(
        self,
        model_path: str | None = None,
        base_model: str | None = None,
        retry_config: Any = None,
        record_stability_info: bool = False,
    ) -> FakeFuture[LocalSamplingClient]:
        """From sampler weights, or (``base_model`` only) the bare stand-in, no adapter."""
        if model_path is not None:
            return FakeFuture(sampling_client_from_path(self._runtime, model_path))
        if base_model is None:
            raise ConfigurationError("create_sampling_client needs model_path or base_model")
        return FakeFuture(LocalSamplingClient(self._runtime, self._runtime.base, {}, base_model))

    def create_rest_client(self) -> LocalRestClient:
        return LocalRestClient(self._runtime)


class LocalRestClient:
    """The REST call the training loop makes on resume: which run (and renderer) made a
    checkpoint, read from the checkpoint file itself."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def get_training_run_by_tinker_path(self, tinker_path: str) -> FakeFuture[types.TrainingRun]:
        kind = "sampler" if "/sampler_weights/" in tinker_path else "state"
        payload = self._runtime.load_checkpoint(tinker_path, kind)
        run = types.TrainingRun(
            training_run_id=Path(tinker_path).parent.parent.name,
            base_model=payload["base_model"],
            model_owner="local",
            is_lora=True,
            lora_rank=payload["lora"]["rank"],
            last_request_time=datetime.fromtimestamp(0, tz=UTC),
            user_metadata=payload.get("user_metadata") or None,
        )
        return FakeFuture(run)
