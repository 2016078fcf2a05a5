"""The batch templates of renderers whose plain message is one frame per role (Llama 3,
role_colon, Kimi K2, DeepSeek V3 without thinking): data for ``batch_template.py``'s mechanism,
joined with the family modules' in ``batch.TEMPLATES``."""

from __future__ import annotations

from cookbook.renderers import deepseek_v3, role_colon
from cookbook.renderers.base import Renderer
from cookbook.renderers.batch_template import ChatTemplate, MessageTemplate, Variant
from cookbook.renderers.kimi_k2 import KimiK2Renderer
from cookbook.renderers.llama3 import Llama3Renderer

_LLAMA3 = ChatTemplate(
    {"*": MessageTemplate("<|start_header_id|>{role}<|end_header_id|>\n\n", suffix="<|eot_id|>")}
)

_ROLE_COLON_FRAME = {"prefix": role_colon._CONTENT_PREFIX, "suffix": role_colon._CONTENT_SUFFIX}
_ROLE_COLON = ChatTemplate(
    {
        "assistant": MessageTemplate(
            "{Role}:", **_ROLE_COLON_FRAME, stop_overlap=role_colon._STOP_OVERLAP
        ),
        "*": MessageTemplate(
            "{Role}:", **_ROLE_COLON_FRAME, stop_overlap=role_colon._UNUSED_OVERLAP
        ),
    }
)

# String content never carries reasoning, so history and the last turn alike get the empty
# think block (KimiK2Renderer._assistant_ids).
_KIMI_K2 = ChatTemplate(
    {
        "user": MessageTemplate("<|im_user|>user<|im_middle|>", suffix="<|im_end|>"),
        "assistant": MessageTemplate(
            "<|im_assistant|>assistant<|im_middle|>", prefix="<think></think>", suffix="<|im_end|>"
        ),
        "system": MessageTemplate("<|im_system|>system<|im_middle|>", suffix="<|im_end|>"),
    },
    default_system_attribute="DEFAULT_SYSTEM_PROMPT",
)

# DeepSeekV3DisableThinkingRenderer: no header on a leading system message (a later one is
# refused or rendered as a user turn: not plain), ``</think>`` encoded after the assistant
# marker, the end-of-sentence id after non-empty assistant content, think blocks stripped from
# assistant content (not plain).
_DEEPSEEK_V3_DISABLE_THINKING = ChatTemplate(
    {
        "user": MessageTemplate(deepseek_v3.special("User")),
        "assistant": MessageTemplate(
            (deepseek_v3.special("Assistant"), "</think>"), end_token=deepseek_v3.EOS
        ),
    },
    variants=(Variant("system", ("first",), MessageTemplate(None)),),
    refused=("<think>",),
)

TEMPLATES: dict[type[Renderer], ChatTemplate] = {
    deepseek_v3.DeepSeekV3DisableThinkingRenderer: _DEEPSEEK_V3_DISABLE_THINKING,
    Llama3Renderer: _LLAMA3,
    role_colon.RoleColonRenderer: _ROLE_COLON,
    KimiK2Renderer: _KIMI_K2,
}

__all__ = ["TEMPLATES"]
