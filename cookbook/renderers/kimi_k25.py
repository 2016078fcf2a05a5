"""Kimi K2.5 (Moonshot AI), with the semantics of ``tinker_cookbook.renderers.kimi_k25`` (0.5.8).

Kimi K2's format (:mod:`cookbook.renderers.kimi_k2`) with three differences:

* the generation prompt prefills ``<think>`` (thinking on) or ``<think></think>`` (the
  disable-thinking variant); a custom prefill follows it. ``parse_response`` puts a prefilled
  ``<think>`` back in front of a sampled reply that closes a think block it did not open;
* tools are declared TypeScript-style (:mod:`cookbook.renderers.kimi_k2_5_tool_declaration_ts`);
* a non-assistant message of several parts renders part by part, each text part encoded on
  its own, an image as ``<|media_begin|>image<|media_content|>`` + the image chunk +
  ``<|media_end|>\\n``.

Images need Kimi's image processor (``get_image_processor("moonshotai/Kimi-K2.5")``), which is
remote code on the Hugging Face hub: no registry package ships it, so offline an image part is
refused with an error that says so. No registry package ships Kimi K2.5's tokenizer either: the
goldens use a declared stand-in (``cookbook-standin/kimi-k2.5``, specs/renderers/exclusions.yaml).
"""

from __future__ import annotations

from typing import Any

import tinker

from cookbook.exceptions import RendererError
from cookbook.renderers.images import image_to_chunk
from cookbook.renderers.kimi_k2 import KimiK2Renderer
from cookbook.renderers.kimi_k2_5_tool_declaration_ts import encode_tools_to_typescript_style
from cookbook.renderers.types import ContentPart, Message, Role, text_chunk
from cookbook.tokenizers import Tokenizer

IMAGE_PREFIX = "<|media_begin|>image<|media_content|>"
IMAGE_SUFFIX = "<|media_end|>\n"


class KimiK25Renderer(KimiK2Renderer):
    """Kimi K2.5 with thinking on; ``strip_thinking_from_history=False`` keeps every turn's
    reasoning (the ``kimi_k26_preserve_thinking`` behaviour)."""

    # What the generation prompt prefills before any custom prefill.
    _thinking_prefill = "<think>"

    def __init__(
        self,
        tokenizer: Tokenizer,
        image_processor: Any = None,
        strip_thinking_from_history: bool = True,
    ):
        super().__init__(tokenizer, strip_thinking_from_history=strip_thinking_from_history)
        self.image_processor = image_processor
        self._think_open_token = self._single_token("<think>")
        self._think_close_token = self._single_token("</think>")

    def _single_token(self, marker: str) -> int:
        ids = self.tokenizer.encode(marker, add_special_tokens=False)
        if len(ids) != 1:
            raise RendererError(f"{type(self).__name__} needs {marker} as one token, got {ids}")
        return ids[0]

    def _encode_parts(self, parts: list[ContentPart]) -> list[tinker.ModelInputChunk]:
        chunks: list[tinker.ModelInputChunk] = []
        for part in parts:
            if part["type"] == "text":
                chunks.append(text_chunk(self._encode(part["text"])))
            elif part["type"] == "image":
                chunks += [
                    text_chunk(self._encode(IMAGE_PREFIX)),
                    image_to_chunk(part["image"], self._require_image_processor()),
                    text_chunk(self._encode(IMAGE_SUFFIX)),
                ]
            else:
                raise RendererError(f"Unsupported content type: {part['type']}")
        return chunks

    def _require_image_processor(self) -> Any:
        if self.image_processor is None:
            raise RendererError(
                f"{type(self).__name__} needs an image processor to render image content: pass "
                "get_renderer(name, tokenizer, image_processor=get_image_processor(model_name)). "
                "Kimi's image processor is remote code on the Hugging Face hub and no registry "
                "package ships it, so image content is not available offline."
            )
        return self.image_processor

    def build_generation_prompt(
        self, messages: list[Message], role: Role = "assistant", prefill: str | None = None
    ) -> tinker.ModelInput:
        """The prompt ends in the mode's think prefill, then ``prefill`` if given."""
        return super().build_generation_prompt(
            messages, role, self._thinking_prefill + (prefill or "")
        )

    def _normalize_response_tokens(self, response: list[int]) -> list[int]:
        """A reply that closes a think block without opening it started inside the prefilled
        ``<think>``: put the tag back so the reasoning parses as reasoning."""
        if (
            response
            and response[0] != self._think_open_token
            and self._think_close_token in response
        ):
            return [self._think_open_token, *response]
        return response

    def _declare_tools(self, payload: list[dict]) -> str:
        """TypeScript-style, as Kimi K2.5's chat template declares tools."""
        return encode_tools_to_typescript_style(payload)


class KimiK25DisableThinkingRenderer(KimiK25Renderer):
    """Kimi K2.5 with thinking off: the generation prompt prefills an empty think block."""

    disables_thinking = True
    _thinking_prefill = "<think></think>"
