"""Second oracle for gpt-oss: OpenAI's own harmony renderer (``openai-harmony``).

gpt-oss's tokenizer ships no chat template offline, but OpenAI publishes the format as a
library; its ``render_conversation_for_completion`` / ``_for_training`` are what the model was
trained on. A case is translated into a harmony conversation the way the reference's renderer
reads it (``system`` -> developer instructions, reasoning -> analysis channel, tool calls ->
commentary messages to ``functions.*``, tool results -> messages from ``functions.*``, and the
built-in system prompt -> harmony's ``SystemContent`` with the same effort and date), and both
sides are compared as token ids. Runs where goldens are made (``openai-harmony`` installed);
the tests only read what it recorded.
"""

from __future__ import annotations

import importlib.util
import os
from functools import cache
from pathlib import Path
from typing import Any

from cookbook.parity.record import jsonable, oracle_record
from cookbook.renderers.gpt_oss import INTERNAL_SYSTEM_ROLE
from cookbook.renderers.types import ensure_text

HARMONY_ORACLE = "harmony"
HARMONY_RENDERERS = frozenset(
    {"gpt_oss_no_sysprompt", *(f"gpt_oss_{e}_reasoning" for e in ("low", "medium", "high"))}
)
"""Renderers whose goldens record the harmony oracle."""


@cache
def harmony_encoding() -> Any:
    """The harmony encoding, reading o200k_base from tml-renderers instead of the network."""
    spec = importlib.util.find_spec("tml_renderers")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("the harmony oracle needs tml-renderers (its o200k_base file)")
    os.environ["TIKTOKEN_ENCODINGS_BASE"] = str(Path(spec.origin).parent / "data")
    from openai_harmony import HarmonyEncodingName, load_harmony_encoding

    return load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)


def _assistant(message: dict[str, Any]) -> list[Any]:
    """One harmony message per channel: analysis, then final text or a commentary preamble
    and one commentary message per tool call."""
    from openai_harmony import Message, Role

    content = message["content"]
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
    text = "".join(p["text"] for p in parts if p["type"] == "text")
    thinking = "".join(p["thinking"] for p in parts if p["type"] == "thinking")
    calls = message.get("tool_calls") or []
    out = []
    if thinking:
        out.append(Message.from_role_and_content(Role.ASSISTANT, thinking).with_channel("analysis"))
    if not calls:
        return [*out, Message.from_role_and_content(Role.ASSISTANT, text).with_channel("final")]
    if text:
        out.append(Message.from_role_and_content(Role.ASSISTANT, text).with_channel("commentary"))
    for call in calls:
        out.append(
            Message.from_role_and_content(Role.ASSISTANT, call.function.arguments)
            .with_channel("commentary")
            .with_recipient(f"functions.{call.function.name}")
            .with_content_type("<|constrain|>json")
        )
    return out


def harmony_messages(renderer: Any, messages: list[dict[str, Any]]) -> list[Any]:
    """The case as harmony messages, with the renderer's built-in system prompt if it has one."""
    from openai_harmony import (
        Author,
        DeveloperContent,
        Message,
        ReasoningEffort,
        Role,
        SystemContent,
    )

    out = []
    if renderer.use_system_prompt:
        system = (
            SystemContent.new()
            .with_reasoning_effort(ReasoningEffort(renderer.reasoning_effort.capitalize()))
            .with_conversation_start_date(renderer.current_date)
        )
        out.append(Message.from_role_and_content(Role.SYSTEM, system))
    for message in messages:
        role = message["role"]
        if role == "assistant":
            out += _assistant(message)
        elif role == "system":
            instructions = DeveloperContent.new().with_instructions(ensure_text(message["content"]))
            out.append(Message.from_role_and_content(Role.DEVELOPER, instructions))
        elif role == "tool":
            name = message.get("name") or "unknown"
            name = name if name.startswith("functions.") else f"functions.{name}"
            author = Author.new(Role.TOOL, name)
            out.append(
                Message.from_author_and_content(author, ensure_text(message["content"]))
                .with_channel("commentary")
                .with_recipient("assistant")
            )
        else:
            harmony_role = Role.SYSTEM if role == INTERNAL_SYSTEM_ROLE else Role(role)
            out.append(Message.from_role_and_content(harmony_role, ensure_text(message["content"])))
    return out


