"""What the wire requests do: sessions, training runs, sampling sessions over the local backend.

Each base model is served by one :class:`~cookbook.backends.local.service.LocalServiceClient`
(its stand-in per the model map, the model's offline tokenizer, the server's seed), so a run
through the server trains exactly the stand-in an in-process ``backend: local`` run with the
same seed trains. Ids follow the service's shapes (the SDK itself derives a model id as
``{session}:train:{model_seq_id}`` when it creates a client from a checkpoint); checkpoint
paths are ``tinker://{model_id}/weights/{name}``, mapped to the local backend's files through
an index kept in the state directory (:mod:`cookbook.serve.paths`), so they survive a server
restart.

Every applied operation is recorded in the shape :func:`~cookbook.backends.tinker.codec.
describe_call` gives a client call (datums by digest, optimizer parameters in full): the same
shape as the recipe goldens' call layer, so two clients' traffic compares call for call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinker import types

from cookbook.backends.local.config import LocalModelConfig
from cookbook.backends.tinker.codec import describe_call
from cookbook.exceptions import ConfigurationError
from cookbook.serve.codec import ForwardBackwardCall
from cookbook.serve.futures import FutureTable, Pending
from cookbook.serve.paths import PathIndex


def _is_compute_logprobs(request: types.SampleRequest) -> bool:
    """The SDK's ``compute_logprobs`` is this exact sample request; recorded under its own
    name, as the fake backend and the recipe goldens record the client call."""
    return (
        bool(request.prompt_logprobs)
        and request.num_samples == 1
        and request.sampling_params == types.SamplingParams(max_tokens=1)
        and not (request.topk_prompt_logprobs or request.topk_sample_logprobs)
    )


@dataclass(frozen=True)
class _Run:
    """A training run of this server: its local client and what get_info reports."""

    client: Any
    base_model: str
    rank: int


class ModelMap:
    """Base model name -> the local stand-in that serves it (``default`` for any other)."""

    def __init__(
        self,
        models: Mapping[str, LocalModelConfig] | None = None,
        default: LocalModelConfig | None = None,
    ) -> None:
        self.models = dict(models or {})
        self.default = default or LocalModelConfig()

    def config_for(self, base_model: str) -> LocalModelConfig:
        return self.models.get(base_model, self.default)

    def describe(self) -> dict[str, Any]:
        """As JSON, ``'*'`` for the default: what the server reports on healthz."""
        entries = {"*": self.default, **self.models}
        return {name: config.model_dump(mode="json") for name, config in entries.items()}


class Engine:
    """The server's state. Its methods are called from HTTP handler threads; what they queue
    runs on the futures' single worker."""

    def __init__(
        self,
        state_dir: Path,
        seed: int,
        model_map: ModelMap,
        record: Callable[[dict[str, Any]], None],
        futures: FutureTable | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.seed = seed
        self.model_map = model_map
        self._record = record
        self._lock = threading.Lock()
        self._services: dict[str, Any] = {}
        self._models: dict[str, _Run] = {}
        self._samplers: dict[str, tuple[Any, str | None]] = {}
        self._sessions: set[str] = set()
        self.futures = futures or FutureTable()
        state_dir.mkdir(parents=True, exist_ok=True)
        # Session ids are numbered per server start in this state dir: deterministic for a
        # fresh directory (recordings compare), unique across restarts (paths stay apart).
        starts = state_dir / "starts"
        self._instance = int(starts.read_text()) + 1 if starts.exists() else 1
        starts.write_text(str(self._instance))
        self._paths = PathIndex(state_dir)

    # -- sessions ------------------------------------------------------------------------------

    def create_session(self) -> str:
        with self._lock:
            session_id = f"session-{self._instance}-{len(self._sessions) + 1}"
            self._sessions.add(session_id)
        return session_id

    # -- checkpoint paths ----------------------------------------------------------------------

    def _publish(self, model_id: str, kind_dir: str, name: str, local_path: str) -> str:
        path = f"tinker://{model_id}/{kind_dir}/{name}"
        run = self.model(model_id)
        self._paths.add(path, local_path, run.base_model, run.rank)
        return path

    def checkpoint(self, path: str) -> dict[str, Any]:
        """The index entry of a ``tinker://`` path of this server: its local file
        (``local``), ``base_model`` and ``lora_rank``."""
        return self._paths.entry(path)

    # -- models --------------------------------------------------------------------------------

    def _service(self, base_model: str) -> Any:
        """The local service of ``base_model`` (its tokenizer loads on first use)."""
        with self._lock:
            service = self._services.get(base_model)
        if service is None:
            from cookbook.backends.local.service import LocalServiceClient
            from cookbook.tokenizers import get_tokenizer

            config = self.model_map.config_for(base_model)
            service = LocalServiceClient(
                self.state_dir / "local",
                model=config,
                seed=self.seed,
                tokenizer=get_tokenizer(config.tokenizer_model or base_model),
            )
            with self._lock:
                service = self._services.setdefault(base_model, service)
        return service

    def model(self, model_id: str) -> _Run:
        run = self._models.get(model_id)
        if run is None:
            raise ConfigurationError(f"unknown model_id {model_id!r}")
        return run

    def _apply(self, method: str, model_id: str | None, **kwargs: Any) -> None:
        self._record({**describe_call(method, kwargs), "model_id": model_id})

    def create_model(self, request: types.CreateModelRequest) -> Pending:
        model_id = f"{request.session_id}:train:{request.model_seq_id}"
        lora = request.lora_config or types.LoraConfig(rank=32)

        def create() -> types.CreateModelResponse:
            service = self._service(request.base_model)
            client = service.create_lora_training_client(
                base_model=request.base_model,
                rank=lora.rank,
                seed=lora.seed,
                train_mlp=lora.train_mlp,
                train_attn=lora.train_attn,
                train_unembed=lora.train_unembed,
                user_metadata=request.user_metadata,
                optimizer=request.optimizer_config,
            ).result()
            self._models[model_id] = _Run(client, request.base_model, lora.rank)
            self._apply(
                "create_lora_training_client",
                model_id,
                base_model=request.base_model,
                rank=lora.rank,
                user_metadata=request.user_metadata,
            )
            return types.CreateModelResponse(model_id=model_id)

        return self.futures.submit(("model", model_id), create)

    def create_from_state(self, request: types.LoadWeightsRequest) -> Pending:
        """``create_training_client_from_state[_with_optimizer]``: a new model from a save."""
        if request.session_id is None or request.model_seq_id is None:
            raise ConfigurationError(
                "cookbook-serve loads weights only into a new model (session_id + model_seq_id)"
            )
        model_id = f"{request.session_id}:train:{request.model_seq_id}"
        method = "create_training_client_from_state" + ("_with_optimizer" * request.optimizer)

        def load() -> types.LoadWeightsResponse:
            saved = self.checkpoint(request.path)
            base_model = request.base_model or saved["base_model"]
            service = self._service(base_model)
            client = getattr(service, method)(saved["local"], user_metadata=request.user_metadata)
            self._models[model_id] = _Run(client.result(), base_model, saved["lora_rank"])
            self._apply(method, model_id, path=request.path, user_metadata=request.user_metadata)
            return types.LoadWeightsResponse(path=request.path, model_id=model_id)

        return self.futures.submit(("model", model_id), load)

    def get_info(self, model_id: str) -> types.GetInfoResponse:
        run = self.model(model_id)
        return types.GetInfoResponse(
            model_id=model_id,
            model_data=types.ModelData(arch="llama", model_name=run.base_model),
            is_lora=True,
            lora_rank=run.rank,
            model_name=run.base_model,
        )

    # -- training ------------------------------------------------------------------------------

    def _training_op(
        self, model_id: str, seq_id: int | None, operation: Callable[[Any], Any]
    ) -> Pending:
        identity = None if seq_id is None else ("op", model_id, seq_id)
        self.model(model_id)  # an unknown model is the caller's error now, not the future's
        return self.futures.submit(identity, lambda: operation(self.model(model_id).client))

    def forward_backward(self, call: ForwardBackwardCall) -> Pending:
        method = "forward" if call.forward_only else "forward_backward"

        def run(client: Any) -> types.ForwardBackwardOutput:
            output = getattr(client, method)(call.data, call.loss_fn, call.loss_fn_config)
            config = {} if call.loss_fn_config is None else {"loss_fn_config": call.loss_fn_config}
            self._apply(method, call.model_id, data=call.data, loss_fn=call.loss_fn, **config)
            return output.result()

        return self._training_op(call.model_id, call.seq_id, run)

    def optim_step(self, request: types.OptimStepRequest) -> Pending:
        def run(client: Any) -> types.OptimStepResponse:
            response = client.optim_step(request.optim_params).result()
            self._apply("optim_step", request.model_id, optim_params=request.optim_params)
            return response

        return self._training_op(request.model_id, request.seq_id, run)

    def save_weights(self, request: types.SaveWeightsRequest) -> Pending:
        name = request.path or f"step-{request.seq_id}"

        def run(client: Any) -> types.SaveWeightsResponse:
            local = client.save_state(name, ttl_seconds=request.ttl_seconds).result().path
            self._apply("save_state", request.model_id, name=name, ttl_seconds=request.ttl_seconds)
            return types.SaveWeightsResponse(
                path=self._publish(request.model_id, "weights", name, local)
            )

        return self._training_op(request.model_id, request.seq_id, run)

    def save_weights_for_sampler(self, request: types.SaveWeightsForSamplerRequest) -> Pending:
        def run(client: Any) -> types.SaveWeightsForSamplerResponseInternal:
            if request.path is None:  # save_weights_and_get_sampling_client
                sampler = client.save_weights_and_get_sampling_client().result()
                sampler_id = f"{request.model_id}:sample:{request.sampling_session_seq_id}"
                self._samplers[sampler_id] = (sampler, None)
                self._apply("save_weights_and_get_sampling_client", request.model_id)
                return types.SaveWeightsForSamplerResponseInternal(sampling_session_id=sampler_id)
            saved = client.save_weights_for_sampler(request.path, request.ttl_seconds).result()
            self._apply(
                "save_weights_for_sampler",
                request.model_id,
                name=request.path,
                ttl_seconds=request.ttl_seconds,
            )
            path = self._publish(request.model_id, "sampler_weights", request.path, saved.path)
            return types.SaveWeightsForSamplerResponseInternal(path=path)

        return self._training_op(request.model_id, request.seq_id, run)

    # -- sampling ------------------------------------------------------------------------------

    def create_sampling_session(self, request: types.CreateSamplingSessionRequest) -> str:
        """Answered synchronously (the SDK expects the id in the response), but built on the
        worker like every operation: loading an adapter touches torch's global RNG."""
        sampler_id = f"{request.session_id}:sample:{request.sampling_session_seq_id}"

        def create() -> str:
            if request.model_path is not None:
                saved = self.checkpoint(request.model_path)
                service = self._service(request.base_model or saved["base_model"])
                sampler = service.create_sampling_client(model_path=saved["local"]).result()
            elif request.base_model is not None:
                service = self._service(request.base_model)
                sampler = service.create_sampling_client(base_model=request.base_model).result()
            else:
                raise ConfigurationError("create_sampling_session needs model_path or base_model")
            self._samplers[sampler_id] = (sampler, request.model_path)
            return sampler_id

        pending = self.futures.submit(("sampler", sampler_id), create)
        pending.done.wait()
        self.futures.retrieved(pending)
        if pending.error is not None:
            raise ConfigurationError(pending.error)
        return sampler_id

    def sampler(self, sampler_id: str) -> types.GetSamplerResponse:
        sampler, model_path = self._sampler(sampler_id)
        return types.GetSamplerResponse(
            sampler_id=sampler_id, base_model=sampler.get_base_model(), model_path=model_path
        )

    def _sampler(self, sampler_id: str) -> tuple[Any, str | None]:
        entry = self._samplers.get(sampler_id)
        if entry is None:
            raise ConfigurationError(f"unknown sampling session {sampler_id!r}")
        return entry

    def sample(self, request: types.SampleRequest) -> Pending:
        if request.sampling_session_id is None:
            raise ConfigurationError("cookbook-serve samples within a sampling session only")
        sampler = self._sampler(request.sampling_session_id)[0]
        identity = (
            None
            if request.seq_id is None
            else ("sample", request.sampling_session_id, request.seq_id)
        )

        def run() -> types.SampleResponse:
            response = sampler.sample(
                request.prompt,
                request.num_samples,
                request.sampling_params,
                include_prompt_logprobs=bool(request.prompt_logprobs),
                topk_prompt_logprobs=request.topk_prompt_logprobs,
                topk_sample_logprobs=request.topk_sample_logprobs,
                prompt_logprobs_last_n=request.prompt_logprobs_last_n,
            ).result()
            if _is_compute_logprobs(request):
                self._apply("compute_logprobs", request.sampling_session_id, prompt=request.prompt)
            else:
                self._apply(
                    "sample",
                    request.sampling_session_id,
                    prompt=request.prompt,
                    num_samples=request.num_samples,
                    sampling_params=request.sampling_params,
                )
            return response

        pending = self.futures.submit(identity, run)
        pending.extra.setdefault(
            "sample_sequence_ids",
            [f"{pending.request_id}:{index}" for index in range(request.num_samples)],
        )
        return pending

    def training_run(self, model_id: str) -> types.TrainingRun:
        """A run of this server, live or (after a restart) known from its saved checkpoints."""
        from datetime import UTC, datetime

        if (run := self._models.get(model_id)) is not None:
            base_model, rank = run.base_model, run.rank
        else:
            saved = self._paths.last_of(model_id)
            if saved is None:
                raise ConfigurationError(f"unknown model_id {model_id!r}")
            base_model, rank = saved["base_model"], saved["lora_rank"]
        return types.TrainingRun(
            training_run_id=model_id,
            base_model=base_model,
            model_owner="cookbook-serve",
            is_lora=True,
            lora_rank=rank,
            last_request_time=datetime.now(UTC),
        )

    def close(self) -> None:
        self.futures.close()
