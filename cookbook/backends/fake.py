"""A deterministic, instant, network-free stand-in for the tinker SDK clients.

Duck-typed to both client surfaces a loop may use: the 0.38 one (methods return futures with
``.result()`` and ``await``) and the deprecated ``*_async`` one the reference's
``supervised/train.py`` still calls (``fut = await tc.forward_backward_async(...)``,
``await fut.result_async()``). Results are real ``tinker.types`` objects, so code under test
reads them exactly as it reads the server's. That lets the reference's own training loop and
ours run against the same fake and be compared call by call (see
:mod:`cookbook.parity.recipe`).

The fake model
--------------
The only model state is ``applied_lr_sum``, the sum of the learning rates of the optimizer
steps applied so far. The log-probability of token ``t`` predicted at position ``i`` is::

    logprob(t, i) = -(1 + ((t * 31 + i * 7) % 97) / 97) / (1 + 1000 * applied_lr_sum)

computed in float64 and stored as float32. ``i`` is the index of the *predicting* input
position: target ``k`` of a datum has ``i = k``; entry ``j >= 1`` of ``compute_logprobs`` has
``i = j - 1`` (entry 0 is None); sampled token ``k`` has ``i = len(prompt) - 1 + k``. So a
datum scores the same through ``forward_backward`` and through ``compute_logprobs`` of its full
sequence, the loss falls as training proceeds, and it depends on the learning-rate schedule.
``forward_backward`` changes nothing; ``optim_step`` adds ``learning_rate``. Every operation runs
when it is called, in call order, which is the order the real service applies requests in.

Checkpoints and sampling
------------------------
Each training client is a run ``run-NNNN`` (numbered in creation order per ``state_dir``).
``save_state(name)`` writes ``{state_dir}/{run}/weights/{name}.json`` and returns
``fake://{run}/weights/{name}``; ``save_weights_for_sampler`` the same under ``sampler_weights``.
Files hold the whole model state, so a new process can resume from a path. Loading with the
optimizer restores ``optim_steps``; loading weights only resets it to 0.

Sampling
--------
(:mod:`cookbook.backends.fake_sampling`) With a ``SamplingParams.seed`` (evals), ``sample``
returns tokens cycled from the prompt, starting at an offset derived from the prompt, seed and
sample index, up to ``max_tokens`` (default :data:`DEFAULT_MAX_TOKENS`), stopping after a token
listed in ``stop`` when ``stop`` is a list of ids; string stop sequences are ignored. Without a
seed (the RL completers), each call draws afresh from the prompt's tokens with a mix of stopped
and cut-off samples, honouring stop ids and - when the service client was given a ``tokenizer``
- stop strings: see :mod:`cookbook.backends.fake_rl`, which also defines the RL losses
``forward_backward`` takes.

For RL loops (rl-core): ``FakeServiceClient(state_dir, tokenizer=tok)``, pass the renderer's
tokenizer so string stop sequences (role_colon & co.) end samples; loops must leave the seed
unset (the reference's ``TinkerTokenCompleter`` does) to get reward mixes.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tinker import types

from cookbook.backends.fake_core import (
    SCHEME,
    Backend,
    CallRecorder,
    FakeFuture,
    ModelState,
    ServiceClientAsyncTwins,
    TrainingClientAsyncTwins,
    adam_params_of,
    async_twin,
    fake_logprobs,
)
from cookbook.backends.fake_rl import (
    check_loss_fn,
    check_loss_inputs,
    datum_loss,
)
from cookbook.backends.fake_sampling import DEFAULT_MAX_TOKENS, FakeSamplingClient
from cookbook.digests import datum_digest
from cookbook.exceptions import ConfigurationError

_EPOCH = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)


class FakeTrainingClient(TrainingClientAsyncTwins):
    """One LoRA training run of the fake model."""

    def __init__(self, backend: Backend, state: ModelState) -> None:
        self._backend = backend
        self._state = state
        self.model_id = backend.new_run()

    @property
    def applied_lr_sum(self) -> float:
        """The fake model's only weight: the sum of the learning rates applied so far."""
        return self._state.applied_lr_sum

    def _forward(
        self, call: str, data: list[types.Datum], loss_fn: str, config: Mapping | None
    ) -> FakeFuture[types.ForwardBackwardOutput]:
        extra = {} if config is None else {"loss_fn_config": dict(config)}
        call_index = self._backend.call(
            call, loss_fn=loss_fn, n=len(data), datums=[datum_digest(d) for d in data], **extra
        )
        check_loss_fn(loss_fn)
        for index, datum in enumerate(data):
            check_loss_inputs(index, datum, loss_fn)
        outputs, loss = [], 0.0
        for datum in data:
            targets = datum.loss_fn_inputs["target_tokens"].data
            logprobs = fake_logprobs(targets, 0, self._state.applied_lr_sum)
            loss += datum_loss(loss_fn, datum, logprobs, config)
            outputs.append({"logprobs": types.TensorData.from_numpy(logprobs)})
        return self._backend.future(
            call_index,
            types.ForwardBackwardOutput(
                loss_fn_output_type="ArrayRecord",
                loss_fn_outputs=outputs,
                metrics={"loss:sum": loss},
            ),
        )

    def forward(
        self, data: list[types.Datum], loss_fn: str, loss_fn_config: Mapping | None = None
    ) -> FakeFuture[types.ForwardBackwardOutput]:
        return self._forward("forward", data, loss_fn, loss_fn_config)

    def forward_backward(
        self, data: list[types.Datum], loss_fn: str, loss_fn_config: Mapping | None = None
    ) -> FakeFuture[types.ForwardBackwardOutput]:
        return self._forward("forward_backward", data, loss_fn, loss_fn_config)

    def optim_step(
        self,
        optim_params: types.AdamParams | None = None,
        *,
        adam_params: types.AdamParams | None = None,
    ) -> FakeFuture[types.OptimStepResponse]:
        params = adam_params_of(optim_params, adam_params, "fake")
        call_index = self._backend.call("optim_step", adam=params.model_dump())
        self._state.applied_lr_sum += params.learning_rate
        self._state.optim_steps += 1
        return self._backend.future(
            call_index,
            types.OptimStepResponse(metrics={"fake/applied_lr_sum": self._state.applied_lr_sum}),
        )

    def save_state(
        self,
        name: str,
        ttl_seconds: int | None = None,
        overwrite: bool = False,
        user_metadata: dict[str, str] | None = None,
    ) -> FakeFuture[types.SaveWeightsResponse]:
        call_index = self._backend.call("save_state", name=name, ttl_seconds=ttl_seconds)
        path = self._backend.save(self.model_id, "state", name, self._state, ttl_seconds)
        return self._backend.future(call_index, types.SaveWeightsResponse(path=path))

    def save_weights_for_sampler(
        self, name: str, ttl_seconds: int | None = None, user_metadata: dict | None = None
    ) -> FakeFuture[types.SaveWeightsForSamplerResponse]:
        call_index = self._backend.call(
            "save_weights_for_sampler", name=name, ttl_seconds=ttl_seconds
        )
        path = self._backend.save(self.model_id, "sampler", name, self._state, ttl_seconds)
        return self._backend.future(call_index, types.SaveWeightsForSamplerResponse(path=path))

    def save_weights_and_get_sampling_client(
        self,
        name: str | None = None,
        retry_config: Any = None,
        record_stability_info: bool = False,
        kind: str = "snapshot",
    ) -> FakeFuture[FakeSamplingClient]:
        call_index = self._backend.call("save_weights_and_get_sampling_client")
        return self._backend.future(
            call_index, FakeSamplingClient(self._backend, self._state), client=True
        )

    def create_sampling_client(
        self, model_path: str, retry_config: Any = None, record_stability_info: bool = False
    ) -> FakeFuture[FakeSamplingClient]:
        call_index = self._backend.call("create_sampling_client", model_path=model_path)
        sampler = FakeSamplingClient(self._backend, self._backend.load(model_path, "sampler"))
        return self._backend.future(call_index, sampler, client=True)


