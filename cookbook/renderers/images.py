"""Images as tinker ``ImageChunk``s with the token count the model's processor will give them
(``image_to_chunk`` of ``tinker_cookbook.renderers.base``), for vision-language renderers."""

from __future__ import annotations

import io
import urllib.request
from typing import Any, Protocol

import tinker
from PIL import Image

from cookbook.exceptions import RendererError


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
