"""Plumbing shared by the fake backend's clients (:mod:`cookbook.backends.fake`).

The fake model's formula, resolved futures, the ``*_async`` twins, call recording with fault
injection, and checkpoints on disk (one JSON file per checkpoint, written atomically, so a new
process can resume from a path).

Faults come in the two places a real service fails. A *call* fault (``faults``) makes the call
raise before it runs: the request was never accepted. A *result* fault (``result_faults``) lets
the call run - its effect on the model is applied - but makes its future raise the given
exceptions, one per ``result()``, before it yields the value: an accepted request whose result
is late (``TimeoutError``) or whose polling failed. Resubmitting after a result fault applies
the request twice, which is exactly what a retrying client must not do.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
from tinker import types

from cookbook.exceptions import ConfigurationError

T = TypeVar("T")
STATE_FORMAT = 1
SCHEME = "fake://"
_KIND_DIRS = {"state": "weights", "sampler": "sampler_weights"}


def fake_logprobs(tokens: Sequence[int], first_position: int, applied_lr_sum: float) -> np.ndarray:
    """Float32 logprobs of ``tokens[k]`` predicted at position ``first_position + k``."""
    t = np.asarray(tokens, dtype=np.int64)
    i = np.arange(first_position, first_position + len(t), dtype=np.int64)
    base = 1.0 + ((t * 31 + i * 7) % 97) / 97.0
    return (-base / (1.0 + 1000.0 * applied_lr_sum)).astype(np.float32)


class FakeFuture(Generic[T]):
    """An already-computed future with the APIFuture surface.

    ``pending`` exceptions are raised by the first ``result()`` calls, one each, before the
    value is returned; ``on_result`` runs when the value is first handed out.
    """

    def __init__(
        self,
        value: T,
        pending: Sequence[BaseException] = (),
        on_result: Callable[[], None] | None = None,
    ) -> None:
        self._value = value
        self._pending = list(pending)
        self._on_result = on_result

    def result(self, timeout: float | None = None) -> T:
        if self._pending:
            raise self._pending.pop(0)
        if self._on_result is not None:
            self._on_result()
            self._on_result = None
        return self._value

    async def result_async(self, timeout: float | None = None) -> T:
        return self.result(timeout)

    def __await__(self):
        return self.result_async().__await__()


class ClientFuture(FakeFuture[T]):
    """A future of a client that also acts as the client, like the SDK 0.38's deprecated
    ``Backcompat*ClientFuture``: the reference's RL loops call ``sample`` on the future that
    ``create_sampling_client`` / ``save_weights_and_get_sampling_client`` return."""

    def __getattr__(self, name: str) -> Any:
        # Only the client's own names wait for it: probing the future (``getattr(f, "future",
        # None)``) must neither block nor use up a result fault.
        if name.startswith("_") or not hasattr(self.__dict__.get("_value"), name):
            raise AttributeError(name)
        return getattr(self.result(), name)


def async_twin(method: str, *, resolve: bool) -> Callable[..., Coroutine[Any, Any, Any]]:
    """The deprecated ``<method>_async`` form: returns the future, or its value if ``resolve``.

    Mirrors the SDK: ``forward_backward_async`` & co. return a future to await later, while
    ``create_*_async``, ``save_weights_and_get_sampling_client_async``, ``sample_async`` and
    ``compute_logprobs_async`` return the value itself.
    """

    async def twin(self: Any, *args: Any, **kwargs: Any) -> Any:
        future = getattr(self, method)(*args, **kwargs)
        return future.result() if resolve else future

    twin.__name__ = twin.__qualname__ = f"{method}_async"
    twin.__doc__ = f"Deprecated-SDK form of ``{method}``."
    return twin


class TrainingClientAsyncTwins:
    """The deprecated ``*_async`` methods of an in-process training client (what the
    reference's loop calls), over its future-returning ones; shared by the fake and local."""

    forward_async = async_twin("forward", resolve=False)
    forward_backward_async = async_twin("forward_backward", resolve=False)
    optim_step_async = async_twin("optim_step", resolve=False)
    save_state_async = async_twin("save_state", resolve=False)
    save_weights_for_sampler_async = async_twin("save_weights_for_sampler", resolve=False)
    save_weights_and_get_sampling_client_async = async_twin(
        "save_weights_and_get_sampling_client", resolve=True
    )
    create_sampling_client_async = async_twin("create_sampling_client", resolve=True)


class SamplingClientAsyncTwins:
    """The deprecated ``*_async`` methods of an in-process sampling client."""

    compute_logprobs_async = async_twin("compute_logprobs", resolve=True)
    sample_async = async_twin("sample", resolve=True)


class ServiceClientAsyncTwins:
    """The deprecated ``*_async`` methods of an in-process service client."""

    create_lora_training_client_async = async_twin("create_lora_training_client", resolve=True)
    create_training_client_from_state_async = async_twin(
        "create_training_client_from_state", resolve=True
    )
    create_training_client_from_state_with_optimizer_async = async_twin(
        "create_training_client_from_state_with_optimizer", resolve=True
    )
    create_sampling_client_async = async_twin("create_sampling_client", resolve=True)


def adam_params_of(
    optim_params: types.AdamParams | None, adam_params: types.AdamParams | None, backend: str
) -> types.AdamParams:
    """The AdamParams of an ``optim_step(optim_params=None, *, adam_params=None)`` call (the
    SDK's two spellings); in-process backends implement Adam only."""
    if optim_params is not None and adam_params is not None:
        raise ConfigurationError("optim_step: pass optim_params or adam_params, not both")
    params = optim_params if optim_params is not None else adam_params
    if not isinstance(params, types.AdamParams):
        raise ConfigurationError(f"{backend} optim_step needs AdamParams, got {type(params)}")
    return params


class CallRecorder:
    """Every client call as one JSON-able dict, in call order (``calls``).

    ``events`` interleaves ``("call", index)`` with ``("result", index)`` (a call's value first
    handed out by its future), so a test can see which results a loop waited for before it
    submitted the next request: its pipelining.
    """

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.events: list[tuple[str, int]] = []

    def record(self, call: str, /, **fields: Any) -> dict[str, Any]:
        entry = {"call": call, **fields}
        self.events.append(("call", len(self.calls)))
        self.calls.append(entry)
        return entry

    def resolved(self, index: int) -> None:
        self.events.append(("result", index))

    def __len__(self) -> int:
        return len(self.calls)


@dataclass
class ModelState:
    """Everything a fake checkpoint holds; ``optim_steps`` stands for the optimizer state."""

    base_model: str
    rank: int
    applied_lr_sum: float = 0.0
    optim_steps: int = 0
    user_metadata: dict[str, str] = field(default_factory=dict)


class Backend:
    """What a service client and every client it creates share: disk, recorder, faults."""

    def __init__(
        self,
        state_dir: Path,
        recorder: CallRecorder,
        faults: Mapping[int, BaseException],
        result_faults: Mapping[int, Sequence[BaseException]] | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.recorder = recorder
        self.faults = faults
        self.result_faults = result_faults or {}
        self.tokenizer: Any = None
        """Decodes samples for string stop sequences (``FakeServiceClient(tokenizer=...)``)."""

    def call(self, call: str, /, **fields: Any) -> int:
        """Record a call and return its index; raise the call fault set for that index."""
        index = len(self.recorder)
        fault = self.faults.get(index)
        if fault is not None:
            self.recorder.record(call, **fields, fault=repr(fault))
            raise fault
        self.recorder.record(call, **fields)
        return index

    def future(self, index: int, value: T, client: bool = False) -> FakeFuture[T]:
        """The future of call ``index``: raises its result faults, then yields ``value``;
        ``client``: the value is a client the future also stands for (:class:`ClientFuture`)."""
        kind = ClientFuture if client else FakeFuture
        return kind(value, self.result_faults.get(index, ()), lambda: self.recorder.resolved(index))

    def new_run(self) -> str:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        number = sum(1 for p in self.state_dir.glob("run-*") if p.is_dir()) + 1
        while True:
            run_id = f"run-{number:04d}"
            try:
                (self.state_dir / run_id).mkdir()
                return run_id
            except FileExistsError:
                number += 1

    def file(self, path: str) -> tuple[Path, str]:
        parts = path.removeprefix(SCHEME).split("/") if path.startswith(SCHEME) else []
        kinds = {v: k for k, v in _KIND_DIRS.items()}
        if len(parts) != 3 or parts[1] not in kinds or not all(parts):
            raise ConfigurationError(
                f"{path!r} is not a fake checkpoint path ({SCHEME}<run>/weights|sampler_weights/"
                "<name>)"
            )
        return self.state_dir / parts[0] / parts[1] / f"{parts[2]}.json", kinds[parts[1]]

    def save(self, run_id: str, kind: str, name: str, state: ModelState, ttl: Any) -> str:
        path = f"{SCHEME}{run_id}/{_KIND_DIRS[kind]}/{name}"
        file, _ = self.file(path)
        file.parent.mkdir(parents=True, exist_ok=True)
        record = {"format": STATE_FORMAT, "kind": kind, "path": path, "ttl_seconds": ttl}
        text = json.dumps({**record, **asdict(state)}, indent=1, sort_keys=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{file.name}.", dir=file.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, file)
        return path

    def load(self, path: str, kind: str) -> ModelState:
        file, found_kind = self.file(path)
        if found_kind != kind:
            raise ConfigurationError(f"{path!r} is a {found_kind} checkpoint, need a {kind} one")
        try:
            data = json.loads(file.read_text("utf-8"))
        except FileNotFoundError:
            raise ConfigurationError(f"{path!r}: no such fake checkpoint ({file})") from None
        names = ModelState.__dataclass_fields__
        return ModelState(**{k: v for k, v in data.items() if k in names})
