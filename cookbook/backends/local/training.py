"""The local backend's training client: one LoRA run of the stand-in model on CPU.

Every call runs when it is made, in call order (the order the real service applies requests
in), and returns an already-resolved future. ``forward_backward`` adds this batch's gradients
to the adapter's; ``optim_step`` applies AdamW (``torch.optim.AdamW``, which Tinker's
AdamParams documents itself as identical to) with the step's learning rate, betas, eps and
weight decay, after clipping the global gradient norm to ``grad_clip_norm`` when it is > 0,
then clears the gradients. The losses are those of :mod:`.losses`. Its metrics report that
(pre-clip) norm as ``local/grad_norm``.
``save_state`` stores adapter + optimizer state + step count, so a new process resumes with
exactly the next step the uninterrupted run would have taken.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import torch
from tinker import types

from cookbook.backends.fake_core import (
    FakeFuture,
    TrainingClientAsyncTwins,
    adam_params_of,
)
from cookbook.backends.local import checkpoints
from cookbook.backends.local.losses import run_loss
from cookbook.backends.local.model import LoraSettings, adapter_parameters, attach_lora
from cookbook.backends.local.runtime import Runtime
from cookbook.backends.local.sampling import LocalSamplingClient, sampling_client_from_path
from cookbook.exceptions import ConfigurationError


class LocalTrainingClient(TrainingClientAsyncTwins):
    """One LoRA training run (``model_id`` is its run directory's name)."""

    def __init__(
        self,
        runtime: Runtime,
        lora: LoraSettings,
        *,
        base_model: str,
        user_metadata: Mapping[str, str] | None,
        adapter: Mapping[str, torch.Tensor] | None = None,
        optimizer_state: dict[str, Any] | None = None,
        optim_steps: int = 0,
    ) -> None:
        self._runtime = runtime
        self._lora = lora
        self._base_model = base_model
        self._user_metadata = dict(user_metadata or {})
        self._model = attach_lora(runtime.base, lora)
        self._params = adapter_parameters(self._model)
        if adapter is not None:
            self._load_adapter(adapter)
        # Hyperparameters are set from AdamParams at every step; these are placeholders.
        self._optimizer = torch.optim.AdamW(list(self._params.values()), lr=0.0)
        if optimizer_state is not None:
            self._optimizer.load_state_dict(optimizer_state)
        self.optim_steps = optim_steps
        self.model_id = checkpoints.new_run(runtime.state_dir)

    def _load_adapter(self, adapter: Mapping[str, torch.Tensor]) -> None:
        shapes = {name: tuple(p.shape) for name, p in self._params.items()}
        if {name: tuple(t.shape) for name, t in adapter.items()} != shapes:
            raise ConfigurationError("the checkpoint's adapter does not fit this LoRA config")
        with torch.no_grad():
            for name, param in self._params.items():
                param.copy_(adapter[name])

    # -- training ------------------------------------------------------------------------------

    def _run(
        self,
        data: list[types.Datum],
        loss_fn: str,
        loss_fn_config: Mapping | None,
        backward: bool,
    ) -> FakeFuture[types.ForwardBackwardOutput]:
        output = run_loss(
            self._model,
            data,
            loss_fn,
            loss_fn_config,
            vocab_size=self._runtime.vocab_size,
            full_logprobs=self._runtime.config.full_logprobs,
            backward=backward,
        )
        return FakeFuture(output)

    def forward(
        self, data: list[types.Datum], loss_fn: str, loss_fn_config: Mapping | None = None
    ) -> FakeFuture[types.ForwardBackwardOutput]:
        return self._run(data, loss_fn, loss_fn_config, backward=False)

    def forward_backward(
        self, data: list[types.Datum], loss_fn: str, loss_fn_config: Mapping | None = None
    ) -> FakeFuture[types.ForwardBackwardOutput]:
        return self._run(data, loss_fn, loss_fn_config, backward=True)

    def forward_backward_custom(self, data: list[types.Datum], loss_fn: Any, **kwargs: Any) -> Any:
        raise ConfigurationError(
            "forward_backward_custom is not implemented by the local backend in-process; "
            "through cookbook-serve the tinker SDK runs it as forward + forward_backward "
            "with cross_entropy, which the server serves"
        )

    def optim_step(
        self,
        optim_params: types.AdamParams | None = None,
        *,
        adam_params: types.AdamParams | None = None,
    ) -> FakeFuture[types.OptimStepResponse]:
        params = adam_params_of(optim_params, adam_params, "local")
        for group in self._optimizer.param_groups:
            group.update(
                lr=params.learning_rate,
                betas=(params.beta1, params.beta2),
                eps=params.eps,
                weight_decay=params.weight_decay,
            )
        grads = [p.grad for p in self._params.values() if p.grad is not None]
        norm = float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0
        if params.grad_clip_norm > 0 and grads:
            torch.nn.utils.clip_grads_with_norm_(
                list(self._params.values()), params.grad_clip_norm, torch.tensor(norm)
            )
        self._optimizer.step()
        self._optimizer.zero_grad(set_to_none=True)
        self.optim_steps += 1
        return FakeFuture(types.OptimStepResponse(metrics={"local/grad_norm": norm}))

    # -- checkpoints ---------------------------------------------------------------------------

    def _payload(self, ttl_seconds: int | None, with_optimizer: bool) -> dict[str, Any]:
        return {
            "base_model": self._base_model,
            "lora": asdict(self._lora),
            "stand_in": self._runtime.stand_in_record(),
            "user_metadata": self._user_metadata,
            "optim_steps": self.optim_steps,
            "ttl_seconds": ttl_seconds,
            "adapter": {name: p.detach().clone() for name, p in self._params.items()},
            "optimizer": self._optimizer.state_dict() if with_optimizer else None,
        }

    def save_state(
        self,
        name: str,
        ttl_seconds: int | None = None,
        overwrite: bool = False,
        user_metadata: dict[str, str] | None = None,
    ) -> FakeFuture[types.SaveWeightsResponse]:
        """Adapter + AdamW state + step count (rank 32 on a 128k vocabulary: ~57 MB).

        ``ttl_seconds`` is recorded, not enforced; a name saved twice in one run is replaced
        (``overwrite`` is accepted for the SDK's signature only).
        """
        payload = self._payload(ttl_seconds, with_optimizer=True)
        path = checkpoints.save(self._runtime.state_dir, self.model_id, "state", name, payload)
        return FakeFuture(types.SaveWeightsResponse(path=path))

    def save_weights_for_sampler(
        self, name: str, ttl_seconds: int | None = None, user_metadata: dict | None = None
    ) -> FakeFuture[types.SaveWeightsForSamplerResponse]:
        payload = self._payload(ttl_seconds, with_optimizer=False)
        path = checkpoints.save(self._runtime.state_dir, self.model_id, "sampler", name, payload)
        return FakeFuture(types.SaveWeightsForSamplerResponse(path=path))

    def save_weights_and_get_sampling_client(
        self,
        name: str | None = None,
        retry_config: Any = None,
        record_stability_info: bool = False,
        kind: str = "snapshot",
    ) -> FakeFuture[LocalSamplingClient]:
        """A sampling client on a snapshot of the current adapter (no file is written)."""
        return FakeFuture(
            LocalSamplingClient(self._runtime, self._model, self._params, self._base_model)
        )

    def create_sampling_client(
        self, model_path: str, retry_config: Any = None, record_stability_info: bool = False
    ) -> FakeFuture[LocalSamplingClient]:
        return FakeFuture(sampling_client_from_path(self._runtime, model_path))
