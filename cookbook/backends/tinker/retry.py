"""Retries for the Tinker backend that never apply a training request twice.

The rule
--------
A request is *submitted* once the client method has returned its future; from then on the
service may have accepted it, and it is never sent again unless repeating it is harmless.

1. **Submit-time failure** - the method itself raised a retryable error (rate limit, 5xx,
   timeout, connection) and returned no future. Nothing entered the client's ordered request
   queue, so the same call is made again after a backoff.
2. **Wait-time failure** - ``result()`` raised a retryable error, or our own bounded wait timed
   out. The request may already be applied, or be applied later, so the wrapper waits on the
   *same* future again (after a backoff; right away after a timeout, which already waited).
   When the future is *settled* - its ``concurrent.futures.Future`` is done, so every further
   ``result()`` repeats the same error - or the SDK says its promise expired
   (``RetryableException``, HTTP 410), waiting again is pointless. Then a *repeatable* request
   (sampling, scoring, REST look-ups, creating a client: repeating one costs at most an orphaned
   session, never a second update) is submitted again; a training request (``forward``,
   ``forward_backward`` - gradients accumulate - ``optim_step``, saves) fails the run with a
   one-line error saying it may or may not have been applied, and ``--resume`` continues from
   the last checkpoint. A forward_backward or optim_step is therefore applied at most once.
3. **Non-retryable errors** (authentication, permission, billing, bad request, not found, a
   request the server reports failed, an SDK ``ValueError``/``RuntimeError``) fail at once with
   a one-line :class:`~cookbook.exceptions.BackendError`. Every message we raise or log
   goes through :class:`Scrubber` first, so the API key never appears in one.

Where the SDK raises what (tinker 0.38, read from its source)
-------------------------------------------------------------
- ``TrainingClient.forward_backward``/``optim_step``/``save_*`` do no I/O when called: they
  reserve a sequence number and return a future. The POST runs on the SDK's event-loop thread
  inside that future, with the SDK's own retry loop (``InternalClientHolder.
  execute_with_retries``: 408/409/429/5xx, connection errors and timeouts, exponential backoff
  for up to 5 minutes); polling (``_APIFuture``) then retries 408/429/5xx/connection errors
  without limit and raises ``ValueError`` (other statuses), ``RetryableException`` (410) or
  ``RequestFailedError`` (the server says the request failed).
- So with the real SDK, rate-limit/5xx/connection errors reach us only from ``result()``, after
  the SDK gave up, on a settled future. A POST that timed out or lost its connection may still
  have been received, so we cannot tell "never accepted" from "accepted, reply lost": rule 2
  applies and a training request is never resubmitted.
- ``ServiceClient.create_*`` block on first use while the session is created (also retried for
  up to 5 minutes): :mod:`cookbook.backends.tinker.service` probes the service first, with a
  bound, so an unreachable service fails fast.
- Rule 1 is for SDK-shaped clients whose methods fail synchronously (the fake backend, older or
  other clients). It assumes such a method raises *before* its request is queued; a client
  that sends synchronously and raises on a lost reply would break that assumption.

Limits: the SDK's own loops run first, so a real outage surfaces only after its 5 minutes; the
wrapper adds at most ``max_attempts`` more tries within ``max_elapsed_s``. A failed training
request after submit-ahead pipelining may leave later requests already queued on the server;
the run stops there and resumes from a checkpoint, which starts a fresh training client.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import tinker
from tinker.lib.retryable_exception import RetryableException

from cookbook.exceptions import BackendError, CookbookError

logger = logging.getLogger(__name__)
T = TypeVar("T")

REDACTED = "<redacted>"
_KEY_PATTERN = re.compile(r"tml-[A-Za-z0-9_\-]{4,}")
_TRANSIENT_STATUS = frozenset({408, 429})
# What the SDK raises on purpose; anything else (TypeError, ...) is a bug and propagates as is.
_SDK_ERRORS = (tinker.TinkerError, RetryableException, ValueError, RuntimeError)
_AUTH_ERRORS = (tinker.AuthenticationError, tinker.PermissionDeniedError)
_MAX_MESSAGE = 240


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to retry. Delays: ``min(max_delay_s, base_delay_s * 2**attempt)``, times a
    seeded jitter factor in ``[1 - jitter, 1 + jitter]``, at least a rate limit's Retry-After."""

    max_attempts: int = 6
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0
    jitter: float = 0.25
    max_elapsed_s: float | None = 600.0
    wait_timeout_s: float | None = None
    """Bound on one ``result()`` wait; None blocks (the SDK polls on its own)."""
    seed: int = 0


class Scrubber:
    """Removes secrets from text: the given ones, and anything shaped like a Tinker key."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return _KEY_PATTERN.sub(f"tml-{REDACTED}", text)


def is_transient(exc: BaseException) -> bool:
    """Rate limits, 5xx, timeouts and dropped connections: worth another try."""
    if isinstance(exc, tinker.APIConnectionError):  # includes APITimeoutError
        return True
    if isinstance(exc, tinker.APIStatusError):
        return exc.status_code in _TRANSIENT_STATUS or exc.status_code >= 500
    return isinstance(exc, TimeoutError)


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _settled(future: Any) -> bool:
    """Whether an SDK future's outcome is final, so waiting on it again only repeats it."""
    get = getattr(future, "future", None)
    if get is None:
        return False
    try:
        return bool(get().done())
    except Exception:
        return False


