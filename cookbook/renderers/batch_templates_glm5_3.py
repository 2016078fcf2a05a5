"""GLM-5.3's batch template (``batch_template.py``): plain string content, all three efforts.

What ``glm5_3.py`` writes for a plain message: the effort line is the BOS (the renderer's
``_bos_tokens``); a role token as header, but none on a user turn after an assistant one,
whose output already ends with that ``<|user|>`` (the last assistant turn gets it as stop
overlap instead); an assistant header ``<|assistant|>`` + ``<think>`` (ids joined) and output
``</think>`` + the trimmed content; system and user content as given, an empty one leaving no
output chunk. Content with ``</think>`` (reasoning split out of the text) is refused; so are
tool results and tool calls (reordered, terminated by ``<|observation|>``).
"""

from __future__ import annotations

from cookbook.renderers.batch_template import ChatTemplate, MessageTemplate, Variant
from cookbook.renderers.glm5_3 import (
    Glm5_3HighReasoningRenderer,
    Glm5_3LowReasoningRenderer,
    Glm5_3Renderer,
)

# GLM-5.3 leaves an output of no tokens out rather than an empty chunk.
_DROP = {"drop_empty_output": True}
_ASSISTANT = {
    "header": ("<|assistant|>", "<think>"),
    "prefix": "</think>",
    "content": str.strip,
    **_DROP,
}

_GLM5_3 = ChatTemplate(
    {
        "system": MessageTemplate("<|system|>", **_DROP),
        "user": MessageTemplate("<|user|>", **_DROP),
        "assistant": MessageTemplate(**_ASSISTANT, stop_overlap="<|user|>"),
    },
    variants=(
        Variant("user", ("after:assistant",), MessageTemplate(None, **_DROP)),
        Variant("assistant", ("before:user",), MessageTemplate(**_ASSISTANT, end_token="<|user|>")),
    ),
    refused=("</think>",),
)

TEMPLATES = dict.fromkeys(
    (Glm5_3Renderer, Glm5_3HighReasoningRenderer, Glm5_3LowReasoningRenderer), _GLM5_3
)
