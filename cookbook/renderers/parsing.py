"""Content helpers shared by the reasoning/tool-calling renderers (Qwen3, Qwen3.5, DeepSeek V3).

Same semantics as the helpers of ``tinker_cookbook.renderers.base`` (0.5.8): a sampled reply is
split into ``ThinkingPart``/``TextPart`` content and ``ToolCall``/``UnparsedToolCall`` entries,
keeping the whitespace between blocks, so that parsing what a renderer wrote gives back what it
was given. A tool block that does not parse is kept as an ``UnparsedToolCall`` (the reply is
still a clean turn; the caller decides whether to retry), never dropped.
"""

from __future__ import annotations

import json
import re

from cookbook.renderers.types import (
    Content,
    ContentPart,
    TextPart,
    ThinkingPart,
    ToolCall,
    UnparsedToolCall,
)

PARSE_FAILURE_DETAIL_MAX_CHARS = 16384
"""Cap on the raw text an :class:`UnparsedToolCall` for a dangling block keeps."""

UNTERMINATED_TOOL_BLOCK_ERROR = "unterminated tool block"
"""Prefix of the error of a tool block that was opened and never closed."""

_BLOCKS = re.compile(r"<think>(.*?)</think>|<tool_call>(.*?)</tool_call>", re.DOTALL)
_THINK_BLOCKS = re.compile(r"<think>(.*?)</think>", re.DOTALL)


def has_thinking(content: Content) -> bool:
    """Whether content carries reasoning: a ThinkingPart, or an opening ``<think>`` in text.

    Renderers ask this to decide whether to write the empty block their template puts on a turn
    that did not reason.
    """
    if isinstance(content, list):
        return any(part["type"] == "thinking" for part in content)
    return "<think>" in content


def remove_thinking(parts: list[ContentPart]) -> list[ContentPart]:
    return [part for part in parts if part["type"] != "thinking"]


def tool_call_payload(tool_call: ToolCall) -> dict[str, object]:
    """The ``{"name", "arguments"}`` object written inside a ``<tool_call>`` block."""
    return {"name": tool_call.function.name, "arguments": json.loads(tool_call.function.arguments)}


def parse_tool_call_json(body: str, raw_text: str) -> ToolCall | UnparsedToolCall:
    """A ``{"name": str, "arguments": object}`` block; anything else is kept unparsed."""
    try:
        payload = json.loads(body.strip())
    except json.JSONDecodeError as exc:
        return UnparsedToolCall(raw_text=raw_text, error=f"Invalid JSON: {exc}")
    if not isinstance(payload, dict):
        return UnparsedToolCall(raw_text=raw_text, error="Tool call is not a JSON object")
    name, arguments, call_id = payload.get("name"), payload.get("arguments"), payload.get("id")
    if not isinstance(name, str):
        return UnparsedToolCall(raw_text=raw_text, error="Missing or invalid 'name' field")
    if not isinstance(arguments, dict):
        return UnparsedToolCall(raw_text=raw_text, error="Missing or invalid 'arguments' field")
    return ToolCall(
        function=ToolCall.FunctionBody(name=name, arguments=json.dumps(arguments)),
        id=call_id if isinstance(call_id, str) else None,
    )


def parse_content_blocks(
    content: str,
) -> tuple[list[ContentPart], list[ToolCall | UnparsedToolCall]] | None:
    """Split ``<think>`` and ``<tool_call>`` blocks out of text, in order; None if there are none.

    Text between blocks is kept exactly (only empty strings are dropped), and so are empty
    thinking blocks' neighbours; an empty ``<think></think>`` itself yields no part.
    """
    if "<think>" not in content and "<tool_call>" not in content:
        return None
    parts: list[ContentPart] = []
    calls: list[ToolCall | UnparsedToolCall] = []
    pos = 0
    for match in _BLOCKS.finditer(content):
        if match.start() > pos:
            parts.append(TextPart(type="text", text=content[pos : match.start()]))
        thinking, call = match.group(1), match.group(2)
        if call is None:
            if thinking:
                parts.append(ThinkingPart(type="thinking", thinking=thinking))
        else:
            calls.append(parse_tool_call_json(call, match.group(0)))
        pos = match.end()
    if pos < len(content):
        parts.append(TextPart(type="text", text=content[pos:]))
    return parts, calls


def parse_think_blocks(content: str) -> list[ContentPart] | None:
    """:func:`parse_content_blocks` for formats whose tool calls are not ``<tool_call>`` tags."""
    if "<think>" not in content:
        return None
    parts: list[ContentPart] = []
    pos = 0
    for match in _THINK_BLOCKS.finditer(content):
        if match.start() > pos:
            parts.append(TextPart(type="text", text=content[pos : match.start()]))
        if match.group(1):
            parts.append(ThinkingPart(type="thinking", thinking=match.group(1)))
        pos = match.end()
    if pos < len(content):
        parts.append(TextPart(type="text", text=content[pos:]))
    return parts


def detect_unterminated_tool_block(
    content: str, open_marker: str, close_marker: str
) -> UnparsedToolCall | None:
    """A tool block opened more often than closed, from its last opening on.

    A reply can end cleanly on its stop token with a tool block left open; the block regexes
    only match closed blocks, so without this the call would silently become plain text.
    """
    opens = content.count(open_marker)
    if opens == 0 or opens <= content.count(close_marker):
        return None
    return UnparsedToolCall(
        raw_text=content[content.rfind(open_marker) :][:PARSE_FAILURE_DETAIL_MAX_CHARS],
        error=(
            f"{UNTERMINATED_TOOL_BLOCK_ERROR}: '{open_marker}' opened without a matching "
            f"'{close_marker}'"
        ),
    )