def harmony_oracle(
    renderer: Any, tokenizer: Any, messages: list[dict[str, Any]], train_on_what: Any
) -> dict[str, Any]:
    """What harmony renders for a case, and whether the renderer agrees, compared as token ids.

    Same two items as :func:`cookbook.parity.chat_template.chat_template_oracle`: ``generation`` -
    ``build_generation_prompt(prompt)`` against ``render_conversation_for_completion(prompt,
    assistant)``, ``prompt`` being the case less a final assistant message; ``supervised``
    (cases ending with an assistant message) - ``build_supervised_example(messages,
    train_on_what)`` against ``render_conversation_for_training(messages)``. Ids, not text:
    harmony tokenizes message by message as the renderer does.

    Reasoning (``auto_drop_analysis``, recorded as ``config``): the prompt uses harmony's
    default, which drops the reasoning of turns that ended in a final answer, as OpenAI tells
    samplers to - so a prompt with reasoning in its history shows the reference keeping it. The
    training render keeps reasoning: by default harmony would drop even the reasoning of the
    trained turn, and every example with reasoning would differ for that alone.

    The conversation is recorded as ``messages.harmony``; a side that raises is recorded as an
    error.
    """
    from openai_harmony import Conversation, RenderConversationConfig, Role

    encoding = harmony_encoding()
    config = {
        "generation": {"auto_drop_analysis": True},
        "supervised": {"auto_drop_analysis": False},
    }

    def conversation(part: list[dict[str, Any]]) -> Any:
        return Conversation.from_messages(harmony_messages(renderer, part))

    def completion(prompt: list[dict[str, Any]]) -> list[int]:
        options = RenderConversationConfig(**config["generation"])
        rendered = encoding.render_conversation_for_completion(
            conversation(prompt), Role.ASSISTANT, options
        )
        return list(rendered)

    def trained(whole: list[dict[str, Any]]) -> list[int]:
        options = RenderConversationConfig(**config["supervised"])
        return list(encoding.render_conversation_for_training(conversation(whole), options))

    return oracle_record(
        renderer,
        tokenizer,
        messages,
        train_on_what,
        setting=("config", config),
        messages_as=("harmony", lambda whole: conversation(whole).to_dict()),
        prompt_ids=completion,
        conversation=("ids", trained),
    )


# -- create_conversation_prefix_with_tools: the reference's own text --------------------------

TOOL_PREFIX_FILE = "gpt_oss_tool_prefixes.json"
"""golden/<this>: the reference's ``create_conversation_prefix_with_tools`` for each probe.
Not a conversation case (its output is messages, not tokens), so a golden of its own, like
model_info.json. Harmony is no oracle for it: the reference's TypeScript layout differs from
openai-harmony's own (``(_:\\n{`` against ``(_: {``, inline nested objects, unions on one line)."""

_EVERY_FEATURE = {
    "type": "object",
    "description": "Where and how.",
    "properties": {
        "location": {"type": "string", "description": "City name"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
        "days": {"type": "integer", "default": 1},
        "hourly": {"type": "boolean"},
        "limit": {"type": "number", "nullable": True},
        "tags": {"type": "array", "items": {"type": "string"}},
        "grid": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
        "any_list": {"type": "array"},
        "either": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        "maybe": {"anyOf": [{"type": "string", "enum": ["a", "b"]}, {"type": "null"}]},
        "multi": {"type": ["string", "integer"]},
        "nested": {
            "type": "object",
            "properties": {"a": {"type": "string"}, "b": {"type": "integer", "nullable": True}},
            "required": ["a"],
        },
        "empty_object": {"type": "object"},
        "free": {"title": "Free form", "description": "Anything.", "examples": ["x", 3, None]},
        "nullable_enum": {"type": "string", "enum": ["on", "off"], "nullable": True},
    },
    "required": ["location", "nested"],
}
TOOL_PREFIX_PROBES: list[dict[str, Any]] = [
    {"tools": [], "system_prompt": ""},
    {"tools": [], "system_prompt": "You are a weather bot."},
    {
        "tools": [{"name": "get_weather", "description": "Weather.", "parameters": _EVERY_FEATURE}],
        "system_prompt": "",
    },
    {
        "tools": [
            {"name": "now", "description": "Current time.", "parameters": {}},
            {"name": "ping", "description": "", "parameters": {"type": "object"}},
            {"name": "noop", "description": "No-op.", "parameters": {"type": "string"}},
            {
                "name": "search",
                "description": "Search the web.",
                "parameters": {
                    "type": "object",
                    "properties": {"query": {"type": "string"}},
                    "required": ["query"],
                },
            },
        ],
        "system_prompt": "Use tools when needed.",
    },
]
"""Inputs covering every branch of the TypeScript formatting, and the instructions alone."""


def tool_prefix_golden(renderer: Any) -> list[dict[str, Any]]:
    """Each probe with the messages ``renderer.create_conversation_prefix_with_tools`` made."""
    return [
        {
            **probe,
            "messages": jsonable(
                renderer.create_conversation_prefix_with_tools(
                    probe["tools"], probe["system_prompt"]
                )
            ),
        }
        for probe in TOOL_PREFIX_PROBES
    ]
