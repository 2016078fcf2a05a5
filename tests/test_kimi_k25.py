"""Kimi K2.5/K2.6 renderers beyond the golden cases: registry, tool declarations, prefill,
streaming, images.

Token parity with the reference is proved by the goldens (specs/renderers/kimi_k2[56]*.yaml,
tests/test_parity_renderers.py). These tests cover what a conversation case cannot express:
which class and options each name builds, that ``create_conversation_prefix_with_tools`` writes
the TypeScript declarations the reference wrote into the spec cases, a custom prefill, the
streaming parse, and where image parts go (no golden: Kimi's image processor is hub-only).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import tinker
from PIL import Image

from cookbook.exceptions import RendererError
from cookbook.renderers import (
    KimiK25DisableThinkingRenderer,
    KimiK25Renderer,
    KimiK26PreserveThinkingRenderer,
    Message,
    StreamingTextDelta,
    StreamingThinkingDelta,
    TextPart,
    ThinkingPart,
    get_renderer,
)
from cookbook.renderers.kimi_k25 import IMAGE_PREFIX, IMAGE_SUFFIX
from cookbook.specs import load_spec
from cookbook.tokenizers import get_tokenizer, provenance

pytestmark = pytest.mark.parity

ROOT = Path(__file__).resolve().parents[1]
STANDIN = "cookbook-standin/kimi-k2.5"
TOOLS = json.loads((ROOT / "tests" / "data" / "kimi_k25_tools.json").read_text("utf-8"))

# name -> (class, strip_thinking_from_history), as tinker_cookbook/renderers/__init__.py (0.5.8)
# builds them: K2.6's two plain names are K2.5's classes.
REGISTRY = {
    "kimi_k25": (KimiK25Renderer, True),
    "kimi_k25_disable_thinking": (KimiK25DisableThinkingRenderer, True),
    "kimi_k26": (KimiK25Renderer, True),
    "kimi_k26_disable_thinking": (KimiK25DisableThinkingRenderer, True),
    "kimi_k26_preserve_thinking": (KimiK26PreserveThinkingRenderer, False),
}


@pytest.fixture(scope="module")
def tokenizer():
    return get_tokenizer(STANDIN, "offline")


def _case(renderer: str, case_id: str) -> list[dict[str, Any]]:
    spec = load_spec(ROOT / "specs" / "renderers" / f"{renderer}.yaml")
    (case,) = [c for c in spec.cases if c.id == case_id]
    return case.message_dicts()


def test_standin_is_declared_and_keeps_kimi_k2s_ids(tokenizer) -> None:
    """The K2.5 stand-in is K2's plus the media markers: K2's markers keep their ids."""
    assert "STAND-IN" in provenance(tokenizer).note
    k2 = get_tokenizer("cookbook-standin/kimi-k2", "offline")
    text = "<|im_user|>user<|im_middle|>Hi, 世界 <think></think><|im_end|>"
    assert tokenizer.encode(text, add_special_tokens=False) == k2.encode(
        text, add_special_tokens=False
    )
    for marker in ("<|media_begin|>", "<|media_content|>", "<|media_end|>", "<|media_pad|>"):
        assert len(tokenizer.encode(marker, add_special_tokens=False)) == 1
        assert len(k2.encode(marker, add_special_tokens=False)) > 1


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_registry_builds_the_reference_class_and_options(name: str, tokenizer) -> None:
    cls, strip = REGISTRY[name]
    processor = object()
    renderer = get_renderer(name, tokenizer, image_processor=processor)
    assert type(renderer) is cls
    assert renderer.strip_thinking_from_history is strip
    assert renderer.image_processor is processor
    assert renderer.disables_thinking is (cls is KimiK25DisableThinkingRenderer)
    assert renderer.has_extension_property is False


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_tool_prefixes_are_the_references_typescript(name: str, tokenizer) -> None:
    """The spec cases' tool_declare texts were written by the reference's encoder."""
    renderer = get_renderer(name, tokenizer)
    expected = _case(name, "typescript_tools_prefix")[0]
    assert renderer.create_conversation_prefix_with_tools(TOOLS) == [
        expected,
        Message(role="system", content=renderer.DEFAULT_SYSTEM_PROMPT),
    ]
    tools_prefix = _case(name, "tools_prefix")[:2]
    assert (
        renderer.create_conversation_prefix_with_tools(TOOLS[:1], tools_prefix[1]["content"])
        == tools_prefix
    )
    assert renderer.create_conversation_prefix_with_tools([]) == [
        Message(role="system", content=renderer.DEFAULT_SYSTEM_PROMPT)
    ]


@pytest.mark.parametrize(
    ("name", "think"),
    [("kimi_k25", "<think>"), ("kimi_k25_disable_thinking", "<think></think>")],
)
def test_custom_prefill_follows_the_think_prefill(name: str, think: str, tokenizer) -> None:
    renderer = get_renderer(name, tokenizer)
    messages = [Message(role="user", content="What is the capital of France?")]
    plain = renderer.build_generation_prompt(messages).to_ints()
    assert tokenizer.decode(plain).endswith(f"<|im_assistant|>assistant<|im_middle|>{think}")
    prefilled = renderer.build_generation_prompt(messages, prefill="Custom response: ")
    assert prefilled.to_ints() == plain + tokenizer.encode("Custom response: ")


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_streaming_parse_restores_the_prefilled_think_tag(name: str, tokenizer) -> None:
    """The reference's test_kimi_k25_parse_response_streaming_restores_prefilled_think_tag."""
    renderer = get_renderer(name, tokenizer)
    response = tokenizer.encode("reasoning...</think>2<|im_end|>", add_special_tokens=False)
    deltas = list(renderer.parse_response_streaming(response))
    thinking = "".join(d.thinking for d in deltas if isinstance(d, StreamingThinkingDelta))
    text = "".join(d.text for d in deltas if isinstance(d, StreamingTextDelta))
    parts = [
        ThinkingPart(type="thinking", thinking="reasoning..."),
        TextPart(type="text", text="2"),
    ]
    assert (thinking, text, deltas[-1]["content"]) == ("reasoning...", "2", parts)
    assert renderer.parse_response(response)[0]["content"] == parts


