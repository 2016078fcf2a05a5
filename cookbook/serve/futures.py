"""The server's request futures: every operation is queued, applied once, and retrieved later.

The SDK submits an operation, gets back a request id at once and polls ``retrieve_future``
until the result is there. A client that retries a submission (a 5xx, a dropped connection)
sends the same operation again; the submission's *identity* (model + ``seq_id``, session +
``model_seq_id``, ...) maps the retry back to the first request id, so an operation is never
applied twice, however often it is sent. Operations run one at a time on a single worker
thread, in arrival order: that is the order the SDK's per-client turn mechanism sends them in,
and torch on CPU gains nothing from running two at once.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from cookbook.exceptions import CookbookError

log = logging.getLogger("cookbook.serve")


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

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, Pending] = {}
        self._by_identity: dict[Hashable, str] = {}
        self._queue: queue.Queue[tuple[Pending, Callable[[], Any]] | None] = queue.Queue()
        self._count = 0
        self._worker = threading.Thread(target=self._work, name="cookbook-serve-engine")
        self._worker.daemon = True
        self._worker.start()

    def submit(self, identity: Hashable | None, operation: Callable[[], Any]) -> Pending:
        """Queue ``operation`` unless ``identity`` was seen, then return the first request.
        ``identity`` None (a client that sends no sequence number) never dedupes."""
        with self._lock:
            if identity is not None and identity in self._by_identity:
                return self._by_id[self._by_identity[identity]]
            self._count += 1
            pending = Pending(f"req-{self._count:06d}")
            self._by_id[pending.request_id] = pending
            if identity is not None:
                self._by_identity[identity] = pending.request_id
        self._queue.put((pending, operation))
        return pending

    def get(self, request_id: str) -> Pending | None:
        with self._lock:
            return self._by_id.get(request_id)

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
                pending.done.set()

    def close(self) -> None:
        """Finish the queued operations, then stop the worker."""
        self._queue.put(None)
        self._worker.join()
