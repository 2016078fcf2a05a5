"""DeepSeek V3 with thinking and DeepSeek V4.1 on the batch template path (``batch_template.py``).

What each template claims, and why it is exact (anything else falls back to the renderer):

* ``deepseekv3_thinking`` (:class:`DeepSeekV3ThinkingRenderer`): a plain conversation with a
  leading system message (no header) or none, user and assistant messages; a later system
  message only with ``system_role_as_user`` (then a user turn). An assistant message before the
  last gets ``</think>`` after its marker when history is stripped; the last one, if it has
  content without ``<think>`` (``has_thinking``), gets ``<think></think>`` encoded on its own in
  front. String content is never stripped of reasoning; the end-of-sentence id follows non-empty
  assistant content.
* the DeepSeek V4.1 family: the renderer's own ``template_turns`` reshapes the conversation (a
  run of user messages becomes its first message's ``\\n\\n``-joined text, the others empty);
  conversations with tools, tool declarations or any other role are handed to the renderer. The
  opening (``<|System|>`` and the effort line in thinking mode) goes before the first message;
  a system turn is encoded with its prefix as one text and split by the renderer's own
  ``_prefix_split``; an assistant message gets a marker only after a user turn (or a later
  system message), ``<think>``/``</think>`` by whether it keeps reasoning (thinking mode, after
  the last user turn unless history is kept), and always the end-of-sentence id. The
  generation-prompt check runs inside the renderer's ``_template_turns``.
"""

from __future__ import annotations

from itertools import pairwise

from cookbook.renderers import deepseek_v4_1
from cookbook.renderers.base import Renderer
from cookbook.renderers.batch_template import ChatTemplate, MessageTemplate
from cookbook.renderers.deepseek_v3 import EOS, DeepSeekV3ThinkingRenderer, special
from cookbook.renderers.deepseek_v4_1 import ASSISTANT, SYSTEM, USER, DeepSeekV4_1Renderer
from cookbook.renderers.deepseek_v4_1_format import is_user_turn, last_user_turn, template_turns
from cookbook.renderers.parsing import has_thinking
from cookbook.renderers.types import Message

# -- DeepSeek V3 with thinking ---------------------------------------------------------------

_V3_ASSISTANT = special("Assistant")


def _v3_thinking_keys(renderer: Renderer, messages: list[Message]) -> list[str]:
    """DeepSeekV3ThinkingRenderer.render_message's cases, per message."""
    assert isinstance(renderer, DeepSeekV3ThinkingRenderer)
    last = len(messages) - 1
    keys = []
    for index, message in enumerate(messages):
        role = message["role"]
        if role == "system":
            if index > 0 and not renderer.system_role_as_user:
                raise ValueError("a later system message: the renderer refuses it")
            keys.append("system" if index == 0 else "user")
        elif role == "user":
            keys.append("user")
        elif role != "assistant":
            raise ValueError(f"{role}: not a plain role")
        elif index < last:
            keys.append("history" if renderer.strip_thinking_from_history else "assistant")
        else:
            content = message["content"]
            reasoned = not isinstance(content, str) or has_thinking(content)
            keys.append("assistant" if not content or reasoned else "no_reasoning")
    return keys


_V3_THINKING = ChatTemplate(
    {
        "system": MessageTemplate(None),
        "user": MessageTemplate(special("User")),
        "assistant": MessageTemplate(_V3_ASSISTANT, end_token=EOS),
        "history": MessageTemplate((_V3_ASSISTANT, "</think>"), end_token=EOS),
        "no_reasoning": MessageTemplate(_V3_ASSISTANT, lead="<think></think>", end_token=EOS),
    },
    choose=_v3_thinking_keys,
)

# -- DeepSeek V4.1 ---------------------------------------------------------------------------

_PLAIN_ROLES = frozenset({"system", "user", "assistant"})


