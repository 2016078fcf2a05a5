"""Nemotron 3's batch templates (``batch_template.py``): ChatML turns of plain string content.

What every Nemotron 3 renderer writes for a plain message (``nemotron3.py`` over
``qwen3_5.py``): a system turn first, empty where the conversation opens without one; content
trimmed; ``\\n`` before every turn but the first; ``<think></think>`` at the end of every
assistant header (reasoning is only ever written from a thinking part or a ``<think>`` in the
content: such content is refused); the low and medium efforts append their note to the last
user message before trimming. The produced turn's header needs no split: the generation prompt
(``<think>\\n``, or ``<think></think>`` with thinking off) is never a proper prefix of it.
"""

from __future__ import annotations

from cookbook.renderers import nemotron3
from cookbook.renderers.batch_template import ChatTemplate, MessageTemplate, Variant

_END = "<|im_end|>"


def _turn(role: str, *, suffix: str = "", note: str = "") -> MessageTemplate:
    return MessageTemplate(
        f"<|im_start|>{role}\n{suffix}", suffix=_END, content=str.strip, content_suffix=note
    )


def _template(effort_note: str) -> ChatTemplate:
    note = f"\n\n{{reasoning effort: {effort_note}}}" if effort_note else ""
    return ChatTemplate(
        {
            "system": _turn("system"),
            "user": _turn("user"),
            "assistant": _turn("assistant", suffix="<think></think>"),
        },
        variants=(Variant("user", ("last_user",), _turn("user", note=note)),) if note else (),
        separator="\n",
        default_system_text="",
        refused=("<think>",),
    )


TEMPLATES = {
    renderer: _template(renderer.effort_note)
    for renderer in (
        nemotron3.Nemotron3Renderer,
        nemotron3.Nemotron3PreserveThinkingRenderer,
        nemotron3.Nemotron3LowThinkingRenderer,
        nemotron3.Nemotron3DisableThinkingRenderer,
        nemotron3.Nemotron3UltraRenderer,
        nemotron3.Nemotron3UltraPreserveThinkingRenderer,
        nemotron3.Nemotron3UltraMediumThinkingRenderer,
        nemotron3.Nemotron3UltraDisableThinkingRenderer,
    )
}
