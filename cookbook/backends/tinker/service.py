"""Choosing and opening the Tinker backend for a recipe: key, reachability, record or replay.

Everything here fails before the run directory is touched, in one line: no TINKER_API_KEY
(say how to set it, or to run offline), or a key but no service answering within
``tinker.connect_timeout_s``. The SDK alone would retry its session creation silently for
five minutes; the probe is one bounded HTTP request on a daemon thread, so not even a stuck
DNS lookup can hold the CLI past the bound. Any HTTP answer counts as reachable - a wrong key
is the SDK's to report (as a one-line authentication error, see :mod:`.retry`).

Replay needs neither key nor network: the cassette answers every call.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import httpx
from tinker.lib.base_url import resolve_base_url

from cookbook.backends.tinker.cassette import CassetteWriter, replay_client
from cookbook.backends.tinker.clients import TinkerServiceClient
from cookbook.backends.tinker.retry import RetryPolicy, Scrubber
from cookbook.exceptions import ConfigurationError
from cookbook.specs.recipe import RecipeSpec

API_KEY_ENV = "TINKER_API_KEY"
MISSING_KEY = (
    "backend 'tinker' needs TINKER_API_KEY: export TINKER_API_KEY=tml-... "
    "(from the Tinker console), or run offline with --set backend=local"
)
HEALTH_PATH = "/api/v1/healthz"


def probe_service(base_url: str, timeout_s: float) -> None:
    """Return once ``base_url`` answers HTTP; raise if it does not within ``timeout_s``."""
    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            with httpx.Client(timeout=timeout_s) as client:
                client.get(base_url + HEALTH_PATH)
            outcome.append(None)
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=attempt, name="tinker-probe", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if not outcome:
        raise TimeoutError(f"no answer within {timeout_s:g}s")
    if outcome[0] is not None:
        raise outcome[0]


def check_connectivity(base_url: str, timeout_s: float, scrub: Scrubber) -> None:
    """One-line error unless the service answers within ``timeout_s``."""
    try:
        probe_service(base_url, timeout_s)
    except Exception as exc:
        reason = scrub(f"{type(exc).__name__}: {exc}".splitlines()[0])
        raise ConfigurationError(
            f"tinker: cannot reach the Tinker service at {scrub(base_url)} within "
            f"{timeout_s:g}s ({reason}); check the network and TINKER_BASE_URL/base_url, raise "
            "--set tinker.connect_timeout_s=..., or run offline with --set backend=local"
        ) from None


def open_sdk_client(base_url: str | None, user_metadata: dict[str, str]) -> Any:
    """The real SDK client (lazy: no I/O until the first request)."""
    import tinker

    return tinker.ServiceClient(base_url=base_url, user_metadata=user_metadata)


def make_tinker_service_client(spec: RecipeSpec) -> TinkerServiceClient:
    """The ``backend: tinker`` client for a recipe: replaying, recording or plain."""
    options = spec.tinker
    policy = RetryPolicy(max_attempts=options.max_attempts, seed=spec.seed)
    if options.replay is not None:
        return TinkerServiceClient(replay_client(Path(options.replay)), policy=policy)
    key = os.environ.get(API_KEY_ENV)
    if not key:
        raise ConfigurationError(MISSING_KEY)
    scrub = Scrubber([key])
    check_connectivity(resolve_base_url(spec.base_url), options.connect_timeout_s, scrub)
    sdk = open_sdk_client(spec.base_url, {"recipe": spec.recipe_name})
    tape = CassetteWriter(Path(options.record)) if options.record is not None else None
    return TinkerServiceClient(sdk, policy=policy, secrets=[key], tape=tape)
