"""Is the Hugging Face hub usable right now? Asked once, cheaply, before any hub call.

Without the hub (this project's machines, air-gapped clusters) ``transformers`` and
``datasets`` do not fail fast: each call retries for 25-50 s before falling back to the cache.
Real tokenizers and data stay the first choice when the hub is reachable, so instead of
switching it off we probe it: HF_HUB_OFFLINE=1 answers without a probe, otherwise one TCP
connection with a short timeout decides (a configured proxy is trusted, since the probe
cannot see through it).
"""

from __future__ import annotations

import contextlib
import os
import socket
import urllib.parse
from collections.abc import Iterator
from functools import cache

PROBE_TIMEOUT_S = 3.0
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def offline_requested() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}


@cache
def hub_reachable() -> bool:
    """Whether hub calls can work in this process (probed at most once)."""
    if offline_requested():
        return False
    if any(os.environ.get(v) for v in _PROXY_VARIABLES):
        return True
    from huggingface_hub import constants

    url = urllib.parse.urlsplit(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def cache_only() -> Iterator[None]:
    """Cache-only loading, as HF_HUB_OFFLINE=1 would give had it been set before import.

    ``datasets`` and ``huggingface_hub`` read the variable once, at import, into these module
    constants, and consult the constants at call time.
    """
    import datasets.config
    from huggingface_hub import constants

    saved = datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved
