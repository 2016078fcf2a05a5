"""Messages in OpenAI chat format, as ``apply_chat_template`` and OpenAI APIs take them: what
the renderers' ``to_openai_message`` builds (the parity oracles feed it to the reference's
templates). Kept apart from :mod:`cookbook.renderers.base` so the renderer protocol reads on its
own; ``base`` still exports these names."""

from __future__ import annotations

from collections.abc import Callable

from cookbook.renderers.types import Message


def openai_message_with_inline_thinking(message: Message) -> dict:
    """The base renderer's form: thinking written inline as ``<think>...</think>`` in
    ``content``."""
    result: dict = {"role": message["role"]}
    content = message["content"]
    if isinstance(content, str):
        result["content"] = content
    else:
        texts = []
        for part in content:
            if part["type"] == "text":
                texts.append(part["text"])
            elif part["type"] == "thinking":
                texts.append(f"<think>{part['thinking']}</think>")
            elif part["type"] == "image":
                # Dropping it would make template comparisons and API calls silently wrong.
                raise NotImplementedError("to_openai_message does not support ImagePart")
        result["content"] = "".join(texts)
    return add_openai_tool_fields(result, message, lambda arguments: arguments)


def openai_message_with_reasoning(
    message: Message, arguments: Callable[[str], str | dict] = lambda arguments: arguments
) -> dict:
    """OpenAI format with reasoning in ``reasoning_content``, the field that the templates of
    reasoning models (Qwen, DeepSeek) read, and the text parts joined as ``content``."""
    result: dict = {"role": message["role"]}
    content = message["content"]
    if isinstance(content, str):
        result["content"] = content
    else:
        result["content"] = "".join(p["text"] for p in content if p["type"] == "text")
        thinking = [p["thinking"] for p in content if p["type"] == "thinking"]
        if thinking:
            result["reasoning_content"] = "".join(thinking)
    return add_openai_tool_fields(result, message, arguments)


def add_openai_tool_fields(
    result: dict, message: Message, arguments: Callable[[str], str | dict]
) -> dict:
    """Add tool calls (``arguments`` converts their JSON string) and tool-response fields."""
    if message.get("tool_calls"):
        result["tool_calls"] = [
            {
                "type": "function",
                "id": call.id,
                "function": {
                    "name": call.function.name,
                    "arguments": arguments(call.function.arguments),
                },
            }
            for call in message["tool_calls"]
        ]
    if message["role"] == "tool":
        for key in ("tool_call_id", "name"):
            if key in message:
                result[key] = message[key]
    return result
