"""Nemotron 3's tools declaration: each tool as XML inside ``<tools>``, after the system prompt.

The chat template writes a tool's name, description and parameters as elements, and every
other key through its ``render_extra_keys`` macro: mappings and lists as JSON, anything else
as its string form (Python's, so ``True``, and a list ``type`` as ``['string', 'null']``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from cookbook.renderers.qwen3_5 import tools_block
from cookbook.renderers.types import ToolSpec


def _render_extra_keys(obj: Mapping[str, object], handled: set[str]) -> list[str]:
    """``<key>value</key>`` for every key of ``obj`` not in ``handled``, in order."""
    return [
        f"<{key}>{json.dumps(value) if isinstance(value, dict | list) else value!s}</{key}>"
        for key, value in obj.items()
        if key not in handled
    ]


def _parameter_lines(name: str, fields: Mapping[str, object]) -> list[str]:
    lines = ["<parameter>", f"<name>{name}</name>"]
    if "type" in fields:
        lines.append(f"<type>{fields['type']!s}</type>")
    if "description" in fields:
        lines.append(f"<description>{str(fields['description']).strip()}</description>")
    if "enum" in fields:
        lines.append(f"<enum>{json.dumps(fields['enum'])}</enum>")
    lines += _render_extra_keys(fields, {"name", "type", "description", "enum"})
    lines.append("</parameter>")
    return lines


def _format_nemotron3_tool_declaration(tool: ToolSpec) -> str:
    """One ``<function>`` element (the reference's name, which its own tests import)."""
    lines = ["<function>", f"<name>{tool['name']}</name>"]
    description = tool.get("description", "").strip()
    if description:
        lines.append(f"<description>{description}</description>")
    lines.append("<parameters>")
    params = tool.get("parameters") or {}
    if isinstance(params, dict):
        for name, fields in params.get("properties", {}).items():
            lines += _parameter_lines(name, fields)
        lines += _render_extra_keys(params, {"type", "properties", "required"})
        if "required" in params:
            lines.append(f"<required>{json.dumps(params['required'])}</required>")
    lines.append("</parameters>")
    lines += _render_extra_keys(tool, {"type", "name", "description", "parameters"})
    lines.append("</function>")
    return "\n".join(lines)


def tools_system_prompt(tools: list[ToolSpec], system_prompt: str = "") -> str:
    """The system message the template writes: ``system_prompt``, then the tools block."""
    if not tools:
        return system_prompt
    block = tools_block("\n".join(_format_nemotron3_tool_declaration(t) for t in tools))
    return f"{system_prompt}\n\n{block}" if system_prompt else block