class _ResizeConfigProcessor:
    """A Kimi-style processor (``get_resize_config``) counting one token per 28x28 patch."""

    def get_resize_config(self, image_data: dict[str, Any]) -> dict[str, Any]:
        width, height = image_data["image"].size
        return {"num_tokens": math.ceil(width / 28) * math.ceil(height / 28)}


def _image_conversation() -> list[Message]:
    return [
        Message(role="system", content="You are a helpful assistant."),
        Message(
            role="user",
            content=[
                {"type": "image", "image": Image.new("RGB", (100, 60))},
                TextPart(type="text", text="Can you describe this image?"),
            ],
        ),
    ]


def test_image_parts_go_between_the_media_markers(tokenizer) -> None:
    renderer = get_renderer("kimi_k25", tokenizer, image_processor=_ResizeConfigProcessor())
    chunks = renderer.build_generation_prompt(_image_conversation()).chunks
    (at,) = [i for i, c in enumerate(chunks) if isinstance(c, tinker.types.ImageChunk)]
    assert chunks[at].expected_tokens == 4 * 3
    assert chunks[at].format == "jpeg"
    text = [list(c.tokens) for c in chunks[at - 2 : at] + chunks[at + 1 : at + 4]]
    assert text == [
        tokenizer.encode("<|im_user|>user<|im_middle|>"),
        tokenizer.encode(IMAGE_PREFIX),
        tokenizer.encode(IMAGE_SUFFIX),
        tokenizer.encode("Can you describe this image?"),
        tokenizer.encode("<|im_end|>"),
    ]


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_image_parts_without_a_processor_say_it_is_not_available_offline(
    name: str, tokenizer
) -> None:
    renderer = get_renderer(name, tokenizer)
    with pytest.raises(RendererError, match="image content is not available offline"):
        renderer.build_generation_prompt(_image_conversation())