def _v4_1_turns(renderer: Renderer, messages: list[Message]) -> list[Message]:
    """The renderer's template turns of a conversation without tools or other roles.

    Where no user message follows another and every user content is a string,
    ``template_turns`` only copies the user messages with the same text (a run of one joins
    to itself): the conversation is its own template turns, and ``template_turns`` is skipped.
    """
    roles = [message["role"] for message in messages]
    if not _PLAIN_ROLES.issuperset(roles):
        raise ValueError("tools or another role: not plain")
    if not any(a == b == "user" for a, b in pairwise(roles)) and all(
        isinstance(message["content"], str) for message in messages if message["role"] == "user"
    ):
        return messages
    return template_turns(messages)


# (roles, thinking, stripping history) -> the render_message case of each message.
_V4_1_KEYS: dict[tuple[tuple[str, ...], bool, bool], tuple[str, ...]] = {}
# A dataset has few conversation shapes; a batch of endless ones must not grow it unbounded.
_MAX_KEYS = 4096


def _v4_1_keys(renderer: Renderer, turns: list[Message]) -> tuple[str, ...]:
    """DeepSeekV4_1Renderer.render_message's cases, per message of the template turns: they
    read only the roles, the effort and whether history is stripped, so once per shape."""
    assert isinstance(renderer, DeepSeekV4_1Renderer)
    thinking = renderer.reasoning_effort is not None
    strip = bool(renderer.strip_thinking_from_history)
    key = (tuple([message["role"] for message in turns]), thinking, strip)
    keys = _V4_1_KEYS.get(key)
    if keys is None:
        if len(_V4_1_KEYS) >= _MAX_KEYS:
            _V4_1_KEYS.clear()
        keys = _V4_1_KEYS[key] = _v4_1_shape_keys(turns, thinking, strip)
    return keys


def _v4_1_shape_keys(turns: list[Message], thinking: bool, strip: bool) -> tuple[str, ...]:
    drop_through = last_user_turn(turns) if strip else -1
    keys = []
    for index, message in enumerate(turns):
        role = message["role"]
        prev = turns[index - 1] if index else None
        first = "@0" if index == 0 else ""
        if role == "system":
            keys.append("system" + first)
        elif role == "user":
            keys.append("user" + ("+" if prev is not None and is_user_turn(prev) else first))
        else:  # assistant: _PLAIN_ROLES
            follows = prev is not None and (
                is_user_turn(prev) or (prev["role"] == "system" and index > 1)
            )
            keeps = thinking and index > drop_through
            keys.append("assistant" + first + (">" if follows else "") + ("+" if keeps else ""))
    return tuple(keys)


def _v4_1_template(cls: type[DeepSeekV4_1Renderer]) -> ChatTemplate:
    """The template of one effort level: the openings are the renderer's own (``_opening``
    reads class attributes only, so a bare instance answers)."""
    opening = object.__new__(cls)._opening
    split = {"split": "_prefix_split", "drop_empty_output": True}
    roles = {
        "system@0": MessageTemplate(opening("system"), **split),
        "system": MessageTemplate(SYSTEM, **split),
        "user@0": MessageTemplate(opening("user") + USER, drop_empty_output=True),
        "user": MessageTemplate(USER, drop_empty_output=True),
        "user+": MessageTemplate(None, drop_empty_output=True),  # a run's later, emptied message
    }
    for first, at in (("@0", opening("assistant")), ("", "")):
        for follows in ("", ">"):
            for keeps in ("", "+"):
                marker = (ASSISTANT + ("<think>" if keeps else "</think>")) if follows else ""
                roles["assistant" + first + follows + keeps] = MessageTemplate(
                    (at + marker) or None,
                    prefix="</think>" if keeps else "",
                    end_token=EOS,
                    end_on_empty=True,
                )
    return ChatTemplate(roles, reshape=_v4_1_turns, choose=_v4_1_keys, scope="_template_turns")


TEMPLATES: dict[type[Renderer], ChatTemplate] = {
    DeepSeekV3ThinkingRenderer: _V3_THINKING,
    **{
        cls: _v4_1_template(cls)
        for cls in (
            DeepSeekV4_1Renderer,
            deepseek_v4_1.DeepSeekV4_1LowReasoningRenderer,
            deepseek_v4_1.DeepSeekV4_1MaxReasoningRenderer,
            deepseek_v4_1.DeepSeekV4_1DisableThinkingRenderer,
        )
    },
}

__all__ = ["TEMPLATES"]
