"""Fuzzing every cookbook-serve endpoint: random JSON, protobuf-ish bytes, headers and paths.

Each example is one raw HTTP exchange with a server that lives for the whole module: the answer
is always well-formed (JSON, or the SDK's protobuf for a result), an error always carries a
``detail``, no input makes a handler fail (500) or the connection drop, and afterwards the same
server trains and samples exactly as a fresh one does. Examples per test: the hypothesis
profile's (``quick`` 30 in ``nox -s tests``, ``fuzz`` under ``nox -s fuzz``).
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import tinker
from hypothesis import given
from hypothesis import strategies as st
from test_serve import KEY, MODEL, _config, _sdk, _train
from tinker import types
from tinker.proto.request_conv import forward_backward_request_to_proto

from cookbook.serve.limits import Limits
from cookbook.serve.server import RunningServer, serve

pytestmark = pytest.mark.fuzz

# The JSON endpoints and the SDK request type each decodes (None: any body is accepted).
JSON_ENDPOINTS: dict[str, type | None] = {
    "client/config": types.ClientConfigRequest,
    "client/dynamic_config": None,
    "create_session": types.CreateSessionRequest,
    "session_heartbeat": None,
    "telemetry": None,
    "create_model": types.CreateModelRequest,
    "get_info": types.GetInfoRequest,
    "optim_step": types.OptimStepRequest,
    "save_weights": types.SaveWeightsRequest,
    "save_weights_for_sampler": types.SaveWeightsForSamplerRequest,
    "load_weights": types.LoadWeightsRequest,
    "create_sampling_session": types.CreateSamplingSessionRequest,
    "asample": types.SampleRequest,
    "retrieve_future": types.FutureRetrieveRequest,
    "sessions/s/finish": None,
    "unload_model": None,
}
GET_ENDPOINTS = ["healthz", "get_server_capabilities", "samplers/x", "training_runs/x", "nope"]
FIELDS = sorted({name for t in JSON_ENDPOINTS.values() if t for name in t.model_fields})

_token = st.text("abcdefghijklmnopqrstuvwxyz-_0123456789", min_size=1, max_size=12)
_value_text = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=30)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["req-000001", "session-1-1", "session-1-1:train:0", MODEL, "tml-x"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | _token, inner, max_size=6)
    ),
    max_leaves=12,
)
_headers = st.fixed_dictionaries(
    {},
    optional={
        "Content-Encoding": st.sampled_from(["zstd", "gzip", "identity", "x"]) | _value_text,
        "X-Stainless-Package-Version": st.just(tinker.__version__) | _value_text,
        "Content-Type": st.sampled_from(["application/json", "application/x-protobuf"]),
        "Authorization": _value_text,
        "X-Fuzz": _value_text,
    },
)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    limits = Limits(header_timeout_s=5, body_timeout_s=5)
    with serve(_config(tmp_path_factory.mktemp("fuzz"), limits=limits)) as server:
        yield server


def _exchange(
    server: RunningServer, method: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, str, bytes]:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()  # raises on a dropped connection or a malformed answer
        return response.status, response.getheader("Content-Type") or "", response.read()


def _check(status: int, content_type: str, body: bytes) -> None:
    assert status != 500, body  # 500 is a handler bug; bad input is the client's error
    if content_type == "application/json":
        answer = json.loads(body)
        if status >= 400:
            assert answer["detail"] and "Traceback" not in answer["detail"]
    else:  # only results are protobuf
        assert (status, content_type) == (200, "application/x-protobuf")


def _key(auth: str) -> dict[str, str]:
    return {"X-API-Key": KEY} if auth == "good" else {"X-API-Key": auth}


@given(
    endpoint=st.sampled_from(sorted(JSON_ENDPOINTS)),
    body=_json.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=200),
    headers=_headers,
    auth=st.sampled_from(["good", "good", "tml-other", "sk-x", ""]),
)
def test_any_json_or_bytes_to_any_post_endpoint(
    fuzz_server: RunningServer, endpoint: str, body: bytes, headers: dict, auth: str
) -> None:
    path = f"/api/v1/{endpoint}"
    _check(*_exchange(fuzz_server, "POST", path, body, {**headers, **_key(auth)}))


def _valid_forward_backward() -> bytes:
    datum = types.Datum(
        model_input=types.ModelInput.from_ints([1, 2, 3]),
        loss_fn_inputs={"weights": [1.0, 0.0, 1.0], "target_tokens": [2, 3, 4]},
    )
    request = types.ForwardBackwardRequest(
        forward_backward_input=types.ForwardBackwardInput(data=[datum], loss_fn="cross_entropy"),
        model_id="session-1-1:train:0",
        seq_id=1,
    )
    return forward_backward_request_to_proto(request).SerializeToString()


VALID_FB = _valid_forward_backward()


@st.composite
def _mutated_protobuf(draw: st.DrawFn) -> bytes:
    """The SDK's forward_backward bytes with flipped bytes, cuts and insertions."""
    data = bytearray(VALID_FB)
    for _ in range(draw(st.integers(1, 6))):
        where = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip" and where < len(data):
            data[where] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[where : where + draw(st.integers(1, 8))]
        else:
            data[where:where] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


@given(
    body=_mutated_protobuf() | st.binary(max_size=300),
    endpoint=st.sampled_from(["forward_backward", "forward"]),
    headers=_headers,
)
def test_any_protobuf_bytes_to_forward_backward(
    fuzz_server: RunningServer, body: bytes, endpoint: str, headers: dict
) -> None:
    headers = {**headers, **_key("good")}
    _check(*_exchange(fuzz_server, "POST", f"/api/v1/{endpoint}", body, headers))


@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"]),
    path=st.sampled_from([f"/api/v1/{e}" for e in GET_ENDPOINTS])
    | st.text("abcxyz/._-%?=&0123456789", max_size=40).map(lambda p: "/" + p),
    body=st.binary(max_size=50),
    headers=_headers,
)
def test_any_method_and_path(
    fuzz_server: RunningServer, method: str, path: str, body: bytes, headers: dict
) -> None:
    status, content_type, answer = _exchange(
        fuzz_server, method, path, body, {**headers, **_key("good")}
    )
    if method == "HEAD":  # answered without a body, as HTTP says
        assert (status, answer) == (501, b"")
    else:
        _check(status, content_type, answer)


def test_after_the_fuzz_the_server_trains_like_a_fresh_one(
    fuzz_server: RunningServer, tmp_path: Path
) -> None:
    """Runs last in this module: nothing the fuzz sent has changed what a client gets."""
    served = fuzz_server.httpd.routes.served
    assert served > 0 and fuzz_server.httpd.slots.wait_for(0)  # no fuzz connection left open
    with _sdk(fuzz_server) as sdk:
        after_fuzz = _train(sdk)
    with serve(_config(tmp_path)) as fresh, _sdk(fresh) as sdk:
        assert _train(sdk) == after_fuzz
    print(f"fuzz: {served} requests served before the training run")  # shown with -s
