"""Content digests shared by the backends' call records and by parity.

A datum or a prompt is named by the sha256 of its canonical JSON, so the fake backend's call
log, the tinker backend's cassettes, the local backend's canonical batch order and the parity
goldens all identify the same datum the same way. This module sits below both backends and
parity so that neither has to import the other for it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from cookbook.exceptions import ConfigurationError


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 as is: one spelling per value, so its digest is stable."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def content_digest(value: Any) -> str:
    """sha256 (hex) of ``value``'s :func:`canonical_json`."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def datum_to_json(datum: Any) -> dict[str, Any]:
    """A ``tinker.Datum`` as plain JSON: chunk token lists, then each loss input by name.

    ``target_tokens`` as ints; every other input (``weights``, and for RL ``logprobs``,
    ``advantages``, ``mask``) through float32 (what ``TensorData`` stores) as Python floats,
    so a value computed in float64 by one side and float32 by the other still compares equal
    when the stored tensors are equal. A supervised datum gives exactly ``model_input``,
    ``target_tokens``, ``weights``. Only text chunks are supported: recipes here are text-only.
    """
    chunks = []
    for chunk in datum.model_input.chunks:
        if getattr(chunk, "type", None) != "encoded_text":
            raise ConfigurationError(f"datum_to_json: unsupported chunk type {chunk.type!r}")
        chunks.append([int(t) for t in chunk.tokens])
    out: dict[str, Any] = {"model_input": chunks}
    for key in sorted(datum.loss_fn_inputs):  # supervised: target_tokens, weights
        dtype = np.int64 if key == "target_tokens" else np.float32
        out[key] = np.asarray(datum.loss_fn_inputs[key].data, dtype=dtype).tolist()
    return out


def datum_digest(datum: Any) -> str:
    """sha256 of the canonical JSON of :func:`datum_to_json` (sorted keys, no spaces).

    Canonical form, for ports: ``{"model_input":[[ids..],..],"target_tokens":[..],
    "weights":[..]}`` with weights written as Python's shortest round-trip float repr
    (``0.25``, ``1.0``, ``0.3333333432674408``); an RL datum has its ``logprobs`` and
    ``advantages`` (any other input likewise) in place of or beside ``weights``.
    """
    return content_digest(datum_to_json(datum))


def tokens_digest(model_input: Any) -> str:
    """sha256 of a prompt's flat token list: the server sees no chunk boundaries in a prompt.

    (``ModelInput.append_int`` adds a one-token chunk, so chunking would be noise here.)
    """
    return content_digest([int(t) for t in model_input.to_ints()])
