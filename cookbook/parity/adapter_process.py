"""The conformance runner's side of an adapter: the port's subprocess, spoken to in JSON lines
(docs/conformance.md), restarted after it crashes, hangs or breaks the protocol, so one bad
answer fails one item rather than the run. :mod:`cookbook.parity.adapter` is the other side,
our own package behind the same protocol."""

from __future__ import annotations

import contextlib
import json
import queue
import shlex
import subprocess
import tempfile
import threading
from typing import Any, NoReturn

from cookbook.exceptions import ConfigurationError

PROTOCOL_VERSION = 1
MAX_RESTARTS = 5


class AdapterFailure(Exception):
    """The adapter crashed, timed out or broke the protocol while answering one request."""


class AdapterProcess:
    """The adapter subprocess; restarted on the next request after it fails."""

    def __init__(self, command: str, timeout: float):
        self.argv = shlex.split(command)
        if not self.argv:
            raise ConfigurationError("--conformance: empty adapter command")
        self.timeout = timeout
        self.restarts = -1
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()  # replaced by each start
        # Outlives any one adapter process (its tail explains a crash); closed in __exit__.
        self._stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115
        self._next_id = 0

    def _start(self) -> subprocess.Popen[str]:
        self.restarts += 1
        if self.restarts > MAX_RESTARTS:
            raise ConfigurationError(
                f"adapter `{shlex.join(self.argv)}` failed {MAX_RESTARTS} times; giving up: "
                f"{self._stderr_tail()}"
            )
        try:
            proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                text=True,
                encoding="utf-8",
                errors="replace",  # bytes that are not UTF-8 fail the item, not the reader
                bufsize=1,
            )
        except OSError as exc:
            raise ConfigurationError(
                f"--conformance: cannot start {self.argv[0]!r}: {exc}"
            ) from None
        lines: queue.Queue[str | None] = queue.Queue()
        stdout = proc.stdout

        def pump() -> None:  # a thread, so a silent adapter times out instead of hanging us
            assert stdout is not None
            for line in stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        self._proc, self._lines = proc, lines
        return proc

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        text = self._stderr.read().strip().splitlines()
        return " | ".join(text[-3:]) if text else "(nothing on stderr)"

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        proc = self._proc if self._proc and self._proc.poll() is None else self._start()
        self._next_id += 1
        request_id = self._next_id
        try:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps({"id": request_id, "op": op, **fields}) + "\n")
            proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._fail(f"exited (code {proc.wait()}) before reading the request")
        try:
            line = self._lines.get(timeout=self.timeout)
        except queue.Empty:
            self._fail(f"no answer within {self.timeout:g}s")
        if line is None:
            self._fail(f"exited (code {proc.wait()}) without answering: {self._stderr_tail()}")
        try:
            response = json.loads(line)
        except json.JSONDecodeError:
            self._fail(f"answered with a line that is not JSON: {line[:120]!r}")
        if not isinstance(response, dict) or response.get("id") != request_id:
            self._fail(f"answer is not an object with id {request_id}: {line[:120]!r}")
        return response

    def _fail(self, message: str) -> NoReturn:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()  # a hung or confused adapter gets no second chance at this request
            proc.wait()
        raise AdapterFailure(message)

    def __enter__(self) -> AdapterProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        self._stderr.close()

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
