"""Tool definitions for gpt-oss's developer message, in harmony's TypeScript-like syntax.

Same text as ``tinker_cookbook.renderers.gpt_oss`` (0.5.8) writes, down to its quirks: an
object schema with no properties is ``{  }``, a string enum ignores ``nullable``, and a function
without parameters is ``() => any``. The model was trained on this layout, so it is reproduced
rather than improved.
"""

from __future__ import annotations

import json
from typing import Any

from cookbook.renderers.types import ToolSpec

TOOLS_ROUTING_INSTRUCTION = "Calls to these tools must go to the commentary channel: 'functions'."
"""The system-message line that routes tool calls to the commentary channel."""


def typescript_type(schema: dict[str, Any]) -> str:
    """The TypeScript type of one JSON-schema node (unions, enums, arrays, nested objects)."""
    for union in ("oneOf", "anyOf"):
        if union in schema:
            return " | ".join(typescript_type(member) for member in schema[union])
    kind = schema.get("type", "any")
    if isinstance(kind, list):
        return " | ".join(typescript_type({"type": member}) for member in kind)
    if kind == "string" and "enum" in schema:
        return " | ".join(json.dumps(value) for value in schema["enum"])
    match kind:
        case "string" | "boolean":
            base = kind
        case "number" | "integer":
            base = "number"
        case "array":
            base = f"{typescript_type(schema.get('items', {}))}[]"
        case "object":
            base = _inline_object(schema)
        case _:
            base = "any"
    return f"{base} | null" if schema.get("nullable") else base


def _optional_mark(name: str, schema: dict[str, Any]) -> str:
    return "" if name in set(schema.get("required", [])) else "?"


def _inline_object(schema: dict[str, Any]) -> str:
    fields = [
        f"{name}{_optional_mark(name, schema)}: {typescript_type(node)}"
        for name, node in schema.get("properties", {}).items()
    ]
    return "{ " + ", ".join(fields) + " }"


def _comments(schema: dict[str, Any]) -> list[str]:
    """Title (then a blank comment line), description and examples of a property."""
    lines: list[str] = []
    if schema.get("title"):
        lines += [str(schema["title"]), ""]
    if schema.get("description"):
        lines.append(str(schema["description"]))
    if schema.get("examples"):
        lines += ["Examples:", *(f"- {json.dumps(example)}" for example in schema["examples"])]
    return lines


def _parameters(schema: dict[str, Any]) -> str:
    """``(_: { ... })`` with one commented line per property, or ``()`` for none."""
    if schema.get("type") != "object" or not schema.get("properties"):
        return "()"
    opening = "(_:"
    if schema.get("description"):
        opening += f" // {schema['description']}"
    lines = [opening, "{"]
    for name, node in schema["properties"].items():
        lines += [f"// {comment}" for comment in _comments(node)]
        default = f" // default: {json.dumps(node['default'])}" if "default" in node else ""
        lines.append(f"{name}{_optional_mark(name, schema)}: {typescript_type(node)},{default}")
    lines.append("})")
    return "\n".join(lines)


def tool_definition(tool: ToolSpec) -> str:
    """``// description`` then ``type name = (params) => any;``."""
    signature = f"type {tool['name']} = {_parameters(tool.get('parameters') or {})} => any;"
    if tool.get("description"):
        return f"// {tool['description']}\n{signature}"
    return signature


def developer_text(tools: list[ToolSpec], system_prompt: str) -> str:
    """The developer message: instructions, then the ``functions`` namespace (either may be
    absent; both absent is the empty string)."""
    sections: list[str] = []
    if system_prompt:
        sections.append(f"# Instructions\n\n{system_prompt}")
    if tools:
        definitions = "\n\n".join(tool_definition(tool) for tool in tools)
        sections.append(
            "# Tools\n\n## functions\n\nnamespace functions {\n\n"
            f"{definitions}\n\n}} // namespace functions"
        )
    return "\n\n".join(sections)
