"""The server's request futures: every operation is queued, applied once, and retrieved later.

The SDK submits an operation, gets back a request id at once and polls ``retrieve_future``
until the result is there. A client that retries a submission (a 5xx, a dropped connection)
sends the same operation again; the submission's *identity* (model + ``seq_id``, session +
``model_seq_id``, ...) maps the retry back to the first request id, so an operation is never
applied twice, however often it is sent. Operations run one at a time on a single worker
thread, in arrival order: that is the order the SDK's per-client turn mechanism sends them in,
and torch on CPU gains nothing from running two at once.

Finished results are not kept forever: one stays ``grace_s`` after its first retrieval (the
SDK asks again when an answer is lost on the way) and at most ``max_results`` are held (the
oldest retrieved go first, then the oldest never retrieved). A retrieve that comes later gets
:meth:`FutureTable.expired`'s reason. The identity of an evicted operation still maps to its
request id (until ``max_results`` later evictions), so a late resubmission is answered
"expired", never applied a second time.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from cookbook.exceptions import CookbookError

log = logging.getLogger("cookbook.serve")
_REQUEST_ID = re.compile(r"req-(\d{6,})")


@dataclass
class Pending:
    """One submitted operation. ``slow_polls`` polls answer "try again" even once it is done."""

    request_id: str
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: str | None = None
    category: str = "server"
    slow_polls: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class FutureTable:
    """Request ids -> :class:`Pending`, fed by one worker thread."""

    def __init__(self, grace_s: float = 300.0, max_results: int = 10_000) -> None:
        self.grace_s = grace_s
        self.max_results = max_results
        self._lock = threading.Lock()
        self._by_id: dict[str, Pending] = {}
        self._by_identity: dict[Hashable, str] = {}
        self._identity_of: dict[str, Hashable] = {}
        # Finished requests, oldest first: never retrieved, and retrieved (-> evict-after time).
        self._unretrieved: OrderedDict[str, None] = OrderedDict()
        self._retrieved: OrderedDict[str, float] = OrderedDict()
        # Why recent evictions happened, for the late retrieve's message (bounded too).
        self._evicted: OrderedDict[str, str] = OrderedDict()
        self._queue: queue.Queue[tuple[Pending, Callable[[], Any]] | None] = queue.Queue()
        self._count = 0
        self._worker = threading.Thread(target=self._work, name="cookbook-serve-engine")
        self._worker.daemon = True
        self._worker.start()

    def submit(self, identity: Hashable | None, operation: Callable[[], Any]) -> Pending:
        """Queue ``operation`` unless ``identity`` was seen, then return the first request.
        ``identity`` None (a client that sends no sequence number) never dedupes."""
        with self._lock:
            self._sweep()
            if identity is not None and identity in self._by_identity:
                request_id = self._by_identity[identity]
                # Evicted: answer with its id (its retrieve says why), never apply it again.
                return self._by_id.get(request_id) or Pending(request_id)
            self._count += 1
            pending = Pending(f"req-{self._count:06d}")
            self._by_id[pending.request_id] = pending
            if identity is not None:
                self._by_identity[identity] = pending.request_id
                self._identity_of[pending.request_id] = identity
        self._queue.put((pending, operation))
        return pending

    def get(self, request_id: str) -> Pending | None:
        with self._lock:
            self._sweep()
            return self._by_id.get(request_id)

    def retrieved(self, pending: Pending) -> None:
        """``pending``'s result was answered: it stays ``grace_s`` longer (from the first)."""
        with self._lock:
            if pending.request_id in self._unretrieved:  # the first retrieval
                del self._unretrieved[pending.request_id]
                self._retrieved[pending.request_id] = time.monotonic() + self.grace_s
            self._sweep()

    def expired(self, request_id: str) -> str | None:
        """Why ``request_id`` (one this server handed out) has no result any more; None when
        it is held or was never handed out."""
        with self._lock:
            if request_id in self._by_id:
                return None
            if (why := self._evicted.get(request_id)) is not None:
                return why
            match = _REQUEST_ID.fullmatch(request_id)
            if match is None or not 0 < int(match.group(1)) <= self._count:
                return None
            return "its result was evicted long ago"

    @property
    def held(self) -> int:
        """Finished results held now."""
        with self._lock:
            return len(self._unretrieved) + len(self._retrieved)

    def _sweep(self) -> None:
        """Evict what is past its grace, then the oldest beyond the cap (lock held)."""
        now = time.monotonic()
        while self._retrieved:
            request_id, deadline = next(iter(self._retrieved.items()))
            if deadline > now:
                break
            self._evict(
                self._retrieved, request_id, f"retrieved, then kept {self.grace_s:g} s (grace)"
            )
        while len(self._retrieved) + len(self._unretrieved) > self.max_results:
            oldest = self._retrieved or self._unretrieved
            request_id = next(iter(oldest))
            self._evict(oldest, request_id, f"{self.max_results} newer results are held (cap)")

    def _evict(self, held: OrderedDict[str, Any], request_id: str, why: str) -> None:
        del held[request_id]
        self._by_id.pop(request_id, None)
        self._evicted[request_id] = f"its result was evicted: {why}"
        while len(self._evicted) > self.max_results:
            forgotten, _ = self._evicted.popitem(last=False)
            if (identity := self._identity_of.pop(forgotten, None)) is not None:
                del self._by_identity[identity]

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            pending, operation = item
            try:
                pending.result = operation()
            except CookbookError as error:
                # The client's mistake (unknown model, bad path...): its message, category user.
                pending.error, pending.category = str(error), "user"
            except Exception as error:
                log.exception("operation %s failed", pending.request_id)
                pending.error = f"{type(error).__name__}: {error}"
            finally:
                with self._lock:
                    self._unretrieved[pending.request_id] = None
                    self._sweep()
                pending.done.set()

    def close(self) -> None:
        """Finish the queued operations, then stop the worker."""
        self._queue.put(None)
        self._worker.join()
