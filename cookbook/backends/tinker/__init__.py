"""The Tinker backend: the real ``tinker`` SDK behind the loop's client surface.

- :mod:`.clients` - wrapped service/training/sampling/REST clients: same surface and futures
  as the SDK (so submit-ahead pipelining is unchanged), retries by the rule in :mod:`.retry`
  (a training request is never applied twice), errors as one key-free line.
- :mod:`.service` - :func:`make_tinker_service_client` for a recipe: key check, bounded
  connectivity probe, record or replay (``tinker:`` options of the recipe spec).
- :mod:`.cassette` / :mod:`.codec` - record every call and result to a JSON Lines cassette;
  replay it with no service, failing on the first divergent call.
"""

from cookbook.backends.tinker.cassette import Cassette, CassetteWriter, replay_client
from cookbook.backends.tinker.clients import (
    TinkerRestClient,
    TinkerSamplingClient,
    TinkerServiceClient,
    TinkerTrainingClient,
)
from cookbook.backends.tinker.retry import RetryingFuture, RetryPolicy, Scrubber
from cookbook.backends.tinker.service import make_tinker_service_client

__all__ = [
    "Cassette",
    "CassetteWriter",
    "RetryPolicy",
    "RetryingFuture",
    "Scrubber",
    "TinkerRestClient",
    "TinkerSamplingClient",
    "TinkerServiceClient",
    "TinkerTrainingClient",
    "make_tinker_service_client",
    "replay_client",
]
