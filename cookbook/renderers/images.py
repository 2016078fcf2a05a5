"""Images as tinker ``ImageChunk``s with the token count the model's processor will give them
(``image_to_chunk`` of ``tinker_cookbook.renderers.base``), for vision-language renderers."""

from __future__ import annotations

import io
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import tinker
from PIL import Image

from cookbook.exceptions import RendererError
from cookbook.renderers.types import ImagePart, TextPart, text_chunk


class ImageProcessorProtocol(Protocol):
    """What ``image_to_chunk`` asks of an image processor: ``get_number_of_image_patches``
    (Qwen3-VL style) or ``get_resize_config`` (Kimi K2.5 style)."""

    merge_size: int
    patch_size: int

    def get_number_of_image_patches(
        self, height: int, width: int, images_kwargs: dict | None = None
    ) -> int: ...

    def get_resize_config(self, image_data: dict[str, Any]) -> dict[str, Any]: ...


def _image_tokens(pil_image: Image.Image, image_processor: Any) -> int:
    if hasattr(image_processor, "get_number_of_image_patches"):
        width, height = pil_image.size
        patches = image_processor.get_number_of_image_patches(height, width, images_kwargs={})
        return patches // image_processor.merge_size**2
    if hasattr(image_processor, "get_resize_config"):
        return image_processor.get_resize_config({"type": "image", "image": pil_image})[
            "num_tokens"
        ]
    if hasattr(image_processor, "_compute_target_patches"):  # Nemotron 3.5 Super
        shuffle = image_processor._downsample_factor**2
        budget = min((image_processor.max_model_len - 4) * shuffle, image_processor.max_num_patches)
        budget = max(budget, image_processor.min_num_patches)
        w_patches, h_patches = image_processor._compute_target_patches(pil_image, budget)
        return w_patches * h_patches // shuffle
    raise RendererError(
        f"Don't know how to get the number of image tokens for image processor: {image_processor}"
    )


def image_to_chunk(
    image_or_str: Image.Image | str, image_processor: ImageProcessorProtocol
) -> tinker.types.ImageChunk:
    """A PIL image or an image URL / data URI as a JPEG ImageChunk (RGBA, LA and P converted
    to RGB), with the processor's token count as ``expected_tokens``."""
    if isinstance(image_or_str, str):
        with urllib.request.urlopen(image_or_str) as response:
            pil_image = Image.open(io.BytesIO(response.read()))
    elif isinstance(image_or_str, Image.Image):
        pil_image = image_or_str
    else:
        raise RendererError("The provided image must be a PIL.Image.Image, URL, or data URI.")
    if pil_image.mode in ("RGBA", "LA", "P"):
        pil_image = pil_image.convert("RGB")
    buffer = io.BytesIO()
    pil_image.save(buffer, format="JPEG")
    return tinker.types.ImageChunk(
        data=buffer.getvalue(),
        format="jpeg",
        expected_tokens=_image_tokens(pil_image, image_processor),
    )


def merge_text_parts(parts: Sequence[ImagePart | TextPart]) -> list[ImagePart | TextPart]:
    """Consecutive text parts joined into one, so text between images is tokenized in one
    piece as a chat template would (split, the same text can get other ids at the seams)."""
    merged: list[ImagePart | TextPart] = []
    for part in parts:
        if part["type"] == "text" and merged and merged[-1]["type"] == "text":
            merged[-1] = TextPart(type="text", text=merged[-1]["text"] + part["text"])
        else:
            merged.append(part)
    return merged


def parts_to_chunks(
    parts: Sequence[ImagePart | TextPart],
    encode: Callable[[str], list[int]],
    image_processor: ImageProcessorProtocol | None,
) -> list[tinker.ModelInputChunk]:
    """Text parts encoded with ``encode``, image parts as :func:`image_to_chunk` chunks."""
    chunks: list[tinker.ModelInputChunk] = []
    for part in parts:
        if part["type"] == "image":
            if image_processor is None:
                raise RendererError(
                    "image_processor is required to render image content: pass "
                    "get_image_processor(model_name) to get_renderer"
                )
            chunks.append(image_to_chunk(part["image"], image_processor))
        else:
            chunks.append(text_chunk(encode(part["text"])))
    return chunks
