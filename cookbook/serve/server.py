"""Running the server: configuration, loopback-only binding, the call recording.

``with serve(ServeConfig(...)) as server:`` runs it on a background thread (tests, the parity
harness); :mod:`cookbook.serve.cli` runs it in the foreground. ``port=0`` picks a free port,
read back from ``server.url``: callers synchronise on that, never on a sleep.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import logging
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pydantic import RootModel

from cookbook.backends.local.config import LocalModelConfig
from cookbook.exceptions import ConfigurationError
from cookbook.serve.engine import Engine, ModelMap
from cookbook.serve.faults import FaultInjector, FaultPlan
from cookbook.serve.futures import FutureTable
from cookbook.serve.limits import ConnectionSlots, DeadlineReader, Limits
from cookbook.serve.routes import Routes

DEFAULT_MODEL = "*"
API_KEY_ENV = "COOKBOOK_SERVE_API_KEY"
log = logging.getLogger("cookbook.serve")


@dataclass
class ServeConfig:
    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    seed: int = 0
    model_map: ModelMap = field(default_factory=ModelMap)
    faults: FaultPlan | None = None
    record: Path | None = None
    long_poll_s: float = 20.0
    allow_remote: bool = False
    api_key: str | None = None  # None: any tml- key (loopback only)
    limits: Limits = field(default_factory=Limits)
    keep_calls: bool = True  # RunningServer.recorded() for in-process callers; the CLI counts


class _ModelMapFile(RootModel[dict[str, LocalModelConfig]]):
    """``base model name -> local stand-in`` (``'*'`` for every other model)."""


def load_model_map(path: Path) -> ModelMap:
    """A ``--model-map`` YAML file; errors name the file, line and field."""
    from cookbook.specs.loader import load_model_file

    entries = load_model_file(path, _ModelMapFile).root
    default = entries.pop(DEFAULT_MODEL, None)
    return ModelMap(entries, default)


def check_bind(host: str, allow_remote: bool, api_key: str | None = None) -> None:
    """Refuse to listen beyond this machine unless asked, and to be asked without a key:
    without ``--api-key`` the server takes any ``tml-`` key, which on a network is no auth."""
    if allow_remote and api_key is None:
        raise ConfigurationError(
            f"--allow-remote needs --api-key KEY (or {API_KEY_ENV}): without one any tml- key "
            "is accepted"
        )
    if api_key is not None and not api_key.startswith("tml-"):
        raise ConfigurationError("--api-key: must start with 'tml-' (the SDK sends no other key)")
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror as error:
        raise ConfigurationError(f"--host {host!r}: cannot resolve ({error})") from None
    remote = sorted(a for a in addresses if not ipaddress.ip_address(a.split("%")[0]).is_loopback)
    if remote and not allow_remote:
        raise ConfigurationError(
            f"--host {host!r} is reachable from other machines ({', '.join(remote)}); "
            "bind 127.0.0.1, or pass --allow-remote with --api-key KEY"
        )


class Recorder:
    """Applied calls, in apply order; appended to ``path`` a whole line at a time, and kept in
    memory (``calls``) only when ``keep``: a long-running server counts them instead."""

    def __init__(self, path: Path | None, keep: bool = True) -> None:
        self.calls: list[dict[str, Any]] = []
        self.count = 0
        self._path = path
        self._keep = keep
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")

    def __call__(self, call: dict[str, Any]) -> None:
        with self._lock:
            self.count += 1
            if self._keep:
                self.calls.append(call)
            if self._path is not None:
                with self._path.open("a") as out:
                    out.write(json.dumps(call, sort_keys=True) + "\n")


class Handler(BaseHTTPRequestHandler):
    """One connection. Reads through a :class:`DeadlineReader` (keep-alive, header and body
    deadlines), and answers even the stdlib's own errors (a bad request line, too many
    headers, an unknown method) as JSON."""

    protocol_version = "HTTP/1.1"  # keep-alive: the SDK pools its connections
    server: _HTTPServer
    busy = False  # an overflow connection: read and answered 503

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the stdlib's reader: the socket closes only once its files do
        self.reader = DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self.reader)

    def handle_one_request(self) -> None:
        limits = self.server.routes.limits
        self.reader.expect_request(limits.keep_alive_s, limits.header_timeout_s)
        self._answered = False
        super().handle_one_request()  # a timeout there: logged, connection closed, no answer
        if self.reader.timed_out and self.reader.received and not self._answered:
            # Part of a request came, the rest did not: answer it. (An idle keep-alive
            # connection that sent nothing is closed silently, as HTTP allows.)
            self.send_error(
                408,
                f"request headers not received within {limits.header_timeout_s:g} s "
                "(cookbook-serve --header-timeout)",
            )

    def send_response(self, code: int, message: str | None = None) -> None:
        self._answered = True
        super().send_response(code, message)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's errors, as JSON; the connection is closed after them."""
        detail = message or self.responses.get(code, ("error",))[0]
        body = json.dumps({"detail": detail}).encode()
        if self.request_version == "HTTP/0.9":  # an unparsed request line: answer in HTTP/1.1
            self.request_version = "HTTP/1.1"
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.settimeout(self.server.routes.limits.body_timeout_s)
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.routes.handle(self, "GET")

    def do_POST(self) -> None:
        self.server.routes.handle(self, "POST")

    def log_message(self, format: str, *args: Any) -> None:
        """Access lines go through :mod:`logging` (``cookbook-serve -v``), not stderr."""


