"""What one client may cost the server: body size, time per request phase, connections.

A client on the same machine (or, with ``--allow-remote``, the network) can send a huge
``Content-Length``, trickle its headers a byte at a time or open connections until threads
run out. Each limit turns that into a clean JSON answer for that client instead of a cost to
every other one. The defaults fit the SDK's largest real traffic with room to spare (see
:class:`Limits`); all are ``cookbook-serve`` flags.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

MIB = 1024 * 1024
# Connections past the pool still get their 503 read and answered by a handler; beyond this
# many of those at once a connection is closed unanswered (only a flood gets there).
OVERFLOW_CONNECTIONS = 8


@dataclass(frozen=True)
class Limits:
    """Per-request and per-server bounds.

    ``max_body_bytes``: the SDK splits a forward_backward batch into requests of at most
    ``fwdbwd_max_chunk_bytes_count`` = 5,000,000 estimated bytes (4 per token plus the tensors'
    bytes, ~ the protobuf size) but sends a single datum above that alone; 32 MiB is 6.7x the
    chunk cap, i.e. a lone datum of ~2.8M tokens with targets and weights, while the worst case
    of every pooled connection sending a full body stays ``max_connections`` x 32 MiB = 2 GiB.
    Sampling prompts (JSON) are far smaller.

    ``keep_alive_s`` bounds an idle pooled connection between requests (closed silently, as
    HTTP allows; the SDK reconnects), ``header_timeout_s`` a request's line and headers from
    their first byte, ``body_timeout_s`` its body (and the writing of the answer).

    ``result_grace_s``: a finished operation's result stays retrievable this long after it
    was first retrieved (the SDK asks again when an answer is lost on the way);
    ``max_results``: at most this many finished results are held, oldest retrieved first.
    """

    max_body_bytes: int = 32 * MIB
    max_connections: int = 64
    keep_alive_s: float = 60.0
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    result_grace_s: float = 300.0
    max_results: int = 10_000


class DeadlineReader(io.RawIOBase):
    """A socket reader with one deadline per phase instead of one timeout per ``recv``:
    a client sending one byte just before each timeout cannot stretch a phase forever.

    :meth:`expect_request` starts a request: the keep-alive deadline until its first byte
    arrives, then the header deadline from that byte; :meth:`expect_body` starts the body.
    """

    def __init__(self, sock: socket.socket, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._sock = sock
        self._clock = clock
        self._deadline = clock()
        self._header_s: float | None = None
        self.received = 0  # bytes of the current request seen so far
        self.timed_out = False

    def readable(self) -> bool:
        return True

    def expect_request(self, keep_alive_s: float, header_timeout_s: float) -> None:
        self._deadline = self._clock() + keep_alive_s
        self._header_s = header_timeout_s
        self.received = 0
        self.timed_out = False

    def expect_body(self, body_timeout_s: float) -> None:
        self._deadline = self._clock() + body_timeout_s
        self._header_s = None

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        remaining = self._deadline - self._clock()
        if remaining <= 0:
            self.timed_out = True
            raise TimeoutError("deadline passed")
        self._sock.settimeout(remaining)
        try:
            count = self._sock.recv_into(buffer)
        except TimeoutError:
            self.timed_out = True
            raise
        if count and self.received == 0 and self._header_s is not None:
            self._deadline = self._clock() + self._header_s
        self.received += count
        return count


class ConnectionSlots:
    """How many connections are being served, bounded: the pool plus a small overflow whose
    handlers only answer 503. ``changed`` is notified on every change (tests wait on it)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.in_use = 0
        self.overflow = 0
        self.changed = threading.Condition()

    def acquire(self) -> bool | None:
        """True: served; False: answered busy; None: no room even for that, close it."""
        with self.changed:
            if self.in_use < self.size:
                self.in_use += 1
                granted: bool | None = True
            elif self.overflow < OVERFLOW_CONNECTIONS:
                self.overflow += 1
                granted = False
            else:
                granted = None
            self.changed.notify_all()
        return granted

    def release(self, served: bool) -> None:
        with self.changed:
            if served:
                self.in_use -= 1
            else:
                self.overflow -= 1
            self.changed.notify_all()

    def wait_for(self, in_use: int, timeout: float = 30.0) -> bool:
        """Block until exactly ``in_use`` pooled connections are open (for tests and tools)."""
        with self.changed:
            return self.changed.wait_for(lambda: self.in_use == in_use, timeout)
