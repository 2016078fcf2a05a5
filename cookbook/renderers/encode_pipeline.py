"""Overlap a batch renderer's Rust encodes with its Python: encode one part of a batch in a
worker thread while this thread plans the next part and assembles the one before.

Why: the batch renderer is serial Python (planning the texts), one Rust encode of the distinct
texts, serial Python again (assembling the examples). The encode runs on every core (rayon), the
Python on one, so on two cores a batch whose Python is a third of its CPU waits ~1.6x its
CPU-share of the encode. ``encode_batch_fast`` releases the GIL, so the Python of one part and
the encode of another can run at once: the wall time then approaches the CPU time over the
cores.

The rules a caller keeps (``batch_template_examples.py`` does):

* Jobs run one at a time, first in first out, on one worker thread; each job's ``then``
  callback runs in the caller's thread, in submission order, when the caller waits for it.
  Nothing but the job touches the tokenizer while it runs: a Rust tokenizer is a PyO3 object,
  and a call that needs it mutably (``transformers``' ``encode`` sets its flags) raises
  "Already borrowed" or, worse, changes the flags under the running encode. So before any
  tokenizer call of its own (a renderer rendering a conversation, a memo miss) the caller
  :meth:`EncodePipeline.drain` s.
* A job's exception does not escape :meth:`wait` / :meth:`drain` (they run inside renderer
  code, a memo miss): the first one is kept in :attr:`EncodePipeline.failed` and its callback
  skipped; the caller checks it and renders what the job was for one conversation at a time.
  ``BaseException`` s (``KeyboardInterrupt``) propagate.
* Leaving the ``with`` block waits for every job, also on an exception, so no encode outlives
  the call that started it.

The worker is a daemon thread started on the first job, not at import; a forked child
(DataLoader workers, multiprocessing) starts its own, since the parent's thread does not exist
there. The executor is injectable (``submit(fn, *args) -> Future``): tests force the
interleavings with it, and :data:`INLINE` runs each job at once, for batches too small to pay
for a thread hand-off.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Protocol


class Executor(Protocol):
    """What the pipeline needs of an executor (``concurrent.futures.Executor`` has it)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]: ...


class _Inline:
    """Runs each job at once, in the caller's thread."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        _run(future, fn, args)
        return future


INLINE: Executor = _Inline()


def _run(future: Future[Any], fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = fn(*args)
    except BaseException as exc:  # handed to the waiting thread, which re-raises or records it
        future.set_exception(exc)
    else:
        future.set_result(result)


class _Worker:
    """One daemon thread running jobs first in first out."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]]
        self._jobs = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="cookbook-encode", daemon=True).start()

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self._jobs.put((future, fn, args))
        return future

    def _serve(self) -> None:
        while True:
            _run(*self._jobs.get())


_worker: _Worker | None = None
_worker_lock = threading.Lock()


def _forget_worker() -> None:
    """In a forked child: the parent's thread is not there, and the lock may be held."""
    global _worker, _worker_lock
    _worker = None
    _worker_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_worker)


def shared_worker() -> Executor:
    """The process's encode worker, started on first use."""
    global _worker
    worker = _worker
    if worker is None:
        with _worker_lock:
            worker = _worker
            if worker is None:
                worker = _worker = _Worker()
    return worker


def usable_cores() -> int:
    """The cores this process may run on: with one, nothing overlaps and the hand-offs are
    pure cost."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class EncodePipeline:
    """Jobs in flight on an executor, finished in submission order in the caller's thread."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor
        self._pending: deque[tuple[Future[Any], Callable[[Any], None]]] = deque()
        self.submitted = 0
        self.finished = 0
        self.failed: Exception | None = None
        """The first exception a job raised (its callback was skipped)."""

    def submit(self, then: Callable[[Any], None], fn: Callable[..., Any], /, *args: Any) -> int:
        """Start ``fn(*args)``; ``then(result)`` runs in this thread when it is waited for.
        Returns the job's number, for :meth:`wait`."""
        self._pending.append((self._executor.submit(fn, *args), then))
        self.submitted += 1
        return self.submitted

    def wait(self, number: int) -> None:
        """Finish every job up to ``number`` (from :meth:`submit`), oldest first."""
        while self.finished < number:
            future, then = self._pending[0]
            try:
                result = future.result()
            except Exception as exc:
                if self.failed is None:
                    self.failed = exc
            else:
                then(result)
            finally:
                self._pending.popleft()
                self.finished += 1

    def drain(self) -> None:
        """Finish every job in flight: after this, this thread may use the tokenizer."""
        self.wait(self.submitted)

    def __enter__(self) -> EncodePipeline:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.drain()
            return
        # Leaving on an exception: let the jobs end (they use the tokenizer), drop their results.
        while self._pending:
            self._pending[0][0].exception()
            self._pending.popleft()


__all__ = ["INLINE", "EncodePipeline", "Executor", "shared_worker", "usable_cores"]
