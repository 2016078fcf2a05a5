"""``tinker_cookbook.image_processing_utils`` under our name: the hub image processor of a
vision model, and images as JPEG data URIs.

No registry package ships a vision model's ``preprocessor_config.json``. Offline (hub down,
nothing cached), Qwen3-VL (and, with less evidence, Qwen3.5/3.6/3.8) gets a DECLARED STAND-IN
(:func:`offline_image_processor`): transformers' own Qwen2-VL processor class with the values
that decide token counts taken from the reference's source; any other model raises the hub's
own OSError."""

from __future__ import annotations

import base64
import io
import logging
import os
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from PIL import Image

from cookbook.hub import cache_only, hub_reachable
from cookbook.tokenizers.tml import is_tml_model

logger = logging.getLogger(__name__)

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


QWEN3_VL_STANDIN_CONFIG: dict[str, Any] = {
    # tinker_cookbook/renderers/image_token_count_test.py (0.5.8): "The Qwen3-VL
    # preprocessor_config.json specifies these values (via size.shortest_edge /
    # size.longest_edge)", and tokens = smart_resize(h, w, factor=32) patches of 16 / merge 2**2.
    # qwen-vl-utils 0.0.14 (the Qwen team's helper) agrees: image_patch_size=16 for Qwen3-VL,
    # SPATIAL_MERGE_SIZE=2, IMAGE_MAX_TOKEN_NUM=16384 (16384 * 32**2 = longest_edge).
    "size": {"shortest_edge": 65536, "longest_edge": 16777216},
    "patch_size": 16,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
}
STANDIN_NOTE = (
    "STAND-IN, not the model's preprocessor_config.json (no registry package ships it): "
    "transformers' Qwen2VLImageProcessorPil with the sizes tinker-cookbook 0.5.8's "
    "image_token_count_test states for Qwen3-VL"
)
# Qwen3.5/3.6 are vision-language models whose reference renderer is Qwen3-VL's subclass, and
# the reference says Qwen3.8 keeps Qwen3.5/3.6's preprocessor; no source states their sizes, so
# Qwen3-VL's stand in for them too (less evidence, said so in their note).
_STANDIN_PREFIXES = ("Qwen/Qwen3-VL", "Qwen/Qwen3.5", "Qwen/Qwen3.6", "Qwen/Qwen3.8")
_UNVERIFIED_FAMILY = " - assumed for the Qwen3.5/3.6/3.8 family, whose own sizes no source states"


def offline_image_processor(model_name: str) -> ImageProcessor:
    """The declared stand-in image processor of ``model_name`` (what parity runs use, so token
    counts never depend on a cache); ``cookbook_provenance`` on it says so. None for Inkling
    models, which need none; OSError if there is no stand-in."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    if is_tml_model(model_name):
        return None
    if not model_name.split(":", 1)[0].startswith(_STANDIN_PREFIXES):
        raise OSError(
            f"no offline image processor for {model_name!r} (stand-ins exist for: "
            f"{', '.join(p + '*' for p in _STANDIN_PREFIXES)}); it needs the hub or its cache"
        )
    processor = Qwen2VLImageProcessorPil(**QWEN3_VL_STANDIN_CONFIG)
    note = STANDIN_NOTE + ("" if model_name.startswith("Qwen/Qwen3-VL") else _UNVERIFIED_FAMILY)
    processor.cookbook_provenance = {"model_name": model_name, "note": note}
    return processor


def image_processor_record(processor: ImageProcessor) -> dict[str, Any]:
    """What decides an image's token count, for goldens and run records: the processor class,
    its sizes and, for a stand-in, its note."""
    config = processor.to_dict()
    return {
        "class": type(processor).__name__,
        "config": {
            key: config[key]
            for key in ("size", "patch_size", "temporal_patch_size", "merge_size")
            if key in config
        },
        "note": getattr(processor, "cookbook_provenance", {}).get("note", ""),
    }


@cache
def get_image_processor(model_name: str) -> ImageProcessor:
    """The model's image processor from the hub (or its cache), else its declared offline
    stand-in (with a warning); None for Inkling models, whose images the tml renderer
    tokenizes itself."""
    from transformers import AutoImageProcessor

    model_name = model_name.split(":", 1)[0]
    if is_tml_model(model_name):
        return None
    kwargs: dict[str, Any] = {}
    if os.environ.get("HF_TRUST_REMOTE_CODE", "").lower() in ("1", "true", "yes"):
        kwargs["trust_remote_code"] = True
    if model_name in _REMOTE_CODE_REVISIONS:
        kwargs.update(trust_remote_code=True, revision=_REMOTE_CODE_REVISIONS[model_name])
    if hub_reachable():
        return AutoImageProcessor.from_pretrained(model_name, **kwargs)
    try:
        with cache_only():
            return AutoImageProcessor.from_pretrained(model_name, **kwargs)
    except OSError:
        if not model_name.startswith(_STANDIN_PREFIXES):
            raise
    processor = offline_image_processor(model_name)
    note = processor.cookbook_provenance["note"]
    logger.warning("%s: hub unreachable and not cached; using a %s", model_name, note)
    return processor


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