class Retrier:
    """Backoff for every request of one service client: one seeded jitter stream, and the
    ``sleep`` and ``clock`` to use (tests pass fakes, so nothing ever sleeps)."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        scrub: Scrubber | None = None,
    ) -> None:
        self.policy = policy
        self.sleep = sleep
        self.clock = clock
        self.scrub = scrub or Scrubber()
        self._rng = random.Random(policy.seed)

    def delay(self, attempt: int, exc: BaseException) -> float:
        p = self.policy
        base = min(p.max_delay_s, p.base_delay_s * 2**attempt)
        delay = base * (1 + p.jitter * (2 * self._rng.random() - 1))
        retry_after = _retry_after(exc)
        if retry_after is not None:
            delay = max(delay, min(retry_after, p.max_delay_s))
        return delay

    def describe(self, exc: BaseException) -> str:
        lines = str(exc).strip().splitlines()
        text = self.scrub(lines[0] if lines else "")
        if len(text) > _MAX_MESSAGE:
            text = text[: _MAX_MESSAGE - 3] + "..."
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

    def fatal(self, name: str, exc: BaseException) -> BackendError:
        hint = " - check TINKER_API_KEY" if isinstance(exc, _AUTH_ERRORS) else ""
        return BackendError(f"tinker: {name} failed: {self.describe(exc)}{hint}")

    def lost(self, name: str, exc: BaseException) -> BackendError:
        return BackendError(
            f"tinker: {name} was submitted but failed while waiting for its result "
            f"({self.describe(exc)}); it may have been applied, so it is not sent again - "
            "rerun with --resume to continue from the last checkpoint"
        )

    def backoff(
        self, name: str, attempt: int, exc: BaseException, started: float, submitted: bool
    ) -> None:
        """Sleep before try ``attempt + 1``, or raise the one-line error if the budget is spent."""
        p = self.policy
        # Our own bounded wait already waited: poll again at once.
        delay = 0.0 if isinstance(exc, TimeoutError) else self.delay(attempt, exc)
        spent = attempt + 1 >= p.max_attempts or (
            p.max_elapsed_s is not None and self.clock() - started + delay > p.max_elapsed_s
        )
        if spent:
            tries = f"{attempt + 1} tries"
            if submitted:
                raise BackendError(
                    f"tinker: {name} was submitted but no result came after {tries} "
                    f"({self.describe(exc)}); it may still be applied, so it is not sent again "
                    "- rerun with --resume to continue from the last checkpoint"
                )
            raise BackendError(
                f"tinker: {name} could not be submitted after {tries} ({self.describe(exc)}); "
                "nothing was applied - check the service, then rerun with --resume"
            )
        logger.warning(
            "tinker: %s %s (%s); retrying in %.1fs (try %d of %d)",
            name,
            "result not ready" if submitted else "not accepted",
            self.describe(exc),
            delay,
            attempt + 2,
            p.max_attempts,
        )
        if delay > 0:
            self.sleep(delay)

    def submit(self, request: Request) -> Any:
        """Make the call until the client accepts it (rule 1); returns the SDK's future."""
        attempt, started = 0, self.clock()
        while True:
            try:
                return request.send()
            except CookbookError:
                raise
            except Exception as exc:
                if not is_transient(exc):
                    if isinstance(exc, _SDK_ERRORS):
                        raise self.fatal(request.name, exc) from None
                    raise
                self.backoff(request.name, attempt, exc, started, submitted=False)
                attempt += 1


@dataclass(frozen=True)
class Request:
    """One logical client call: how to send it, whether sending it again is harmless, and how
    to turn the SDK's value into what the caller gets (clients come back wrapped)."""

    name: str
    send: Callable[[], Any]
    repeatable: bool
    wrap: Callable[[Any], Any]


class RetryingFuture(Generic[T]):
    """The future the wrapper hands out: submitted on creation, waited on by rule 2."""

    def __init__(
        self,
        retrier: Retrier,
        request: Request,
        on_result: Callable[[Any], None] | None = None,
    ) -> None:
        self._retrier = retrier
        self._request = request
        self._inner = retrier.submit(request)
        self.on_result = on_result
        self._resolved = False
        self._value: Any = None

    def result(self, timeout: float | None = None) -> T:
        if not self._resolved:
            raw = self._wait(timeout)
            self._value = self._request.wrap(raw)
            self._resolved = True
            if self.on_result is not None:
                self.on_result(raw)
        return self._value

    async def result_async(self, timeout: float | None = None) -> T:
        return await asyncio.to_thread(self.result, timeout)

    def __await__(self):
        return self.result_async().__await__()

    def _wait(self, timeout: float | None) -> Any:
        r, request = self._retrier, self._request
        attempt, started = 0, r.clock()
        while True:
            try:
                return self._inner.result(
                    timeout if timeout is not None else r.policy.wait_timeout_s
                )
            except CookbookError:
                raise
            except Exception as exc:
                if isinstance(exc, TimeoutError) and timeout is not None:
                    raise  # the caller's own bound
                if not is_transient(exc) and not isinstance(exc, RetryableException):
                    if isinstance(exc, _SDK_ERRORS):
                        raise r.fatal(request.name, exc) from None
                    raise
                final = isinstance(exc, RetryableException) or _settled(self._inner)
                if final and not request.repeatable:
                    raise r.lost(request.name, exc) from None
                r.backoff(request.name, attempt, exc, started, submitted=True)
                attempt += 1
                if final:
                    self._inner = r.submit(request)
