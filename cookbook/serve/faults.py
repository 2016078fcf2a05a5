"""Fault injection for ``cookbook-serve --faults SPEC``: reliability tests of any Tinker client.

A real Tinker service rate-limits, fails, loses connections and queues work; a client that never
sees those in tests never has its retry paths exercised. This module only *decides* which
request gets which fault, deterministically; the server does the HTTP side::

    SPEC   := RULE ("," RULE)*
    RULE   := KIND "@" TARGET [ "#" CALLS | "~" RATE ]  |  "seed=" INT
    KIND   := "429" | "500" | "drop" | "slow" [":" POLLS]     (POLLS > 0, default 3)
    TARGET := endpoint after /api/v1/ (one of FAULTABLE_ENDPOINTS) | "*"
    CALLS  := N ("+" N)*    1-based arrival counts of requests to TARGET, e.g. "#2+5"
    RATE   := 0 < RATE <= 1, drawn from random.Random(seed) in arrival order (seed default 0)
    neither "#" nor "~": every request to TARGET fails (tests of a client's give-up path)

Semantics, per kind (``FaultKind.status`` / ``FaultKind.applies`` carry them as data):

- ``429``, ``500``: refused *before* it is applied, with that status and a JSON error body.
- ``drop``: applied, then the connection is closed unanswered. The SDK retries the request, so
  the server must dedupe it (and a dropped ``retrieve_future`` must be answerable again).
- ``slow[:POLLS]``: applied, but its future answers "try again" to the next POLLS
  ``retrieve_future`` polls. Only endpoints that return a future (FUTURE_ENDPOINTS) qualify;
  ``slow@*`` means any of those.

Counting: every request to a faultable endpoint is one arrival, retries included (so
``429@optim_step#1`` refuses the first attempt and lets its retry through). ``#N`` on a named
endpoint is its Nth request; on ``*`` it is the Nth request among all endpoints the rule
covers together. The first rule (in spec order) that fires wins, but every rate rule covering the
endpoint draws exactly one number per request, so decisions depend only on arrival order.
Session plumbing (client/config, create_session, session_heartbeat, telemetry, healthz) is never
faulted: the SDK treats failures there differently and they would only test the test.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum

from cookbook.exceptions import ConfigurationError

# Endpoints whose SDK resource method returns an UntypedAPIFuture (the test reads the SDK).
FUTURE_ENDPOINTS = frozenset(
    {
        "create_model",
        "forward_backward",
        "optim_step",
        "save_weights",
        "save_weights_for_sampler",
        "load_weights",
        "asample",
    }
)
FAULTABLE_ENDPOINTS = FUTURE_ENDPOINTS | {"get_info", "create_sampling_session", "retrieve_future"}
DEFAULT_SLOW_POLLS = 3

FAULTS_HELP = """\
inject faults, SPEC = RULE[,RULE...] with RULE = KIND@TARGET[#N[+N...] | ~RATE] or seed=INT
  KIND:   429 | 500 (refused before applied) | drop (applied, connection closed unanswered)
          | slow[:POLLS] (applied; its future answers try-again POLLS times, default 3)
  TARGET: an endpoint after /api/v1/ (forward_backward, optim_step, asample, ...) or *
  #2+5:   the 2nd and 5th request to TARGET (retries count); ~0.1: each with probability 0.1
          (seeded, seed=0 unless given); neither: every request
  e.g. --faults '429@optim_step#2,drop@forward_backward#3,slow:5@asample~0.2,seed=7'"""

_KINDS_ALLOWED = "429, 500, drop, slow[:POLLS]"
_RULE_FORM = "KIND@TARGET[#CALLS|~RATE] or seed=INT"


class FaultKind(StrEnum):
    RATE_LIMIT = "429"
    SERVER_ERROR = "500"
    DROP = "drop"
    SLOW = "slow"

    @property
    def status(self) -> int | None:
        """HTTP status answered instead of applying the request; None when it is applied."""
        return int(self.value) if self in (FaultKind.RATE_LIMIT, FaultKind.SERVER_ERROR) else None

    @property
    def applies(self) -> bool:
        """Whether the server applies the request before the fault acts."""
        return self.status is None


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    polls: int = 0  # try-again answers owed before delivery; SLOW only


@dataclass(frozen=True)
class FaultRule:
    kind: FaultKind
    polls: int
    target: str
    calls: frozenset[int] | None
    rate: float | None

    def covers(self, endpoint: str) -> bool:
        scope = FUTURE_ENDPOINTS if self.kind is FaultKind.SLOW else FAULTABLE_ENDPOINTS
        return endpoint in scope and self.target in ("*", endpoint)

    def describe(self) -> str:
        kind = f"slow ({self.polls} polls)" if self.kind is FaultKind.SLOW else str(self.kind)
        where = "any endpoint" if self.target == "*" else self.target
        if self.calls is not None:
            return f"{kind} on {where} requests {'+'.join(map(str, sorted(self.calls)))}"
        if self.rate is not None:
            return f"{kind} on {where} with p={self.rate:g}"
        return f"{kind} on every request to {where}"


@dataclass(frozen=True)
class FaultPlan:
    rules: tuple[FaultRule, ...]
    seed: int = 0

    @classmethod
    def parse(cls, text: str) -> FaultPlan:
        """Parse a --faults SPEC; any error is one line naming the rule and what is allowed."""
        if not text.strip():
            raise ConfigurationError(
                f"--faults: empty spec (expected RULE[,RULE...], {_RULE_FORM})"
            )
        rules: list[FaultRule] = []
        seed: int | None = None
        for number, raw in enumerate(text.split(","), start=1):
            rule = raw.strip()
            key, eq, value = rule.partition("=")
            try:
                if not (eq and key.strip() == "seed"):
                    rules.append(_parse_rule(rule))
                    continue
                if seed is not None:
                    raise ConfigurationError("seed given twice")
                seed = _int(value)
                if seed is None:
                    raise ConfigurationError(f"seed must be an integer, got '{value.strip()}'")
            except ConfigurationError as error:
                raise ConfigurationError(f"--faults: rule {number} '{rule}': {error}") from None
        return cls(rules=tuple(rules), seed=0 if seed is None else seed)

    def describe(self) -> str:
        if not self.rules:
            return f"faults: none (seed={self.seed})"
        return f"faults: {'; '.join(r.describe() for r in self.rules)} (seed={self.seed})"


def _parse_rule(rule: str) -> FaultRule:
    if not rule:
        raise ConfigurationError(f"empty rule ({_RULE_FORM})")
    kind_text, at, rest = rule.partition("@")
    if not at:
        raise ConfigurationError(f"missing '@TARGET' ({_RULE_FORM})")
    if "#" in rest and "~" in rest:
        raise ConfigurationError("use either #CALLS or ~RATE, not both")
    target, sep, arg = (part.strip() for part in rest.partition("#" if "#" in rest else "~"))
    name, colon, polls_text = kind_text.strip().partition(":")
    if name not in set(FaultKind) or (colon and name != FaultKind.SLOW):
        raise ConfigurationError(f"unknown kind '{kind_text.strip()}' ({_KINDS_ALLOWED})")
    kind = FaultKind(name)
    polls = _positive_int(polls_text) if colon else DEFAULT_SLOW_POLLS
    if polls is None:
        raise ConfigurationError(f"POLLS must be a positive integer, got '{polls_text}'")
    if target != "*" and target not in FAULTABLE_ENDPOINTS:
        known = ", ".join(sorted(FAULTABLE_ENDPOINTS))
        raise ConfigurationError(f"unknown endpoint '{target}' (one of: {known}; or *)")
    if kind is FaultKind.SLOW and target != "*" and target not in FUTURE_ENDPOINTS:
        why = "its polls are what slow delays" if target == "retrieve_future" else "no future"
        allowed = ", ".join(sorted(FUTURE_ENDPOINTS))
        raise ConfigurationError(
            f"slow cannot target {target} ({why}); it needs one of: {allowed}; or *"
        )
    calls: frozenset[int] | None = None
    rate: float | None = None
    if sep == "#":
        numbers = [_positive_int(n) for n in arg.split("+")]
        if None in numbers:
            raise ConfigurationError(f"CALLS must be positive integers joined by '+', got '{arg}'")
        calls = frozenset(n for n in numbers if n is not None)
    elif sep == "~":
        try:
            rate = float(arg)
        except ValueError:
            rate = None
        if rate is None or not 0 < rate <= 1:
            raise ConfigurationError(f"RATE must be a number with 0 < RATE <= 1, got '{arg}'")
    return FaultRule(
        kind=kind,
        polls=polls if kind is FaultKind.SLOW else 0,
        target=target,
        calls=calls,
        rate=rate,
    )


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _positive_int(text: str) -> int | None:
    value = _int(text)
    return value if value is not None and value > 0 else None


class FaultInjector:
    """Applies a plan to the stream of requests; shared by the server's handler threads."""

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self._rng = random.Random(plan.seed)
        self._lock = threading.Lock()
        self._arrivals: Counter[str] = Counter()
        self._rule_arrivals = [0] * len(plan.rules)
        self._injected: list[dict] = []

    def decide(self, endpoint: str) -> Fault | None:
        """Count one request to ``endpoint`` and return the fault to inject, if any."""
        if endpoint not in FAULTABLE_ENDPOINTS:
            return None
        with self._lock:
            self._arrivals[endpoint] += 1
            chosen: FaultRule | None = None
            for index, rule in enumerate(self.plan.rules):
                if not rule.covers(endpoint):
                    continue
                self._rule_arrivals[index] += 1
                if rule.rate is not None:
                    fires = self._rng.random() < rule.rate
                elif rule.calls is not None:
                    fires = self._rule_arrivals[index] in rule.calls
                else:
                    fires = True
                if fires and chosen is None:
                    chosen = rule
            if chosen is None:
                return None
            call = self._arrivals[endpoint]
            self._injected.append({"endpoint": endpoint, "call": call, "kind": str(chosen.kind)})
            return Fault(kind=chosen.kind, polls=chosen.polls)

    @property
    def injected(self) -> list[dict]:
        """Faults so far: endpoint, its 1-based arrival count there, kind (for the exit report)."""
        with self._lock:
            return [dict(entry) for entry in self._injected]

    @property
    def arrivals(self) -> dict[str, int]:
        """Requests seen per faultable endpoint, retries included."""
        with self._lock:
            return dict(self._arrivals)
