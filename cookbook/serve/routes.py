"""The HTTP side: one handler per wire endpoint the SDK's training and sampling flow uses.

Bodies are decoded with the SDK's own request types (JSON) and proto module (forward_backward),
and results are encoded the way the SDK decodes them: protobuf for ForwardBackwardOutput and
SampleResponse, JSON for everything else. Submissions answer at once with a request id;
``retrieve_future`` long-polls (``long_poll_s``) and answers HTTP 408 "try again" when the
operation is still running, which the SDK re-polls without backoff or warning.

Every request but healthz must carry an API key: the ``--api-key`` one (compared in constant
time), or without one any key starting ``tml-`` (the SDK refuses to send anything else); the key
is checked, never stored or logged. Every answer is JSON (or the SDK's protobuf): a body over
the limit, a bad ``Content-Length``, a slow client, a full server or a bug in a handler each get
a status and a one-line ``detail``, never a traceback or a closed connection.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

import pydantic
from tinker import types

from cookbook.exceptions import CookbookError
from cookbook.serve import compat
from cookbook.serve.codec import (
    ProtocolError,
    decode_forward_backward_request,
    encode_forward_backward_output,
    encode_sample_response,
)
from cookbook.serve.engine import Engine
from cookbook.serve.faults import FaultInjector, FaultKind
from cookbook.serve.futures import Pending
from cookbook.serve.limits import Limits

if TYPE_CHECKING:
    from cookbook.serve.server import Handler

log = logging.getLogger("cookbook.serve.http")
PREFIX = "/api/v1/"
PROTO = "application/x-protobuf"


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"


def _json(value: Any, status: int = 200) -> Reply:
    if isinstance(value, pydantic.BaseModel):
        value = value.model_dump(mode="json", exclude_none=True)
    return Reply(status, json.dumps(value).encode())


def _error(status: int, message: str) -> Reply:
    return _json({"detail": message}, status)


def _future(pending: Pending, model_id: str | None = None) -> Reply:
    body: dict[str, Any] = {"request_id": pending.request_id}
    if model_id is not None:
        body["model_id"] = model_id
    body.update(pending.extra)
    return _json(body)


class Routes:
    """Maps ``(method, endpoint)`` to a handler; owned by the running server."""

    def __init__(
        self,
        engine: Engine,
        faults: FaultInjector | None,
        long_poll_s: float,
        limits: Limits,
        api_key: str | None = None,
    ) -> None:
        self.engine = engine
        self.faults = faults
        self.long_poll_s = long_poll_s
        self.limits = limits
        self._key = None if api_key is None else api_key.encode()
        self.served = 0
        e = engine
        self.post: dict[str, Callable[[bytes, Any], Reply | Pending]] = {
            "client/config": self._client_config,
            "client/dynamic_config": lambda body, h: _json(compat.DYNAMIC_CONFIG),
            "create_session": self._create_session,
            "session_heartbeat": lambda body, h: _json({"type": "session_heartbeat"}),
            "telemetry": lambda body, h: _json({"status": "accepted"}),
            "create_model": lambda body, h: e.create_model(_parse(types.CreateModelRequest, body)),
            "get_info": lambda body, h: _json(
                e.get_info(_parse(types.GetInfoRequest, body).model_id)
            ),
            "forward_backward": lambda body, h: e.forward_backward(
                decode_forward_backward_request(
                    body, h.get("Content-Encoding"), limits.max_body_bytes
                )
            ),
            "optim_step": lambda body, h: e.optim_step(_parse(types.OptimStepRequest, body)),
            "save_weights": lambda body, h: e.save_weights(_parse(types.SaveWeightsRequest, body)),
            "save_weights_for_sampler": lambda body, h: e.save_weights_for_sampler(
                _parse(types.SaveWeightsForSamplerRequest, body)
            ),
            "load_weights": lambda body, h: e.create_from_state(
                _parse(types.LoadWeightsRequest, body)
            ),
            "create_sampling_session": lambda body, h: _json(
                {
                    "type": "create_sampling_session",
                    "sampling_session_id": e.create_sampling_session(
                        _parse(types.CreateSamplingSessionRequest, body)
                    ),
                }
            ),
            "asample": lambda body, h: e.sample(_parse(types.SampleRequest, body)),
            "retrieve_future": self._retrieve,
        }

    # -- handlers ------------------------------------------------------------------------------

    def _client_config(self, body: bytes, headers: Any) -> Reply:
        request = _parse(types.ClientConfigRequest, body)
        if why := compat.unsupported_sdk(request.sdk_version):
            return _error(400, why)
        return _json(compat.CLIENT_CONFIG)

    def _create_session(self, body: bytes, headers: Any) -> Reply:
        request = _parse(types.CreateSessionRequest, body)
        if why := compat.unsupported_sdk(request.sdk_version):
            return _error(400, why)
        return _json({"type": "create_session", "session_id": self.engine.create_session()})

    def _retrieve(self, body: bytes, headers: Any) -> Reply:
        request = _parse(types.FutureRetrieveRequest, body)
        futures = self.engine.futures
        pending = futures.get(request.request_id)
        if pending is None:
            # 404, not 410: the SDK answers a 410 by resubmitting, which dedupes to this id.
            why = futures.expired(request.request_id)
            if why is None:
                return _error(404, f"unknown request_id {request.request_id!r}")
            return _json({"detail": f"request_id {request.request_id!r}: {why}"}, 404)
        try_again = {"type": "try_again", "request_id": pending.request_id, "queue_state": "active"}
        if pending.slow_polls > 0:
            pending.slow_polls -= 1
            return _json(try_again, 408)
        if not pending.done.wait(self.long_poll_s):
            return _json(try_again, 408)
        futures.retrieved(pending)
        if pending.error is not None:
            return _json({"error": pending.error, "category": pending.category})
        result = pending.result
        if isinstance(result, types.ForwardBackwardOutput):
            return Reply(200, encode_forward_backward_output(result), PROTO)
        if isinstance(result, types.SampleResponse):
            return Reply(200, encode_sample_response(result), PROTO)
        return _json(result)

    def get(self, endpoint: str) -> Reply:
        if endpoint == "healthz":
            return _json(
                {
                    "status": "ok",
                    "server": "cookbook-serve",
                    "sdk_versions": compat.SUPPORTED_SDK_RANGE,
                    "seed": self.engine.seed,
                    "models": self.engine.model_map.describe(),
                }
            )
        if endpoint == "get_server_capabilities":
            models = [{"model_name": name} for name in self.engine.model_map.models]
            return _json({"supported_models": models})
        kind, _, ident = endpoint.partition("/")
        if kind == "samplers" and ident:
            return _json(self.engine.sampler(ident))
        if kind == "training_runs" and ident and "/" not in ident:
            return _json(self.engine.training_run(ident))
        return _error(404, f"cookbook-serve does not implement GET {PREFIX}{endpoint}")

    # -- dispatch ------------------------------------------------------------------------------

    def handle(self, request: Handler, method: str) -> None:
        path = request.path.split("?", 1)[0]
        endpoint = path.removeprefix(PREFIX) if path.startswith(PREFIX) else path
        started = time.monotonic()
        fault = None
        body = self._read_body(request, method)
        if isinstance(body, Reply):  # the rest of the body is unread: close after answering
            reply: Reply | None = body
            request.close_connection = True
        elif request.busy:
            reply = _error(503, self._busy())
            request.close_connection = True
        elif endpoint != "healthz" and (refusal := self._refuse(request)) is not None:
            reply = refusal
        else:
            fault = self.faults.decide(endpoint) if self.faults is not None else None
            reply = self._dispatch(method, endpoint, body, request.headers, fault)
        self.served += 1
        log.debug(
            "%s %s -> %s (%.1f ms)",
            method,
            path,
            "dropped" if reply is None else reply.status,
            1000 * (time.monotonic() - started),
        )
        if reply is None:
            _drop(request)
            return
        request.connection.settimeout(self.limits.body_timeout_s)  # a client that never reads
        request.send_response(reply.status)
        request.send_header("Content-Type", reply.content_type)
        request.send_header("Content-Length", str(len(reply.body)))
        if request.close_connection:
            request.send_header("Connection", "close")
        request.end_headers()
        request.wfile.write(reply.body)

    def _busy(self) -> str:
        return (
            f"cookbook-serve is serving its maximum of {self.limits.max_connections} "
            "connections (--max-connections); retry"
        )

    def _read_body(self, request: Handler, method: str) -> bytes | Reply:
        """The body, within the size and time limits; or the error answering why not."""
        headers = request.headers
        if headers.get("Transfer-Encoding") is not None:
            return _error(411, "Transfer-Encoding is not supported: send a Content-Length")
        values = {value.strip() for value in headers.get_all("Content-Length") or []}
        if not values:
            if method == "POST":  # the SDK always sends one, also for an empty body
                return _error(411, "a POST needs a Content-Length header")
            return b""
        if len(values) > 1:
            return _error(400, f"conflicting Content-Length headers: {sorted(values)}")
        text = values.pop()
        if not (text.isascii() and text.isdigit()):
            return _error(400, f"Content-Length {text[:40]!r} is not a non-negative integer")
        limit = self.limits.max_body_bytes
        digits = text.lstrip("0")  # int() of a 5000-digit string raises: compare lengths first
        length = int(digits or "0") if len(digits) <= len(str(limit)) else limit + 1
        if length > limit:
            return _error(
                413,
                f"request body of {text[:40]} bytes is over the {limit}-byte limit "
                "(cookbook-serve --max-body-bytes)",
            )
        request.reader.expect_body(self.limits.body_timeout_s)
        try:
            body = request.rfile.read(length) if length else b""
        except TimeoutError:
            return _error(
                408,
                f"request body not received within {self.limits.body_timeout_s:g} s "
                "(cookbook-serve --body-timeout)",
            )
        if len(body) < length:
            return _error(400, f"request body ended after {len(body)} of {length} bytes")
        return body

    def _refuse(self, request: BaseHTTPRequestHandler) -> Reply | None:
        key = request.headers.get("X-API-Key") or ""
        bearer = (request.headers.get("Authorization") or "").removeprefix("Bearer ")
        if self._key is not None:
            # Both compared, in constant time: which header matched leaks nothing either.
            x_api_key, token = (k.encode("latin-1", "replace") for k in (key, bearer))
            if not (
                hmac.compare_digest(x_api_key, self._key) | hmac.compare_digest(token, self._key)
            ):
                return _error(401, "cookbook-serve accepts only the key it was started with")
        elif not (key.startswith("tml-") or bearer.startswith("tml-")):
            return _error(401, "cookbook-serve needs an API key starting 'tml-' (any will do)")
        why = compat.unsupported_sdk(request.headers.get("X-Stainless-Package-Version"))
        return None if why is None else _error(400, why)

    def _dispatch(
        self, method: str, endpoint: str, body: bytes, headers: Any, fault: Any
    ) -> Reply | None:
        if fault is not None and fault.kind.status is not None:
            return _error(fault.kind.status, f"cookbook-serve --faults: injected {fault.kind}")
        try:
            if method == "GET":
                reply = self.get(endpoint)
            elif (handler := self.post.get(endpoint)) is not None:
                reply = handler(body, headers)
            elif endpoint.startswith("sessions/") and endpoint.endswith("/finish"):
                reply = _json({})
            else:
                reply = _error(404, f"cookbook-serve does not implement POST {PREFIX}{endpoint}")
        except (ProtocolError, pydantic.ValidationError, CookbookError) as error:
            first = (str(error).splitlines() or [type(error).__name__])[0]
            reply = _error(400, f"{endpoint}: {first}")
        except Exception as error:  # a bug here: the client still gets an answer
            log.exception("%s failed", endpoint)
            reply = _error(500, f"{endpoint}: internal error ({type(error).__name__}), see the log")
        if isinstance(reply, Pending):
            if fault is not None and fault.kind == FaultKind.SLOW:
                reply.slow_polls = fault.polls
            reply = _future(reply)
        if fault is not None and fault.kind == FaultKind.DROP:
            return None
        return reply


def _parse(model: type[pydantic.BaseModel], body: bytes) -> Any:
    return model.model_validate_json(body or b"{}")


def _drop(request: BaseHTTPRequestHandler) -> None:
    """Close the connection with no response, as a crashed proxy would."""
    request.close_connection = True
    with contextlib.suppress(OSError):
        request.connection.shutdown(socket.SHUT_RDWR)
