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
from cookbook.renderers.deepseek_v4_1 import (
    DeepSeekV4_1DisableThinkingRenderer,
    DeepSeekV4_1LowReasoningRenderer,
    DeepSeekV4_1MaxReasoningRenderer,
    DeepSeekV4_1Renderer,
)
from cookbook.renderers.glm5_3 import (
    Glm5_3HighReasoningRenderer,
    Glm5_3LowReasoningRenderer,
    Glm5_3Renderer,
)
from cookbook.renderers.gpt_oss import GptOssRenderer
from cookbook.renderers.kimi_k2 import KimiK2Renderer
from cookbook.renderers.kimi_k25 import KimiK25DisableThinkingRenderer, KimiK25Renderer
from cookbook.renderers.kimi_k26 import KimiK26PreserveThinkingRenderer
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
    Qwen3VLInstructRenderer,
    Qwen3VLRenderer,
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
    AudioPart,
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


def _tml_v0(tokenizer: Tokenizer) -> Renderer:
    # Imported on use: tml_renderers (and the torch it imports) load only for Inkling.
    from cookbook.renderers.tml_v0 import TmlV0Renderer

    return TmlV0Renderer(tokenizer)


_BUILTIN: dict[str, RendererFactory] = {
    "llama3": lambda tokenizer, _image_processor: Llama3Renderer(tokenizer),
    "role_colon": lambda tokenizer, _image_processor: RoleColonRenderer(tokenizer),
    "qwen3": lambda tokenizer, _image_processor: Qwen3Renderer(tokenizer),
    "qwen3_disable_thinking": lambda tokenizer, _image_processor: Qwen3DisableThinkingRenderer(
        tokenizer
    ),
    "qwen3_instruct": lambda tokenizer, _image_processor: Qwen3InstructRenderer(tokenizer),
    "qwen3_vl": lambda tokenizer, image_processor: Qwen3VLRenderer(tokenizer, image_processor),
    "qwen3_vl_instruct": lambda tokenizer, image_processor: Qwen3VLInstructRenderer(
        tokenizer, image_processor
    ),
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
    "deepseekv4_1": lambda tokenizer, _image_processor: DeepSeekV4_1Renderer(tokenizer),
    "deepseekv4_1_low_reasoning": lambda tokenizer, _image_processor: (
        DeepSeekV4_1LowReasoningRenderer(tokenizer)
    ),
    "deepseekv4_1_max_reasoning": lambda tokenizer, _image_processor: (
        DeepSeekV4_1MaxReasoningRenderer(tokenizer)
    ),
    "deepseekv4_1_disable_thinking": lambda tokenizer, _image_processor: (
        DeepSeekV4_1DisableThinkingRenderer(tokenizer)
    ),
    "deepseekv4_1_preserve_thinking": lambda tokenizer, _image_processor: DeepSeekV4_1Renderer(
        tokenizer, strip_thinking_from_history=False
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
    # K2.6 renders as K2.5; only its preserve-thinking variant has a class of its own.
    "kimi_k25": lambda tokenizer, image_processor: KimiK25Renderer(tokenizer, image_processor),
    "kimi_k25_disable_thinking": lambda tokenizer, image_processor: KimiK25DisableThinkingRenderer(
        tokenizer, image_processor
    ),
    "kimi_k26": lambda tokenizer, image_processor: KimiK25Renderer(tokenizer, image_processor),
    "kimi_k26_disable_thinking": lambda tokenizer, image_processor: KimiK25DisableThinkingRenderer(
        tokenizer, image_processor
    ),
    "kimi_k26_preserve_thinking": lambda tokenizer, image_processor: (
        KimiK26PreserveThinkingRenderer(tokenizer, image_processor)
    ),
    "glm5_3_max_reasoning": lambda tokenizer, _image_processor: Glm5_3Renderer(tokenizer),
    "glm5_3_high_reasoning": lambda tokenizer, _image_processor: Glm5_3HighReasoningRenderer(
        tokenizer
    ),
    "glm5_3_low_reasoning": lambda tokenizer, _image_processor: Glm5_3LowReasoningRenderer(
        tokenizer
    ),
    # Inkling: tml_renderers reads images itself, so there is no image processor to pass.
    "tml_v0": lambda tokenizer, _image_processor: _tml_v0(tokenizer),
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

# Registered by a newer reference (tinker-cookbook 0.6.1) and not implementable here: these are
# one class over tml-renderers>=0.4.1's compiled KimiK31Pro renderer and KimiK3Tokenizer, and
# only tml-renderers 0.2.1 is on the package registry - no format, tokenizer or reference run to
# be at parity with (docs/drift.md). Asking for one says so instead of "unknown renderer".
_NEWER_REFERENCE_ONLY = frozenset(
    f"kimi_k31_pro_{mode}"
    for mode in (
        "disable_thinking",
        "high_reasoning",
        "low_reasoning",
        "max_reasoning",
        "no_reasoning_effort",
    )
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
        if name in _NEWER_REFERENCE_ONLY:
            raise RendererError(
                f"Renderer {name!r} is registered by tinker-cookbook 0.6.1, not by the pinned "
                "0.5.8, and is not implemented in cookbook: it needs tml-renderers>=0.4.1, which "
                "is not on the package registry (see docs/drift.md)"
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
    "AudioPart",
    "Content",
    "ContentPart",
    "DeepSeekV3DisableThinkingRenderer",
    "DeepSeekV3ThinkingRenderer",
    "DeepSeekV4_1DisableThinkingRenderer",
    "DeepSeekV4_1LowReasoningRenderer",
    "DeepSeekV4_1MaxReasoningRenderer",
    "DeepSeekV4_1Renderer",
    "Glm5_3HighReasoningRenderer",
    "Glm5_3LowReasoningRenderer",
    "Glm5_3Renderer",
    "GptOssRenderer",
    "ImagePart",
    "KimiK2Renderer",
    "KimiK25DisableThinkingRenderer",
    "KimiK25Renderer",
    "KimiK26PreserveThinkingRenderer",
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
    "Qwen3VLInstructRenderer",
    "Qwen3VLRenderer",
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
