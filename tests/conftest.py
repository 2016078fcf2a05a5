"""Shared fixtures. Every test runs offline: the hub is switched off before anything imports it."""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest
from hypothesis import HealthCheck, settings

HEARTBEAT = "InternalClientHolder._session_heartbeat"

# The quick suite keeps property tests short; `nox -s parity` selects the thorough profile.
# derandomize: examples come from a fixed seed, so every run checks the same conversations.
for _name, _examples in (("quick", 30), ("thorough", 200)):
    settings.register_profile(
        _name,
        max_examples=_examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
# `nox -s fuzz`: the @pytest.mark.fuzz tests, long and freshly random each run (not derandomized,
# so every session explores new inputs; a failure is saved in .hypothesis/ and replayed first).
settings.register_profile(
    "fuzz",
    max_examples=2000,
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))


@pytest.hookimpl(wrapper=True)
def pytest_collection(session):
    """No cyclic GC while collecting, then a freeze. Importing torch, transformers and the test
    modules (the golden parity module loads every renderer spec) leaves ~300k tracked objects
    that live to the end of the session: the full collections their allocation triggers free
    next to nothing (GC went from 1.6 to 0.75 s of CPU in a golden parity run, timed with
    gc.callbacks), and frozen, the collections the tests trigger no longer walk them. No
    collection before the freeze: it walked ~477k objects to free ~7.8k (0.24 s), which now
    stay, frozen, to the end of the session. (It once hid SDK client holders left open until
    exit; ``_sdk_clients_are_closed`` now fails the test that leaves one.)"""
    gc.disable()
    try:
        return (yield)
    finally:
        gc.freeze()
        gc.enable()


@pytest.fixture(scope="session")
def llama3_tokenizer():
    from cookbook.tokenizers import get_tokenizer

    return get_tokenizer("meta-llama/Llama-3.1-8B-Instruct", "offline")


@pytest.fixture(scope="session")
def llama3_renderer(llama3_tokenizer):
    from cookbook.renderers import get_renderer

    return get_renderer("llama3", llama3_tokenizer)


def _live_sdk_sessions(settle_s: float = 0.0) -> dict[int, str]:
    """The running tinker SDK heartbeats (task id -> session id): each one a
    ``tinker.ServiceClient`` nobody closed. It outlives the test's server and, 120 s later,
    logs "Session heartbeat failed" into whatever runs next. ``settle_s``: first wait up to that
    long for them to end (a client being released). Free when no test imported the SDK or
    started its event loop."""
    holder = sys.modules.get("tinker.lib.internal_client_holder")
    loop = holder._internal_client_holder_thread_singleton.loop_if_started() if holder else None
    if loop is None or not loop.is_running():
        return {}

    async def heartbeats() -> dict[int, str]:
        tasks = [
            t
            for t in asyncio.all_tasks()
            if not t.done() and getattr(t.get_coro(), "__qualname__", "") == HEARTBEAT
        ]
        if tasks and settle_s:
            await asyncio.wait(tasks, timeout=settle_s)
        return {
            id(t): str(t.get_coro().cr_frame.f_locals.get("session_id", "?"))
            for t in tasks
            if not t.done()
        }

    # Asked on the SDK's own loop thread: its task set is not safe to read from this one.
    return asyncio.run_coroutine_threadsafe(heartbeats(), loop).result(timeout=settle_s + 10)


@contextmanager
def _sdk_holders_created() -> Iterator[list[tuple[Any, str]]]:
    """Every tinker SDK ``InternalClientHolder`` (what a service, REST or sampling client runs
    over) constructed in the block, with the line of ours (test or cookbook) that made it. Held
    strongly until the block ends, so one dropped unclosed is still here to be seen (not
    finalised first by the GC at some later, arbitrary point). Empty when the SDK is not
    imported."""
    module = sys.modules.get("tinker.lib.internal_client_holder")
    created: list[tuple[Any, str]] = []
    if module is None:
        yield created
        return
    cls = module.InternalClientHolder
    init = cls.__init__

    @functools.wraps(init)
    def recording_init(self: Any, *args: Any, **kwargs: Any) -> None:
        ours = [
            f
            for f in traceback.extract_stack()
            if "site-packages" not in f.filename and f.filename != __file__
        ]
        where = f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "?"
        created.append((self, where))
        init(self, *args, **kwargs)

    cls.__init__ = recording_init
    try:
        yield created
    finally:
        cls.__init__ = init


@pytest.fixture(autouse=True)
def _sdk_clients_are_closed() -> Iterator[None]:
    """Each test closes the SDK clients it opens. An open session keeps heartbeating (see
    ``_live_sdk_sessions``); any open holder, session or not, is otherwise closed by its
    ``__del__`` whenever the GC gets to it - at interpreter exit, after the SDK's event loop is
    gone, that prints "Exception ignored in InternalClientHolder.__del__" after the summary."""
    before = _live_sdk_sessions()
    with _sdk_holders_created() as created:
        yield
        # The SDK marks a holder closed when its close starts; a holder whose construction
        # failed was never opened.
        unclosed = sorted(where for holder, where in created if not holder._closed)
    leaked = sorted(s for key, s in _live_sdk_sessions().items() if key not in before)
    assert not leaked, f"tinker SDK session(s) {leaked} left open: close the ServiceClient"
    assert not unclosed, (
        f"tinker SDK client holder(s) made at {unclosed} left open: close the ServiceClient "
        "(`with`), and take REST clients from it - tinker.RestClient(base_url=...) keeps a "
        "process-wide holder that nothing closes"
    )


def pytest_terminal_summary(terminalreporter) -> None:
    """Say how much golden parity was actually checked (a green run of zero items is no proof)."""
    reports = [
        r
        for outcome in ("passed", "failed")
        for r in terminalreporter.stats.get(outcome, [])
        if r.when == "call" and "test_matches_reference[" in r.nodeid
    ]
    if reports:
        # One test per case; each records how many items (TrainOnWhat values and the generation
        # item) it checked and how many of them failed.
        properties = [dict(r.user_properties) for r in reports]
        items = sum(p.get("parity_items", 0) for p in properties)
        failed = sum(
            p.get("parity_failed_items", int(r.failed))
            for p, r in zip(properties, reports, strict=True)
        )
        terminalreporter.write_line(
            f"golden parity: {items} items checked over {len(reports)} cases, {failed} failed"
        )