class FakeRestClient:
    """The two REST calls the reference's checkpoint code makes."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    def get_training_run_by_tinker_path(self, tinker_path: str) -> FakeFuture[types.TrainingRun]:
        call_index = self._backend.call("get_training_run_by_tinker_path", path=tinker_path)
        kind = "sampler" if "/sampler_weights/" in tinker_path else "state"
        state = self._backend.load(tinker_path, kind)
        run = types.TrainingRun(
            training_run_id=tinker_path.removeprefix(SCHEME).split("/")[0],
            base_model=state.base_model,
            model_owner="fake",
            is_lora=True,
            lora_rank=state.rank,
            last_request_time=_EPOCH,
            user_metadata=state.user_metadata or None,
        )
        return self._backend.future(call_index, run)

    def delete_checkpoint_from_tinker_path(self, tinker_path: str) -> FakeFuture[None]:
        call_index = self._backend.call("delete_checkpoint_from_tinker_path", path=tinker_path)
        file, _ = self._backend.file(tinker_path)
        file.unlink(missing_ok=True)
        return self._backend.future(call_index, None)

    get_training_run_by_tinker_path_async = async_twin(
        "get_training_run_by_tinker_path", resolve=True
    )
    delete_checkpoint_from_tinker_path_async = async_twin(
        "delete_checkpoint_from_tinker_path", resolve=True
    )


class FakeServiceClient(ServiceClientAsyncTwins):
    """Entry point, like ``tinker.ServiceClient``: creates training/sampling/REST clients.

    ``faults`` maps a call index (position in the recorder's ``calls``) to an exception that
    call raises instead of running: the way to simulate a crash mid-run and test resume.
    ``result_faults`` maps a call index to exceptions its future raises, one per ``result()``,
    after the call ran (see :mod:`cookbook.backends.fake_core`): a late or lost result.
    ``tokenizer`` (optional) lets unseeded samples honour string stop sequences.
    """

    def __init__(
        self,
        state_dir: Path | str,
        recorder: CallRecorder | None = None,
        faults: Mapping[int, BaseException] | None = None,
        result_faults: Mapping[int, Sequence[BaseException]] | None = None,
        tokenizer: Any = None,
    ) -> None:
        self.recorder = recorder if recorder is not None else CallRecorder()
        self._backend = Backend(
            Path(state_dir), self.recorder, dict(faults or {}), dict(result_faults or {})
        )
        self._backend.tokenizer = tokenizer

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
    ) -> FakeFuture[FakeTrainingClient]:
        call_index = self._backend.call(
            "create_lora_training_client",
            base_model=base_model,
            rank=rank,
            user_metadata=None if user_metadata is None else dict(user_metadata),
        )
        state = ModelState(
            base_model=base_model, rank=rank, user_metadata=dict(user_metadata or {})
        )
        return self._backend.future(
            call_index, FakeTrainingClient(self._backend, state), client=True
        )

    def _from_state(
        self, call: str, path: str, user_metadata: dict[str, str] | None, with_optimizer: bool
    ) -> FakeFuture[FakeTrainingClient]:
        recorded = None if user_metadata is None else dict(user_metadata)
        call_index = self._backend.call(call, path=path, user_metadata=recorded)
        state = self._backend.load(path, "state")
        if not with_optimizer:
            state.optim_steps = 0
        if user_metadata is not None:
            state.user_metadata = dict(user_metadata)
        return self._backend.future(
            call_index, FakeTrainingClient(self._backend, state), client=True
        )

    def create_training_client_from_state(
        self,
        path: str,
        base_model: str | None = None,
        user_metadata: dict[str, str] | None = None,
        weights_access_token: str | None = None,
        optimizer: Any = None,
    ) -> FakeFuture[FakeTrainingClient]:
        """Weights only: the optimizer starts fresh (``optim_steps`` back to 0)."""
        return self._from_state("create_training_client_from_state", path, user_metadata, False)

    def create_training_client_from_state_with_optimizer(
        self,
        path: str,
        base_model: str | None = None,
        user_metadata: dict[str, str] | None = None,
        weights_access_token: str | None = None,
    ) -> FakeFuture[FakeTrainingClient]:
        return self._from_state(
            "create_training_client_from_state_with_optimizer", path, user_metadata, True
        )

    def create_sampling_client(
        self,
        model_path: str | None = None,
        base_model: str | None = None,
        retry_config: Any = None,
        record_stability_info: bool = False,
    ) -> FakeFuture[FakeSamplingClient]:
        call_index = self._backend.call(
            "create_sampling_client", model_path=model_path, base_model=base_model
        )
        if model_path is not None:
            state = self._backend.load(model_path, "sampler")
        elif base_model is not None:
            state = ModelState(base_model=base_model, rank=0)
        else:
            raise ConfigurationError("create_sampling_client needs model_path or base_model")
        return self._backend.future(
            call_index, FakeSamplingClient(self._backend, state), client=True
        )

    def create_rest_client(self) -> FakeRestClient:
        return FakeRestClient(self._backend)


__all__ = [
    "DEFAULT_MAX_TOKENS",
    "CallRecorder",
    "FakeFuture",
    "FakeRestClient",
    "FakeSamplingClient",
    "FakeServiceClient",
    "FakeTrainingClient",
    "fake_logprobs",
]
