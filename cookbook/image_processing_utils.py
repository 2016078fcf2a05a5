"""``tinker_cookbook.image_processing_utils`` under our name: the hub image processor of a
vision model (no registry package ships one, so offline this raises the hub's own OSError),
and images as JPEG data URIs. cookbook's renderers refuse image content for now; this module
exists so code written against the reference imports unchanged."""

from __future__ import annotations

import base64
import io
import os
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from PIL import Image

from cookbook.hub import cache_only, hub_reachable

ImageProcessor = Any
"""A Hugging Face image processor (``BaseImageProcessor``), typed loosely as the reference does."""

# The reference pins the revisions whose remote code it has reviewed.
_REMOTE_CODE_REVISIONS = {
    "moonshotai/Kimi-K2.5": "3367c8d1c68584429fab7faf845a32d5195b6ac1",
    "moonshotai/Kimi-K2.6": "b5aabbfb20227ed42becbf5541dbffd213942c58",
    "nvidia/NVIDIA-Nemotron-3.5-Super-VL-120B-A12B-BF16": (
        "533d66230b6e75518bf32d2d7a7b95a24c3dd517"
    ),
}


@cache
def get_image_processor(model_name: str) -> ImageProcessor:
    """The model's image processor from the hub (or its cache); None for Inkling models,
    whose images the tml renderer tokenizes itself."""
    from transformers import AutoImageProcessor

    model_name = model_name.split(":", 1)[0]
    if model_name.startswith("thinkingmachines/Inkling"):
        return None
    kwargs: dict[str, Any] = {}
    if os.environ.get("HF_TRUST_REMOTE_CODE", "").lower() in ("1", "true", "yes"):
        kwargs["trust_remote_code"] = True
    if model_name in _REMOTE_CODE_REVISIONS:
        kwargs.update(trust_remote_code=True, revision=_REMOTE_CODE_REVISIONS[model_name])
    if hub_reachable():
        return AutoImageProcessor.from_pretrained(model_name, **kwargs)
    with cache_only():
        return AutoImageProcessor.from_pretrained(model_name, **kwargs)


def _open_local(path: Path) -> Image.Image:
    with Image.open(path.expanduser()) as opened:
        return opened.copy()


def image_to_data_uri(image: Any) -> str:
    """A PIL image, a ``data:`` URI (returned unchanged) or a local path / ``file://`` URI as a
    base64 JPEG data URI. Remote URLs are refused: materialise them first."""
    if isinstance(image, Image.Image):
        pil_image = image
    elif isinstance(image, str):
        if image.startswith("data:"):
            return image
        parsed = urlparse(image)
        if parsed.scheme == "":
            pil_image = _open_local(Path(image))
        elif parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
            pil_image = _open_local(Path(unquote(parsed.path)))
        else:
            raise ValueError(
                f"does not fetch remote image URLs (scheme {parsed.scheme!r}); materialize "
                f"{image!r} into a PIL image, a local path, or a base64 data: URI first"
            )
    else:
        raise TypeError(f"image must be a PIL.Image.Image or str; got {type(image)!r}")
    if pil_image.mode in ("RGBA", "LA", "P"):
        pil_image = pil_image.convert("RGB")
    buffer = io.BytesIO()
    pil_image.save(buffer, format="JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def resize_image(image: Image.Image, max_size: int) -> Image.Image:
    """The image with its longest side at most ``max_size`` (aspect kept, LANCZOS)."""
    width, height = image.size
    if max(width, height) <= max_size:
        return image
    if width > height:
        size = (max_size, int(height * max_size / width))
    else:
        size = (int(width * max_size / height), max_size)
    return image.resize(size, Image.Resampling.LANCZOS)
