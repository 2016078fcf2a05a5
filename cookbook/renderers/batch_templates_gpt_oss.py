"""gpt-oss's batch template (``batch_template.py``): harmony messages of plain string content.

Every variant is :class:`~cookbook.renderers.gpt_oss.GptOssRenderer`; the ``*_reasoning`` ones
put their dated system prompt first (``_system_prompt``, asked once per batch) and warn about a
caller's leading system message (``_warn_if_user_system_message``), as the renderer does.
String content is written as it is: no trimming, no reasoning (only a thinking part opens the
analysis channel), no tool calls (those messages are not plain). A tool result, a role other
than system, user, assistant and developer, and the internal system role anywhere but first
are handed to the renderer.
"""

from __future__ import annotations

from cookbook.renderers.batch_template import ChatTemplate, MessageTemplate, Variant
from cookbook.renderers.gpt_oss import INTERNAL_SYSTEM_ROLE, GptOssRenderer

_GPT_OSS = ChatTemplate(
    {
        "user": MessageTemplate("<|start|>user", prefix="<|message|>", suffix="<|end|>"),
        # As written by create_conversation_prefix_with_tools (instructions, tool types).
        "developer": MessageTemplate("<|start|>developer", prefix="<|message|>", suffix="<|end|>"),
        # A caller's system message is harmony's developer message, under a heading.
        "system": MessageTemplate(
            "<|start|>developer", prefix="<|message|># Instructions\n\n", suffix="\n\n<|end|>"
        ),
        # The last answer ends with the stop token <|return|>, one in history with <|end|>.
        "assistant": MessageTemplate(
            "<|start|>assistant",
            prefix="<|channel|>final<|message|>",
            suffix="<|end|>",
            last_suffix="<|return|>",
        ),
    },
    variants=(
        Variant(
            INTERNAL_SYSTEM_ROLE,
            ("first",),
            MessageTemplate("<|start|>system", prefix="<|message|>", suffix="<|end|>"),
        ),
    ),
    leading_message_method="_system_prompt",
    warning_method="_warn_if_user_system_message",
)

TEMPLATES = {GptOssRenderer: _GPT_OSS}
