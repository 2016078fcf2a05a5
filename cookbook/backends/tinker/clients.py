"""SDK-shaped clients over the tinker SDK: the loop's surface, plus retries and recording.

:class:`TinkerServiceClient` wraps a ``tinker.ServiceClient`` (or anything shaped like one: the
fake backend, a cassette being replayed) and hands out wrapped training, sampling and REST
clients. Each method returns a :class:`~.retry.RetryingFuture` at once - the request is already
submitted, so the loop's submit-ahead pipelining keeps several steps in flight exactly as with
the bare SDK - and retries by the rule in :mod:`.retry`. With a tape (:mod:`.cassette`) every
accepted call and its result is recorded.

SDK methods are always called with keyword arguments: that keeps call descriptions independent
of argument order and lets one replay class answer for every client.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, Literal

import tinker
from tinker import types

from cookbook.backends.tinker.cassette import CassetteWriter, ReplayClient
from cookbook.backends.tinker.retry import (
    Request,
    Retrier,
    RetryingFuture,
    RetryPolicy,
    Scrubber,
)

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 10.0
"""How long ending the session may hold up the end of a run (the SDK's own per-request bound
for heartbeats). The SDK would retry its finish request for five minutes when the service is
gone, heartbeating all the while; past this the finish is given up and the client released."""


class _Session:
    """What a service client and every client it creates share: the retrier and the tape."""

    def __init__(self, retrier: Retrier, tape: CassetteWriter | None) -> None:
        self.retrier = retrier
        self.tape = tape

    def request(
        self,
        target: Any,
        on: str,
        method: str,
        kwargs: dict[str, Any],
        *,
        repeatable: bool,
        wrap: Callable[[Any], Any] = lambda value: value,
    ) -> RetryingFuture[Any]:
        if self.tape is not None:
            self.tape.ensure_open(method)
        send = partial(getattr(target, method), **kwargs)
        future: RetryingFuture[Any] = RetryingFuture(
            self.retrier, Request(method, send, repeatable, wrap)
        )
        if self.tape is not None:
            index = self.tape.call(on, method, kwargs)
            future.on_result = partial(self.tape.result, index, method)
        return future


def _given(**kwargs: Any) -> dict[str, Any]:
    """Optional arguments the caller actually passed (None means "SDK default")."""
    return {key: value for key, value in kwargs.items() if value is not None}


class TinkerSamplingClient:
    """Sampling and scoring; both are read-only, so a lost result is simply asked for again."""

    def __init__(self, session: _Session, raw: Any) -> None:
        self._session = session
        self._raw = raw

    def compute_logprobs(self, prompt: types.ModelInput, **kwargs: Any) -> RetryingFuture[Any]:
        args = {"prompt": prompt, **kwargs}
        return self._session.request(
            self._raw, "sampling", "compute_logprobs", args, repeatable=True
        )

    def sample(
        self,
        prompt: types.ModelInput,
        num_samples: int,
        sampling_params: types.SamplingParams,
        **kwargs: Any,
    ) -> RetryingFuture[types.SampleResponse]:
        args = {"prompt": prompt, "num_samples": num_samples, "sampling_params": sampling_params}
        return self._session.request(
            self._raw, "sampling", "sample", {**args, **kwargs}, repeatable=True
        )


class TinkerTrainingClient:
    """One training run. Its requests are ordered on the server, so none is ever resubmitted
    once accepted (see :mod:`.retry`)."""

    def __init__(self, session: _Session, raw: Any) -> None:
        self._session = session
        self._raw = raw

    @property
    def model_id(self) -> str | None:
        return getattr(self._raw, "model_id", None)

    def _request(self, method: str, kwargs: dict[str, Any], **options: Any) -> RetryingFuture:
        return self._session.request(
            self._raw, "training", method, kwargs, repeatable=False, **options
        )

    def _sampling(self, raw: Any) -> TinkerSamplingClient:
        return TinkerSamplingClient(self._session, raw)

    def forward(
        self, data: list[types.Datum], loss_fn: str, loss_fn_config: dict | None = None
    ) -> RetryingFuture[types.ForwardBackwardOutput]:
        args = {"data": data, "loss_fn": loss_fn, **_given(loss_fn_config=loss_fn_config)}
        return self._request("forward", args)

    def forward_backward(
        self, data: list[types.Datum], loss_fn: str, loss_fn_config: dict | None = None
    ) -> RetryingFuture[types.ForwardBackwardOutput]:
        args = {"data": data, "loss_fn": loss_fn, **_given(loss_fn_config=loss_fn_config)}
        return self._request("forward_backward", args)

    def optim_step(
        self,
        optim_params: types.AdamParams | None = None,
        *,
        adam_params: types.AdamParams | None = None,
    ) -> RetryingFuture[types.OptimStepResponse]:
        return self._request(
            "optim_step", _given(optim_params=optim_params, adam_params=adam_params)
        )

    def save_state(
        self, name: str, ttl_seconds: int | None = None, **kwargs: Any
    ) -> RetryingFuture[types.SaveWeightsResponse]:
        return self._request("save_state", {"name": name, "ttl_seconds": ttl_seconds, **kwargs})

    def save_weights_for_sampler(
        self, name: str, ttl_seconds: int | None = None, **kwargs: Any
    ) -> RetryingFuture[types.SaveWeightsForSamplerResponse]:
        args = {"name": name, "ttl_seconds": ttl_seconds, **kwargs}
        return self._request("save_weights_for_sampler", args)

    def save_weights_and_get_sampling_client(
        self, **kwargs: Any
    ) -> RetryingFuture[TinkerSamplingClient]:
        return self._request("save_weights_and_get_sampling_client", kwargs, wrap=self._sampling)

    def create_sampling_client(
        self, model_path: str, **kwargs: Any
    ) -> RetryingFuture[TinkerSamplingClient]:
        # Loading saved weights changes nothing: repeating it is harmless.
        args = {"model_path": model_path, **kwargs}
        return self._session.request(
            self._raw,
            "training",
            "create_sampling_client",
            args,
            repeatable=True,
            wrap=self._sampling,
        )


class TinkerRestClient:
    """The REST look-ups the loop makes (read-only, so repeatable)."""

    def __init__(self, session: _Session, raw: Any) -> None:
        self._session = session
        self._raw = raw

    def get_training_run_by_tinker_path(self, tinker_path: str) -> RetryingFuture[Any]:
        args = {"tinker_path": tinker_path}
        return self._session.request(
            self._raw, "rest", "get_training_run_by_tinker_path", args, repeatable=True
        )


class TinkerServiceClient:
    """Entry point with the ``tinker.ServiceClient`` surface the supervised loop uses.

    ``sdk`` is the client to wrap. ``secrets`` are scrubbed from every message the wrapper
    raises or logs; ``sleep`` and ``clock`` drive the backoff (tests pass fakes); ``tape``
    records the run. Creating a client is repeatable: a lost creation leaves at most an
    orphaned model on the server, never a second update.
    """

    def __init__(
        self,
        sdk: Any,
        *,
        policy: RetryPolicy | None = None,
        secrets: Iterable[str] = (),
        tape: CassetteWriter | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sdk = sdk
        retrier = Retrier(
            policy or RetryPolicy(), sleep=sleep, clock=clock, scrub=Scrubber(secrets)
        )
        self._session = _Session(retrier, tape)

    def finish(self) -> None:
        """The run is over. A replayed run must have used the whole recording."""
        if isinstance(self._sdk, ReplayClient):
            self._sdk.finish_replay()

    def close(self, status: Literal["success", "errored", "interrupted"] = "success") -> None:
        """End the SDK session: its heartbeat thread would otherwise outlive the run (in a
        process that goes on - a notebook, a test - it keeps calling a service that may be
        gone and logs "Session heartbeat failed" two minutes later). Fakes and replays hold no
        session; a replay would even take ``close`` for a recorded call. A recording ends here
        too, whatever the SDK: its file is complete and closed (see :class:`.CassetteWriter`
        for what arrives later)."""
        if self._session.tape is not None:
            self._session.tape.close()
        if not isinstance(self._sdk, tinker.ServiceClient):
            return
        closing = self._sdk.close(status).future()
        try:
            closing.result(timeout=CLOSE_TIMEOUT_S)
        except Exception as exc:  # the run's outcome stands; a session left open is not it
            # Cancelling drops the finish request; the SDK still releases its client (the
            # heartbeat stops) on the way out.
            closing.cancel()
            message = self._session.retrier.scrub(f"{type(exc).__name__}: {exc}".strip(": "))
            logger.warning("tinker: could not end the session cleanly (%s)", message)

    @contextmanager
    def closing(self) -> Iterator[TinkerServiceClient]:
        """Every service call in the block; then the session (and any recording) ends with the
        block's outcome."""
        status: Literal["success", "errored", "interrupted"] = "errored"
        try:
            yield self
            status = "success"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            self.close(status)

    def _training(self, raw: Any) -> TinkerTrainingClient:
        return TinkerTrainingClient(self._session, raw)

    def _create(self, method: str, kwargs: dict[str, Any], wrap: Callable) -> RetryingFuture:
        return self._session.request(
            self._sdk, "service", method, kwargs, repeatable=True, wrap=wrap
        )

    def create_lora_training_client(
        self,
        base_model: str,
        rank: int = 32,
        user_metadata: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> RetryingFuture[TinkerTrainingClient]:
        args = {"base_model": base_model, "rank": rank, "user_metadata": user_metadata}
        return self._create("create_lora_training_client", {**args, **kwargs}, self._training)

    def create_training_client_from_state(
        self, path: str, user_metadata: dict[str, str] | None = None, **kwargs: Any
    ) -> RetryingFuture[TinkerTrainingClient]:
        args = {"path": path, "user_metadata": user_metadata, **kwargs}
        return self._create("create_training_client_from_state", args, self._training)

    def create_training_client_from_state_with_optimizer(
        self, path: str, user_metadata: dict[str, str] | None = None, **kwargs: Any
    ) -> RetryingFuture[TinkerTrainingClient]:
        args = {"path": path, "user_metadata": user_metadata, **kwargs}
        return self._create(
            "create_training_client_from_state_with_optimizer", args, self._training
        )

    def create_sampling_client(
        self, model_path: str | None = None, base_model: str | None = None, **kwargs: Any
    ) -> RetryingFuture[TinkerSamplingClient]:
        args = {"model_path": model_path, "base_model": base_model, **kwargs}
        return self._create(
            "create_sampling_client", args, partial(TinkerSamplingClient, self._session)
        )

    def create_rest_client(self) -> TinkerRestClient:
        # Deprecated in the SDK in favour of tinker.RestClient(); this form shares the
        # service client's holder and works for every SDK-shaped client.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            raw = self._sdk.create_rest_client()
        return TinkerRestClient(self._session, raw)
