"""Chat renderers with the reference's names: ``get_renderer("llama3", tokenizer)``.

A tinker-cookbook user switches by changing ``tinker_cookbook.renderers`` to
``cookbook.renderers``; names, signatures and token output are the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cookbook.exceptions import RendererError
from cookbook.renderers.base import (
    Renderer,
    Segment,
    SegmentKind,
    parse_response_for_stop_token,
)
from cookbook.renderers.content import (
    ParseFailureKind,
    classify_parse_failure,
    format_content_as_string,
    get_text_content,
)
from cookbook.renderers.deepseek_v3 import (
    DeepSeekV3DisableThinkingRenderer,
    DeepSeekV3ThinkingRenderer,
)
from cookbook.renderers.glm5_3 import (
    Glm5_3HighReasoningRenderer,
    Glm5_3LowReasoningRenderer,
    Glm5_3Renderer,
)
from cookbook.renderers.gpt_oss import GptOssRenderer
from cookbook.renderers.kimi_k2 import KimiK2Renderer
from cookbook.renderers.llama3 import Llama3Renderer
from cookbook.renderers.nemotron3 import (
    Nemotron3DisableThinkingRenderer,
    Nemotron3LowThinkingRenderer,
    Nemotron3PreserveThinkingRenderer,
    Nemotron3Renderer,
    Nemotron3UltraDisableThinkingRenderer,
    Nemotron3UltraMediumThinkingRenderer,
    Nemotron3UltraPreserveThinkingRenderer,
    Nemotron3UltraRenderer,
)
from cookbook.renderers.parsing import parse_content_blocks
from cookbook.renderers.qwen3 import (
    Qwen3DisableThinkingRenderer,
    Qwen3InstructRenderer,
    Qwen3Renderer,
)
from cookbook.renderers.qwen3_5 import Qwen3_5DisableThinkingRenderer, Qwen3_5Renderer
from cookbook.renderers.qwen3_8 import Qwen3_8DisableThinkingRenderer, Qwen3_8Renderer
from cookbook.renderers.role_colon import RoleColonRenderer
from cookbook.renderers.streaming import (
    MessageDelta,
    StreamingMessageHeader,
    StreamingTextDelta,
    StreamingThinkingDelta,
    Utf8TokenDecoder,
)
from cookbook.renderers.types import (
    Content,
    ContentPart,
    ImagePart,
    Message,
    ParseTermination,
    RenderContext,
    RenderedMessage,
    Role,
    TextPart,
    ThinkingPart,
    ToolCall,
    ToolSpec,
    TrainOnWhat,
    UnparsedToolCall,
    ensure_text,
)
from cookbook.tokenizers import Tokenizer

RendererFactory = Callable[[Tokenizer, Any], Renderer]

_BUILTIN: dict[str, RendererFactory] = {
    "llama3": lambda tokenizer, _image_processor: Llama3Renderer(tokenizer),
    "role_colon": lambda tokenizer, _image_processor: RoleColonRenderer(tokenizer),
    "qwen3": lambda tokenizer, _image_processor: Qwen3Renderer(tokenizer),
    "qwen3_disable_thinking": lambda tokenizer, _image_processor: Qwen3DisableThinkingRenderer(
        tokenizer
    ),
    "qwen3_instruct": lambda tokenizer, _image_processor: Qwen3InstructRenderer(tokenizer),
    "qwen3_5": lambda tokenizer, image_processor: Qwen3_5Renderer(
        tokenizer, image_processor=image_processor
    ),
    "qwen3_5_disable_thinking": lambda tokenizer, image_processor: Qwen3_5DisableThinkingRenderer(
        tokenizer, image_processor=image_processor
    ),
    "qwen3_5_preserve_thinking": lambda tokenizer, image_processor: Qwen3_5Renderer(
        tokenizer, image_processor=image_processor, strip_thinking_from_history=False
    ),
    **{
        f"qwen3_8_{effort}_reasoning": lambda tokenizer, image_processor, effort=effort: (
            Qwen3_8Renderer(tokenizer, image_processor=image_processor, reasoning_effort=effort)
        )
        for effort in ("xhigh", "medium", "low")
    },
    "qwen3_8_disable_thinking": lambda tokenizer, image_processor: Qwen3_8DisableThinkingRenderer(
        tokenizer, image_processor=image_processor
    ),
    # The reference's default DeepSeek V3 mode is non-thinking; the second name is an alias.
    "deepseekv3": lambda tokenizer, _image_processor: DeepSeekV3DisableThinkingRenderer(tokenizer),
    "deepseekv3_disable_thinking": lambda tokenizer, _image_processor: (
        DeepSeekV3DisableThinkingRenderer(tokenizer)
    ),
    "deepseekv3_thinking": lambda tokenizer, _image_processor: DeepSeekV3ThinkingRenderer(
        tokenizer
    ),
    # The reference's gpt-oss names: no system prompt, or OpenAI's with a reasoning effort.
    "gpt_oss_no_sysprompt": lambda tokenizer, _image_processor: GptOssRenderer(tokenizer),
    **{
        f"gpt_oss_{effort}_reasoning": lambda tokenizer, _image_processor, effort=effort: (
            GptOssRenderer(tokenizer, use_system_prompt=True, reasoning_effort=effort)
        )
        for effort in ("low", "medium", "high")
    },
    "kimi_k2": lambda tokenizer, _image_processor: KimiK2Renderer(tokenizer),
    "glm5_3_max_reasoning": lambda tokenizer, _image_processor: Glm5_3Renderer(tokenizer),
    "glm5_3_high_reasoning": lambda tokenizer, _image_processor: Glm5_3HighReasoningRenderer(
        tokenizer
    ),
    "glm5_3_low_reasoning": lambda tokenizer, _image_processor: Glm5_3LowReasoningRenderer(
        tokenizer
    ),
    # Nemotron 3 Nano/Super take no image processor; Ultra and the 3.5 models do.
    "nemotron3": lambda tokenizer, _image_processor: Nemotron3Renderer(tokenizer),
    "nemotron3_low_thinking": lambda tokenizer, _image_processor: Nemotron3LowThinkingRenderer(
        tokenizer
    ),
    "nemotron3_disable_thinking": lambda tokenizer, _image_processor: (
        Nemotron3DisableThinkingRenderer(tokenizer)
    ),
    "nemotron3_preserve_thinking": lambda tokenizer, _image_processor: (
        Nemotron3PreserveThinkingRenderer(tokenizer)
    ),
    "nemotron3_ultra": lambda tokenizer, image_processor: Nemotron3UltraRenderer(
        tokenizer, image_processor=image_processor
    ),
    "nemotron3_ultra_disable_thinking": lambda tokenizer, image_processor: (
        Nemotron3UltraDisableThinkingRenderer(tokenizer, image_processor=image_processor)
    ),
    "nemotron3_ultra_medium_thinking": lambda tokenizer, image_processor: (
        Nemotron3UltraMediumThinkingRenderer(tokenizer, image_processor=image_processor)
    ),
    "nemotron3_ultra_preserve_thinking": lambda tokenizer, image_processor: (
        Nemotron3UltraPreserveThinkingRenderer(tokenizer, image_processor=image_processor)
    ),
}

# Registered by the pinned reference (tinker-cookbook 0.5.8) but not ported (outside this port's
# scope: vision, DeepSeek V4.1, Kimi K2.5/2.6, Inkling); asking for
# one says so instead of pretending the name is unknown.
_NOT_YET_PORTED = frozenset(
    {
        "qwen3_vl",
        "qwen3_vl_instruct",
        "deepseekv4_1",
        *(f"deepseekv4_1_{mode}" for mode in ("low_reasoning", "max_reasoning")),
        *(f"deepseekv4_1_{mode}" for mode in ("disable_thinking", "preserve_thinking")),
        "kimi_k25",
        "kimi_k25_disable_thinking",
        "kimi_k26",
        "kimi_k26_disable_thinking",
        "kimi_k26_preserve_thinking",
        "tml_v0",
    }
)

_CUSTOM: dict[str, RendererFactory] = {}


def register_renderer(name: str, factory: RendererFactory) -> None:
    """Register ``factory(tokenizer, image_processor) -> Renderer``; it wins over built-ins."""
    _CUSTOM[name] = factory


def unregister_renderer(name: str) -> bool:
    return _CUSTOM.pop(name, None) is not None


def is_renderer_registered(name: str) -> bool:
    return name in _CUSTOM


def get_registered_renderer_names() -> list[str]:
    return list(_CUSTOM)


def builtin_renderer_names() -> list[str]:
    return sorted(_BUILTIN)


def get_renderer(
    name: str,
    tokenizer: Tokenizer,
    image_processor: Any = None,
    model_name: str | None = None,
) -> Renderer:
    """The renderer registered under ``name``, over ``tokenizer``."""
    factory = _CUSTOM.get(name) or _BUILTIN.get(name)
    if factory is None:
        if name in _NOT_YET_PORTED:
            raise RendererError(
                f"Renderer {name!r} exists in the reference but is not implemented in cookbook "
                f"yet; available: {', '.join(builtin_renderer_names())}"
            )
        raise RendererError(
            f"Unknown renderer: {name}. If this is a custom renderer, please register it via "
            "register_renderer()."
        )
    renderer = factory(tokenizer, image_processor)
    renderer._renderer_name = name
    renderer._model_name = model_name or getattr(tokenizer, "name_or_path", None)
    renderer._has_image_processor = image_processor is not None
    return renderer


__all__ = [
    "Content",
    "ContentPart",
    "DeepSeekV3DisableThinkingRenderer",
    "DeepSeekV3ThinkingRenderer",
    "Glm5_3HighReasoningRenderer",
    "Glm5_3LowReasoningRenderer",
    "Glm5_3Renderer",
    "GptOssRenderer",
    "ImagePart",
    "KimiK2Renderer",
    "Llama3Renderer",
    "Message",
    "MessageDelta",
    "Nemotron3DisableThinkingRenderer",
    "Nemotron3LowThinkingRenderer",
    "Nemotron3PreserveThinkingRenderer",
    "Nemotron3Renderer",
    "Nemotron3UltraDisableThinkingRenderer",
    "Nemotron3UltraMediumThinkingRenderer",
    "Nemotron3UltraPreserveThinkingRenderer",
    "Nemotron3UltraRenderer",
    "ParseFailureKind",
    "ParseTermination",
    "Qwen3DisableThinkingRenderer",
    "Qwen3InstructRenderer",
    "Qwen3Renderer",
    "Qwen3_5DisableThinkingRenderer",
    "Qwen3_5Renderer",
    "Qwen3_8DisableThinkingRenderer",
    "Qwen3_8Renderer",
    "RenderContext",
    "RenderedMessage",
    "Renderer",
    "Role",
    "RoleColonRenderer",
    "Segment",
    "SegmentKind",
    "StreamingMessageHeader",
    "StreamingTextDelta",
    "StreamingThinkingDelta",
    "TextPart",
    "ThinkingPart",
    "ToolCall",
    "ToolSpec",
    "TrainOnWhat",
    "UnparsedToolCall",
    "Utf8TokenDecoder",
    "builtin_renderer_names",
    "classify_parse_failure",
    "ensure_text",
    "format_content_as_string",
    "get_registered_renderer_names",
    "get_renderer",
    "get_text_content",
    "is_renderer_registered",
    "parse_content_blocks",
    "parse_response_for_stop_token",
    "register_renderer",
    "unregister_renderer",
]