class _HTTPServer(ThreadingHTTPServer):
    """One thread per connection, at most ``slots.size`` of them (plus a few answering 503)."""

    daemon_threads = True
    routes: Routes
    slots: ConnectionSlots

    def process_request(self, request: Any, client_address: Any) -> None:
        granted = self.slots.acquire()
        if granted is None:  # a flood past the pool and its overflow: no thread for it
            log.warning("connection from %s closed unanswered: server full", client_address)
            self.shutdown_request(request)
            return
        thread = threading.Thread(
            target=self._serve_connection, args=(request, client_address, granted), daemon=True
        )
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any, granted: bool) -> None:
        try:
            (Handler if granted else _BusyHandler)(request, client_address, self)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self.slots.release(granted)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up (a cancelled poll, a closed pool) is routine; anything else
        is logged with its traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            log.debug("client %s hung up: %s", client_address, error)
        else:
            log.exception("error serving %s", client_address)


class _BusyHandler(Handler):
    """A connection past ``--max-connections``: its request is read and answered 503."""

    busy = True


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class RunningServer:
    """A started server: its URL, the calls it applied, the faults it injected."""

    def __init__(self, config: ServeConfig) -> None:
        check_bind(config.host, config.allow_remote, config.api_key)
        ipv6 = ":" in config.host
        limits = config.limits
        # Bind first: a taken port must fail before anything is written to the state dir.
        self.httpd = (_HTTPServer6 if ipv6 else _HTTPServer)((config.host, config.port), Handler)
        self.httpd.slots = ConnectionSlots(limits.max_connections)
        self.recorder = Recorder(config.record, config.keep_calls)
        futures = FutureTable(limits.result_grace_s, limits.max_results)
        self.engine = Engine(
            config.state_dir, config.seed, config.model_map, self.recorder, futures
        )
        self.faults = FaultInjector(config.faults) if config.faults is not None else None
        self.httpd.routes = Routes(
            self.engine, self.faults, config.long_poll_s, limits, config.api_key
        )
        host, port = self.httpd.server_address[:2]
        self.url = f"http://{f'[{host}]' if ipv6 else host}:{port}"

    def recorded(self) -> list[dict[str, Any]]:
        return list(self.recorder.calls)

    def injected(self) -> list[dict[str, Any]]:
        return self.faults.injected if self.faults is not None else []

    def serve_forever(self) -> None:
        # The poll interval bounds how long shutdown() waits; requests are not delayed by it.
        self.httpd.serve_forever(poll_interval=0.05)

    def shutdown(self) -> None:
        """Stop accepting requests, then let queued operations finish."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.engine.close()


@contextmanager
def serve(config: ServeConfig) -> Iterator[RunningServer]:
    """Run the server on a background thread for the duration of the block."""
    server = RunningServer(config)
    thread = threading.Thread(target=server.serve_forever, name="cookbook-serve", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join()
