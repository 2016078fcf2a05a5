"""Images in renderer cases: generated test images, and image chunks in golden records.

A spec writes an image as ``{"width", "height", "seed", "mode"}``; :func:`with_images` turns it
into the same PIL image on every machine (a formula, never downloaded, never committed). In a
golden, every position an image chunk fills holds :data:`IMAGE_TOKEN`, and ``images`` lists each
chunk's start, length and what it declares (format, expected_tokens, sha256 of its bytes): where
images go and how many placeholder tokens they carry. Text-only records are unchanged.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import tinker
from PIL import Image

IMAGE_TOKEN = -1
"""The id at each position an image chunk fills: no vocabulary has it, so a port that puts text
there (or an image elsewhere, or of another size) diverges at that position."""
IMAGE_PIECE = "<image>"


def synthetic_image(spec: dict[str, Any]) -> Image.Image:
    """The test image a spec's ``{"width", "height", "seed", "mode"}`` describes.

    Channel ``c`` of pixel ``(x, y)`` is ``(7x + 13y + 101c + 37 seed) mod 256``: a formula any
    port can repeat in any language (docs/conformance.md), so no image is ever downloaded or
    committed; the image is then converted to ``mode``.
    """
    ys, xs = np.mgrid[0 : spec["height"], 0 : spec["width"]]
    seed = spec.get("seed", 0)
    pixels = np.stack([(7 * xs + 13 * ys + 101 * c + 37 * seed) % 256 for c in range(3)], -1)
    image = Image.fromarray(pixels.astype(np.uint8), "RGB")
    mode = spec.get("mode", "RGB")
    return image if mode == "RGB" else image.convert(mode)


def with_images(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Spec messages hold images as :func:`synthetic_image` specs; renderers take PIL images."""

    def part(p: dict[str, Any]) -> dict[str, Any]:
        if p.get("type") == "image" and isinstance(p.get("image"), dict):
            return {**p, "image": synthetic_image(p["image"])}
        return p

    return [
        {**m, "content": [part(p) for p in m["content"]]} if isinstance(m["content"], list) else m
        for m in messages
    ]


def has_images(messages: list[dict[str, Any]]) -> bool:
    return any(
        isinstance(m["content"], list) and any(p.get("type") == "image" for p in m["content"])
        for m in messages
    )


def _chunk_record(chunk: Any, start: int) -> dict[str, Any]:
    """Where a non-text chunk sits and what it declares (the image bytes as a sha256)."""
    record: dict[str, Any] = {"type": chunk.type, "start": start, "length": chunk.length}
    for name in ("format", "expected_tokens", "location"):
        if getattr(chunk, name, None) is not None:
            record[name] = getattr(chunk, name)
    if isinstance(getattr(chunk, "data", None), bytes):
        record["sha256"] = hashlib.sha256(chunk.data).hexdigest()
    return record


def flat_ids(model_input: tinker.ModelInput) -> tuple[list[int], list[dict[str, Any]]]:
    """Token ids with :data:`IMAGE_TOKEN` at every position of a non-text chunk, and those
    chunks' records (empty for text-only input, where the ids are ``to_ints()``)."""
    ids: list[int] = []
    images: list[dict[str, Any]] = []
    for chunk in model_input.chunks:
        if isinstance(chunk, tinker.EncodedTextChunk):
            ids += chunk.tokens
        else:
            images.append(_chunk_record(chunk, len(ids)))
            ids += [IMAGE_TOKEN] * chunk.length
    return ids, images
