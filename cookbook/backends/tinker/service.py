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

from cookbook.backends.tinker.cassette import Cassette, CassetteWriter, replay_client
from cookbook.backends.tinker.clients import TinkerServiceClient
from cookbook.backends.tinker.retry import RetryPolicy, Scrubber
from cookbook.exceptions import ConfigurationError
from cookbook.specs.loader import field_error
from cookbook.specs.recipe import RecipeSpec

API_KEY_ENV = "TINKER_API_KEY"
MISSING_KEY = (
    "backend 'tinker' needs TINKER_API_KEY: export TINKER_API_KEY=tml-... "
    "(from the Tinker console), or run offline with --set backend=local"
)
HEALTH_PATH = "/api/v1/healthz"
SERVE_NAME = "cookbook-serve"


def probe_service(base_url: str, timeout_s: float) -> httpx.Response:
    """The service's health answer; raise if it does not answer within ``timeout_s``."""
    outcome: list[httpx.Response | BaseException] = []

    def attempt() -> None:
        try:
            with httpx.Client(timeout=timeout_s) as client:
                outcome.append(client.get(base_url + HEALTH_PATH))
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=attempt, name="tinker-probe", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if not outcome:
        raise TimeoutError(f"no answer within {timeout_s:g}s")
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def check_connectivity(base_url: str, timeout_s: float, scrub: Scrubber) -> httpx.Response:
    """The health answer; a one-line error unless the service answers within ``timeout_s``."""
    try:
        return probe_service(base_url, timeout_s)
    except Exception as exc:
        reason = scrub(f"{type(exc).__name__}: {exc}".splitlines()[0])
        raise ConfigurationError(
            f"tinker: cannot reach the Tinker service at {scrub(base_url)} within "
            f"{timeout_s:g}s ({reason}); check the network and TINKER_BASE_URL/base_url, raise "
            "--set tinker.connect_timeout_s=..., or run offline with --set backend=local"
        ) from None


def cookbook_serve_identity(spec: RecipeSpec) -> dict[str, Any] | None:
    """What a ``cookbook-serve`` answering for this spec says of itself, or None when the
    service is another (or the run has no key: nothing to ask). A replayed run answers with
    what its recording noted, so the replay of a served run takes the same profile.

    A run served by cookbook-serve trains the local stand-in, so it takes the spec's local
    profile exactly as ``backend: local`` does; the caller decides that from this answer.
    """
    if spec.backend != "tinker":
        return None
    if spec.tinker.replay is not None:  # the recording says who answered it
        return Cassette(Path(spec.tinker.replay)).header.get("served_by")
    key = os.environ.get(API_KEY_ENV)
    if not key:
        return None
    base_url = resolve_base_url(spec.base_url)
    response = check_connectivity(base_url, spec.tinker.connect_timeout_s, Scrubber([key]))
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict) or body.get("server") != SERVE_NAME:
        return None
    return {**body, "url": base_url}


CALL_INDEPENDENT = frozenset({"tinker", "log_path", "base_url"})
"""Spec fields that change where a run logs or how it reaches the service, not its calls."""


def recorded_spec(spec: RecipeSpec) -> dict[str, Any]:
    """What a cassette's header keeps of the resolved spec, and a replay must match."""
    return spec.model_dump(mode="json", exclude=set(CALL_INDEPENDENT))


def open_sdk_client(base_url: str | None, user_metadata: dict[str, str]) -> Any:
    """The real SDK client (lazy: no I/O until the first request)."""
    import tinker

    return tinker.ServiceClient(base_url=base_url, user_metadata=user_metadata)


def connect(
    base_url: str | None,
    *,
    seed: int,
    connect_timeout_s: float,
    max_attempts: int,
    user_metadata: dict[str, str],
    record: Path | None = None,
    served_by: dict[str, Any] | None = None,
    spec: dict[str, Any] | None = None,
) -> TinkerServiceClient:
    """The retrying SDK client, once the key is there and the service answers (one line if
    not); recording to the cassette ``record`` (which notes ``served_by`` and the resolved
    ``spec``) when given."""
    key = os.environ.get(API_KEY_ENV)
    if not key:
        raise ConfigurationError(MISSING_KEY)
    check_connectivity(resolve_base_url(base_url), connect_timeout_s, Scrubber([key]))
    sdk = open_sdk_client(base_url, user_metadata)
    tape = CassetteWriter(record, served_by, spec) if record is not None else None
    policy = RetryPolicy(max_attempts=max_attempts, seed=seed)
    return TinkerServiceClient(sdk, policy=policy, secrets=[key], tape=tape)


def make_tinker_service_client(
    spec_path: Path, spec: RecipeSpec, served_by: dict[str, Any] | None = None
) -> TinkerServiceClient:
    """The ``backend: tinker`` client for a recipe: replaying (a recording of this very spec,
    or a one-line error naming both), recording or plain."""
    options = spec.tinker
    if options.replay is not None:
        cassette = Cassette(Path(options.replay))
        mismatch = cassette.mismatch(recorded_spec(spec))
        if mismatch is not None:
            raise field_error(spec_path, ("tinker", "replay"), mismatch)
        policy = RetryPolicy(max_attempts=options.max_attempts, seed=spec.seed)
        return TinkerServiceClient(replay_client(cassette), policy=policy)
    return connect(
        spec.base_url,
        seed=spec.seed,
        connect_timeout_s=options.connect_timeout_s,
        max_attempts=options.max_attempts,
        user_metadata={"recipe": spec.recipe_name},
        record=Path(options.record) if options.record is not None else None,
        served_by=served_by,
        spec=recorded_spec(spec),
    )
