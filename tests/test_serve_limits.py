"""cookbook-serve under hostile or careless clients: every probe of issue 17 gets a JSON answer
from a server that keeps serving. Raw sockets and http.client against 127.0.0.1, port 0; short
configured timeouts and waits on the server's own state, never sleeps."""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_serve import KEY, MODEL, _config, _sdk, _train

from cookbook.serve.cli import main as serve_main
from cookbook.serve.futures import FutureTable
from cookbook.serve.limits import DeadlineReader, Limits
from cookbook.serve.server import API_KEY_ENV, RunningServer, serve

# The server's timeouts in these tests: long enough for loopback, short enough to wait out.
SHORT = 0.3


@pytest.fixture(autouse=True)
def _no_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINKER_TELEMETRY", "0")


@pytest.fixture(autouse=True)
def _no_server_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every probe is answered as routine: nothing reaches the server's error log."""
    caplog.set_level(logging.WARNING, logger="cookbook.serve")
    yield
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    limits = Limits(header_timeout_s=SHORT, body_timeout_s=SHORT, max_connections=4)
    with serve(_config(tmp_path, limits=limits)) as running:
        yield running


def _address(server: RunningServer) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def _exchange(server: RunningServer, raw: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Send ``raw`` bytes as they are, read one HTTP answer: status, headers, JSON body."""
    with socket.create_connection(_address(server), timeout=30) as sock:
        sock.sendall(raw)
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = json.loads(response.read())
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def _request(method: str, endpoint: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} /api/v1/{endpoint} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _still_serving(server: RunningServer) -> None:
    assert httpx.get(f"{server.url}/api/v1/healthz").json()["status"] == "ok"


@pytest.mark.parametrize(
    ("length", "status", "detail"),
    [
        ("99999999999", 413, "request body of 99999999999 bytes is over the 33554432-byte limit"),
        ("9" * 5000, 413, "is over the 33554432-byte limit (cookbook-serve --max-body-bytes)"),
        ("-5", 400, "Content-Length '-5' is not a non-negative integer"),
        ("abc", 400, "Content-Length 'abc' is not a non-negative integer"),
        ("+5", 400, "Content-Length '+5' is not a non-negative integer"),
        (None, 411, "a POST needs a Content-Length header"),
    ],
)
def test_content_length_probes_get_a_json_answer(
    server: RunningServer, length: str | None, status: int, detail: str
) -> None:
    headers = {"X-API-Key": KEY} | ({} if length is None else {"Content-Length": length})
    got, reply_headers, body = _exchange(server, _request("POST", "create_model", headers))
    assert (got, reply_headers["connection"]) == (status, "close")
    assert detail in body["detail"]
    _still_serving(server)


def test_a_body_over_a_configured_limit_is_413(tmp_path: Path) -> None:
    with serve(_config(tmp_path, limits=Limits(max_body_bytes=100))) as server:
        headers = {"X-API-Key": KEY, "Content-Length": "101"}
        status, _, body = _exchange(server, _request("POST", "telemetry", headers, b"{" * 101))
        assert status == 413 and "101 bytes is over the 100-byte limit" in body["detail"]
        headers["Content-Length"] = "100"
        status, _, body = _exchange(server, _request("POST", "telemetry", headers, b" " * 100))
        assert (status, body) == (200, {"status": "accepted"})


def test_conflicting_lengths_and_chunked_bodies_are_refused(server: RunningServer) -> None:
    twice = _request("POST", "telemetry", {"X-API-Key": KEY, "Content-Length": "2"})
    twice = twice.replace(b"\r\n\r\n", b"\r\nContent-Length: 3\r\n\r\n")
    assert _exchange(server, twice)[0] == 400
    chunked = {"X-API-Key": KEY, "Transfer-Encoding": "chunked"}
    assert _exchange(server, _request("POST", "telemetry", chunked, b"0\r\n\r\n"))[0] == 411


def test_a_slow_client_gets_408_and_frees_its_connection(server: RunningServer) -> None:
    # Headers that never end: answered once --header-timeout has passed since the first byte.
    partial = b"POST /api/v1/create_model HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    status, _, body = _exchange(server, partial)
    assert status == 408 and "--header-timeout" in body["detail"]
    # A body that stops short: answered once --body-timeout has passed.
    headers = {"X-API-Key": KEY, "Content-Length": "100"}
    status, _, body = _exchange(server, _request("POST", "telemetry", headers, b"{" * 10))
    assert status == 408 and "--body-timeout" in body["detail"]
    assert server.httpd.slots.wait_for(0)
    _still_serving(server)


def test_an_idle_keep_alive_connection_is_closed_silently(tmp_path: Path) -> None:
    with serve(_config(tmp_path, limits=Limits(keep_alive_s=SHORT))) as server:
        with socket.create_connection(_address(server), timeout=30) as sock:
            assert sock.recv(100) == b""  # closed, no unsolicited answer
        assert server.httpd.slots.wait_for(0)


def test_connections_past_the_pool_get_503_never_a_hang(tmp_path: Path) -> None:
    with serve(_config(tmp_path, limits=Limits(max_connections=1))) as server:
        holder = socket.create_connection(_address(server), timeout=30)
        assert server.httpd.slots.wait_for(1)  # the pool's one connection is taken
        status, headers, body = _exchange(server, _request("GET", "healthz", {}))
        assert (status, headers["connection"]) == (503, "close")
        assert "maximum of 1 connections (--max-connections)" in body["detail"]
        holder.close()
        assert server.httpd.slots.wait_for(0)
        _still_serving(server)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"PUT /api/v1/create_model HTTP/1.1\r\nHost: x\r\n\r\n", 501),
        (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 101 + b"\r\n", 431),
    ],
    ids=["request-line", "method", "uri-length", "header-count"],
)
def test_the_http_layers_own_errors_are_json(
    server: RunningServer, raw: bytes, status: int
) -> None:
    got, headers, body = _exchange(server, raw)
    assert (got, headers["content-type"]) == (status, "application/json") and body["detail"]
    _still_serving(server)


def test_a_handler_bug_is_a_json_500_not_a_dropped_connection(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(model_id: str) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(server.engine, "get_info", broken)
    headers = {"X-API-Key": KEY, "Content-Length": "16"}
    status, _, body = _exchange(server, _request("POST", "get_info", headers, b'{"model_id":"m"}'))
    assert (status, body) == (
        500,
        {"detail": "get_info: internal error (RuntimeError), see the log"},
    )
    assert [r.getMessage() for r in caplog.records] == ["get_info failed"]
    caplog.clear()  # the one expected error: logged (with its traceback), not sent


# --- auth ----------------------------------------------------------------------------------


def test_with_an_api_key_only_that_key_is_accepted(tmp_path: Path) -> None:
    with serve(_config(tmp_path, api_key=KEY)) as server:
        body = b"{}"
        for key, status in ((KEY, 200), ("tml-other", 401), (KEY + "x", 401), ("", 401)):
            headers = {"X-API-Key": key, "Content-Length": str(len(body))}
            got, _, reply = _exchange(server, _request("POST", "telemetry", headers, body))
            assert got == status, key
        assert reply["detail"] == "cookbook-serve accepts only the key it was started with"
        bearer = {"Authorization": f"Bearer {KEY}", "Content-Length": str(len(body))}
        assert _exchange(server, _request("POST", "telemetry", bearer, body))[0] == 200
        with _sdk(server) as sdk:  # the SDK sends it as it sends any key
            sdk.create_lora_training_client(base_model=MODEL, rank=8).result()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--allow-remote"], f"--allow-remote needs --api-key KEY (or {API_KEY_ENV})"),
        (["--host", "0.0.0.0", "--allow-remote"], "--allow-remote needs --api-key"),
        (["--api-key", "sk-1"], "--api-key: must start with 'tml-'"),
    ],
)
def test_allow_remote_without_a_key_is_a_one_line_error_writing_nothing(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    state, port_file = tmp_path / "s", tmp_path / "port"
    argv = ["--port", "0", "--state-dir", str(state), "--port-file", str(port_file), *args]
    assert serve_main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err
    assert not state.exists() and not port_file.exists()


@pytest.mark.parametrize("key", [None, KEY], ids=["loopback-any-tml", "env-key"])
def test_the_banner_says_which_keys_are_accepted(key: str | None, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != API_KEY_ENV}
    if key is not None:
        env[API_KEY_ENV] = key
    command = [sys.executable, "-m", "cookbook.serve", "--port", "0", "--state-dir", str(tmp_path)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as proc:
        banner = [proc.stdout.readline() for _ in range(3)]  # printed once listening
        url = banner[0].split()[-1]
        refused = httpx.post(f"{url}/api/v1/telemetry", json={}, headers={"X-API-Key": "tml-x"})
        proc.terminate()
        proc.communicate(timeout=60)
    if key is None:
        assert "  auth: any key starting tml- (loopback only; --api-key KEY" in banner[2]
        assert refused.status_code == 200
    else:
        assert banner[2] == f"  auth: only the key given by --api-key / ${API_KEY_ENV}\n"
        assert refused.status_code == 401 and KEY not in "".join(banner)


# --- finished results ----------------------------------------------------------------------


def _post(server: RunningServer, endpoint: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.url}/api/v1/{endpoint}", json=body, headers={"X-API-Key": KEY})


def _create(server: RunningServer, session: str, seq: int) -> str:
    body = {"session_id": session, "model_seq_id": seq, "base_model": MODEL}
    return _post(server, "create_model", body).json()["request_id"]


def test_a_retrieve_after_the_grace_says_the_result_was_evicted(tmp_path: Path) -> None:
    with serve(_config(tmp_path, limits=Limits(result_grace_s=0))) as server:
        request_id = _create(server, "s", 0)
        assert _post(server, "retrieve_future", {"request_id": request_id}).status_code == 200
        late = _post(server, "retrieve_future", {"request_id": request_id})
        assert (late.status_code, late.json()) == (
            404,
            {
                "detail": f"request_id '{request_id}': its result was evicted: retrieved, "
                "then kept 0 s (grace)"
            },
        )
        # The resubmitted operation maps to its evicted request: answered, never re-applied.
        assert _create(server, "s", 0) == request_id
        assert [c["call"] for c in server.recorded()] == ["create_lora_training_client"]
        unknown = _post(server, "retrieve_future", {"request_id": "req-999999"})
        assert unknown.json()["detail"] == "unknown request_id 'req-999999'"


def test_at_most_max_results_are_held(tmp_path: Path) -> None:
    with serve(_config(tmp_path, limits=Limits(max_results=1))) as server:
        first, second = _create(server, "s", 0), _create(server, "s", 1)
        # Waits for the second: the first finished before it, so the cap has evicted it.
        assert _post(server, "retrieve_future", {"request_id": second}).status_code == 200
        late = _post(server, "retrieve_future", {"request_id": first})
        assert late.status_code == 404
        assert late.json()["detail"].endswith("evicted: 1 newer results are held (cap)")
        assert server.engine.futures.held == 1


def test_the_table_stays_bounded_and_forgets_old_identities() -> None:
    table = FutureTable(grace_s=1000, max_results=3)
    try:
        pending = [table.submit(("op", n), lambda n=n: n) for n in range(20)]
        for p in pending:
            p.done.wait()
        assert table.held == 3
        assert [table.get(p.request_id) is not None for p in pending[-3:]] == [True] * 3
        assert table.expired(pending[0].request_id) == "its result was evicted long ago"
        assert table.expired(pending[-4].request_id).endswith("(cap)")
        # Identities of results evicted long ago are forgotten (memory stays bounded).
        assert len(table._by_identity) <= 2 * table.max_results
    finally:
        table.close()


def test_a_lost_retrieve_answer_is_answered_again_within_the_grace(tmp_path: Path) -> None:
    """The SDK re-sends a retrieve whose answer was dropped; the result is still there."""
    with serve(_config(tmp_path / "clean")) as clean, _sdk(clean) as sdk:
        expected = _train(sdk)
    faults = "drop@retrieve_future#2+4+6"
    with serve(_config(tmp_path / "lossy", faults)) as server, _sdk(server) as sdk:
        assert _train(sdk) == expected
        assert len(server.injected()) == 3


def test_a_zstd_bomb_is_refused_before_it_is_all_in_memory(tmp_path: Path) -> None:
    import zstandard

    bomb = zstandard.ZstdCompressor(level=19).compress(b"\0" * (64 * 1024 * 1024))
    limits = Limits(max_body_bytes=1024 * 1024)
    with serve(_config(tmp_path, limits=limits)) as server:
        headers = {"X-API-Key": KEY, "Content-Encoding": "zstd", "Content-Length": str(len(bomb))}
        status, _, body = _exchange(server, _request("POST", "forward_backward", headers, bomb))
    assert (status, body["detail"]) == (
        400,
        "forward_backward: body: zstd data decompresses to over 1048576 bytes",
    )


def test_a_trickling_client_cannot_stretch_the_header_deadline() -> None:
    """The deadline runs from the request's first byte; later bytes do not move it (a fake
    clock stands in for time passing)."""
    now = [0.0]
    server_side, client_side = socket.socketpair()
    with server_side, client_side:
        reader = DeadlineReader(server_side, clock=lambda: now[0])
        reader.expect_request(keep_alive_s=30, header_timeout_s=1)
        buffer = bytearray(10)
        now[0] = 20.0  # idle for 20 s: within the keep-alive
        client_side.sendall(b"P")
        assert reader.readinto(memoryview(buffer)) == 1  # first byte: header deadline 21 s
        now[0] = 20.9
        client_side.sendall(b"O")
        assert reader.readinto(memoryview(buffer)) == 1
        now[0] = 21.0
        client_side.sendall(b"S")  # a byte is there, but the deadline has passed
        with pytest.raises(TimeoutError):
            reader.readinto(memoryview(buffer))
        assert reader.timed_out and reader.received == 2
