"""The embedded local backend: real training of a small stand-in model on CPU, offline.

:class:`LocalServiceClient` has the tinker 0.38 client surface the training loop uses (futures
with ``.result()``, real ``tinker.types`` results), backed by torch + transformers + peft LoRA.
What differs from the Tinker service, on purpose:

- the model is a stand-in (:mod:`.config`, :mod:`.runtime`), named by
  :meth:`LocalServiceClient.describe`;
- the built-in losses are :mod:`.losses` (``cross_entropy`` and the RL losses; not
  ``stable_reinforce``); ``cross_entropy`` logprobs are exact where the weight is non-zero and
  0.0 elsewhere, unless ``full_logprobs``;
- calls run synchronously, when made; checkpoints are ``local://`` files (:mod:`.checkpoints`);
- sampling details (seeds, stop strings, reported logprobs) in :mod:`.sampling`.

Importing this package does not import torch: the spec models embed :class:`LocalModelConfig`
and must load without the ``local`` extra. The clients are imported on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cookbook.backends.local.config import LocalModelConfig, LocalModelKind

if TYPE_CHECKING:
    from cookbook.backends.local.sampling import LocalSamplingClient
    from cookbook.backends.local.service import LocalServiceClient
    from cookbook.backends.local.training import LocalTrainingClient

_LAZY = {
    "LocalSamplingClient": "cookbook.backends.local.sampling",
    "LocalServiceClient": "cookbook.backends.local.service",
    "LocalTrainingClient": "cookbook.backends.local.training",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "LocalModelConfig",
    "LocalModelKind",
    "LocalSamplingClient",
    "LocalServiceClient",
    "LocalTrainingClient",
]
