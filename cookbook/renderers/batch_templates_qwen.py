"""Batch templates (``batch_template.py``) of the Qwen renderers: Qwen3, Qwen3-VL, Qwen3.5, Qwen3.8.

Every Qwen turn is ``<|im_start|>{role}\\n`` + text + ``<|im_end|>``, with a newline before each
header but the first. What differs, per family, on a plain (string content) message:

* Qwen3 encodes the text with special-token parsing off and ``<|im_end|>`` as its own chunk;
  the produced turn (the last message, an assistant one, with a user message somewhere) is
  framed with the empty think block and loses its leading newlines; ``<think>``/``</think>``
  in its content is refused (the renderer normalizes inline blocks there, and writes them as
  they are in every other message); ``qwen3_disable_thinking`` refuses a produced turn
  without a user message (the renderer raises if it has content); ``qwen3_instruct`` frames
  nothing.
* Qwen3-VL (``merge_text_chunks``): text and ``<|im_end|>`` in one encode, nothing framed.
* Qwen3.5 trims the content and encodes it with ``<|im_end|>``; an assistant turn after the
  last user message has the empty think block in its header; on the last message the part of
  that header the generation prompt does not prefill (``\\n</think>\\n\\n``) is an output chunk
  of its own. ``<think>`` in such a turn's content is refused (it is reasoning there). Thinking
  kept in history changes nothing for string content, so ``qwen3_5_preserve_thinking`` (the
  same class) shares the template.
* Qwen3.8 (reasoning kept in history, its registered default) writes the empty block on every
  assistant turn and its system message comes from the renderer's own ``_normalize_messages``
  (reasoning-effort instruction, trimmed or dropped system message).

Tool turns, tool calls, structured content and images are not plain: the renderer renders them.
"""

from __future__ import annotations

from dataclasses import replace

from cookbook.renderers.base import Renderer
from cookbook.renderers.batch_template import ChatTemplate, MessageTemplate, Variant
from cookbook.renderers.qwen import frame_thinking
from cookbook.renderers.qwen3 import (
    Qwen3DisableThinkingRenderer,
    Qwen3InstructRenderer,
    Qwen3Renderer,
    Qwen3VLInstructRenderer,
    Qwen3VLRenderer,
)
from cookbook.renderers.qwen3_5 import (
    _EMPTY_THINK_BLOCK,
    Qwen3_5DisableThinkingRenderer,
    Qwen3_5Renderer,
)
from cookbook.renderers.qwen3_8 import Qwen3_8DisableThinkingRenderer, Qwen3_8Renderer
from cookbook.renderers.types import Message

_IM_END = "<|im_end|>"
_TURN = "<|im_start|>{role}\n"
_ASSISTANT = "<|im_start|>assistant\n"
_ROLES = ("user", "system", "assistant")
# Qwen3.5's thinking generation prompt ends in "<think>\n": on the produced turn the header stops
# there and the rest of the empty block is the output's first chunk.
_THINK_OPEN = "<think>\n"


def _drop_leading_newlines(content: str) -> str:
    return content.lstrip("\n")


def _normalized(renderer: Renderer, messages: list[Message]) -> list[Message]:
    """Qwen3.5's own reshaping (Qwen3.8's reasoning-effort system message), once, as its
    supervised path does."""
    return renderer._normalize_messages(messages)  # type: ignore[attr-defined]


# -- Qwen3 ---------------------------------------------------------------------------------

_QWEN3_TURN = MessageTemplate(_TURN, encode_split=True, close_chunk=_IM_END)
_QWEN3_PRODUCED = Variant(
    "assistant",
    ("last", "user_seen"),
    MessageTemplate(
        _TURN,
        prefix=frame_thinking(""),
        content=_drop_leading_newlines,
        encode_split=True,
        close_chunk=_IM_END,
        refused=("<think>", "</think>"),
    ),
)
_QWEN3_INSTRUCT = ChatTemplate(dict.fromkeys(_ROLES, _QWEN3_TURN), separator="\n")
_QWEN3 = replace(
    _QWEN3_INSTRUCT,
    variants=(_QWEN3_PRODUCED,),
    attributes={"strip_thinking_from_history": True},
)
_QWEN3_DISABLE_THINKING = replace(
    _QWEN3, variants=(_QWEN3_PRODUCED, Variant("assistant", ("last",), None))
)

_QWEN3_VL = ChatTemplate(
    dict.fromkeys(_ROLES, MessageTemplate(_TURN, suffix=_IM_END)),
    separator="\n",
    attributes={"merge_text_chunks": True},
)

# -- Qwen3.5 / Qwen3.8 ---------------------------------------------------------------------


def _qwen3_5_turn(header: str, lead: str | None = None) -> MessageTemplate:
    return MessageTemplate(header, suffix=_IM_END, content=str.strip, lead_chunk=lead)


_QWEN3_5_PLAIN = _qwen3_5_turn(_TURN)
_EMPTY_BLOCK_TURN = _qwen3_5_turn(_ASSISTANT + _EMPTY_THINK_BLOCK)
_PREFILLED_TURN = _qwen3_5_turn(
    _ASSISTANT + _THINK_OPEN, lead=_EMPTY_THINK_BLOCK.removeprefix(_THINK_OPEN)
)
# Qwen3.5 writes the empty block after the last user message only where the turn did not reason:
# an inline <think> there is reasoning to it.
_REASONING = ("<think>",)
_PRODUCED_TURN = Variant("assistant", ("last",), replace(_PREFILLED_TURN, refused=_REASONING))
_AFTER_LAST_USER = Variant(
    "assistant", ("after_last_user",), replace(_EMPTY_BLOCK_TURN, refused=_REASONING)
)
_QWEN3_5_DISABLE_THINKING = ChatTemplate(
    dict.fromkeys(_ROLES, _QWEN3_5_PLAIN),
    variants=(_AFTER_LAST_USER,),
    separator="\n",
    reshape=_normalized,
)
_QWEN3_5 = replace(_QWEN3_5_DISABLE_THINKING, variants=(_PRODUCED_TURN, _AFTER_LAST_USER))

# Reasoning kept in history: the empty block on every assistant turn, whatever its content.
_QWEN3_8_DISABLE_THINKING = ChatTemplate(
    {"user": _QWEN3_5_PLAIN, "system": _QWEN3_5_PLAIN, "assistant": _EMPTY_BLOCK_TURN},
    separator="\n",
    reshape=_normalized,
    attributes={"strip_thinking_from_history": False},
)
_QWEN3_8 = replace(
    _QWEN3_8_DISABLE_THINKING, variants=(Variant("assistant", ("last",), _PREFILLED_TURN),)
)

TEMPLATES: dict[type[Renderer], ChatTemplate] = {
    Qwen3Renderer: _QWEN3,
    Qwen3DisableThinkingRenderer: _QWEN3_DISABLE_THINKING,
    Qwen3InstructRenderer: _QWEN3_INSTRUCT,
    Qwen3VLRenderer: _QWEN3_VL,
    Qwen3VLInstructRenderer: _QWEN3_VL,
    Qwen3_5Renderer: _QWEN3_5,
    Qwen3_5DisableThinkingRenderer: _QWEN3_5_DISABLE_THINKING,
    Qwen3_8Renderer: _QWEN3_8,
    Qwen3_8DisableThinkingRenderer: _QWEN3_8_DISABLE_THINKING,
}

__all__ = ["TEMPLATES"]
