"""Tool declarations as Kimi K2.5 writes them: TypeScript-style types in a ``functions`` namespace.

The semantics of ``tinker_cookbook.renderers.kimi_k2_5_tool_declaration_ts`` (0.5.8, itself
Moonshot's ``tool_declaration_ts.py``): each function's JSON Schema parameters become one
``type NAME = (_: {...}) => any;`` line, descriptions and constraints ``//`` comments above what
they describe, required fields first (each group sorted by name), ``$defs`` as ``interface``
declarations and a self-reference (``$ref: "#"``) as an ``interface parameters``. The schema is
parsed first, then written, because ``$defs`` and self-references are discovered while parsing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

_INDENT = "  "
_FIELD_DELIMITER = ",\n"
# JSON Schema ``type`` lists are written with these names.
_UNION_NAMES = {
    "string": "string",
    "number": "number",
    "integer": "number",
    "boolean": "boolean",
    "null": "null",
    "object": "{}",
    "array": "Array<any>",
}
_SCALAR_CONSTRAINTS = {
    "string": ("maxLength", "minLength", "pattern"),
    "number": ("maximum", "minimum"),
    "integer": ("maximum", "minimum"),
}
_ENUM_VALUE_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "number": (int, float),
    "integer": int,
    "boolean": bool,
}


@dataclass
class _Registry:
    """``$defs`` seen so far, and whether the schema refers to itself."""

    definitions: dict[str, Any] = field(default_factory=dict)
    has_self_ref: bool = False

    def resolve(self, ref: str) -> str:
        """The name a ``$ref`` is written as (``parameters`` for ``#``)."""
        if ref == "#":
            self.has_self_ref = True
            return "parameters"
        if ref.startswith("#/$defs/"):
            name = ref.split("/")[-1]
            if name not in self.definitions:
                raise ValueError(f"Reference not found: {ref}")
            return name
        raise ValueError(f"Unsupported reference format: {ref}")


def _comment(description: str, indent: str = "") -> str:
    return "\n".join(f"{indent}// {line}" if line else "" for line in description.split("\n"))


class _Type:
    """A parsed schema node: its description and allowed constraints become comments."""

    def __init__(self, schema: dict[str, Any], constraint_keys: Sequence[str] = ()) -> None:
        self.description = schema.get("description", "")
        self.constraints = {k: v for k, v in schema.items() if k in constraint_keys}

    def docstring(self, indent: str) -> str:
        lines = [_comment(self.description, indent)] if self.description else []
        if self.constraints:
            pairs = ", ".join(f"{k}: {v}" for k, v in sorted(self.constraints.items()))
            lines.append(f"{indent}// {pairs}")
        return "".join(line + "\n" for line in lines)

    def ts(self, indent: str = "") -> str:
        raise NotImplementedError


class _Scalar(_Type):
    def __init__(self, name: str, schema: dict[str, Any] | None = None) -> None:
        super().__init__(schema or {}, _SCALAR_CONSTRAINTS.get(name, ()))
        self.name = name

    def ts(self, indent: str = "") -> str:
        return "number" if self.name == "integer" else self.name


class _Named(_Type):
    """Written as fixed text: an enum's values, a type list, or a ``$ref``'s name."""

    def __init__(self, schema: dict[str, Any], text: str) -> None:
        super().__init__(schema)
        self.text = text

    def ts(self, indent: str = "") -> str:
        return self.text


class _AnyOf(_Type):
    def __init__(self, schema: dict[str, Any], registry: _Registry) -> None:
        super().__init__(schema)
        self.options = [_parse(option, registry) for option in schema["anyOf"]]

    def ts(self, indent: str = "") -> str:
        return " | ".join(option.ts(indent) for option in self.options)


class _Array(_Type):
    def __init__(self, schema: dict[str, Any], registry: _Registry) -> None:
        super().__init__(schema, ("minItems", "maxItems"))
        items = schema.get("items")
        self.item = _parse(items, registry) if items else _Scalar("any")

    def ts(self, indent: str = "") -> str:
        inner = indent + _INDENT
        docstring = self.item.docstring(inner)
        if not docstring:
            return f"Array<{self.item.ts(indent)}>"
        return f"Array<\n{docstring}{inner}{self.item.ts(inner)}\n{indent}>"


@dataclass
class _Field:
    name: str
    type: _Type
    optional: bool
    default: Any = None

    def ts(self, indent: str) -> str:
        comments = self.type.docstring(indent)
        if self.default is not None:
            plain = isinstance(self.default, int | float | bool)
            shown = repr(self.default) if plain else json.dumps(self.default, ensure_ascii=False)
            comments += f"{indent}// Default: {shown}\n"
        mark = "?" if self.optional else ""
        return f"{comments}{indent}{self.name}{mark}: {self.type.ts(indent)}"


class _Object(_Type):
    def __init__(self, schema: dict[str, Any], registry: _Registry) -> None:
        super().__init__(schema)
        self.fields: list[_Field] = []
        self.additional: Any = None
        if not schema:
            return
        if "$defs" in schema:
            registry.definitions.update(schema["$defs"] or {})
        self.additional = schema.get("additionalProperties")
        if isinstance(self.additional, dict):
            self.additional = _parse(self.additional, registry)
        if "properties" not in schema:
            return
        required = set(schema.get("required", []))
        self.fields = [
            _Field(
                name=name,
                type=_parse(prop, registry),
                optional=name not in required,
                default=prop.get("default") if isinstance(prop, dict) else None,
            )
            for name, prop in schema["properties"].items()
        ]

    def ts(self, indent: str = "") -> str:
        inner = indent + _INDENT
        ordered = sorted(self.fields, key=lambda f: (f.optional, f.name))
        lines = [f.ts(inner) for f in ordered]
        if self.additional is not None:
            if self.additional is True:
                value = "any"
            elif self.additional is False:
                value = "never"
            elif isinstance(self.additional, _Type):
                value = self.additional.ts(inner)
            else:
                raise ValueError(f"Unknown additionalProperties: {self.additional}")
            lines.append(f"{inner}[k: string]: {value}")
        if not lines:
            return "{}"
        return "{\n" + _FIELD_DELIMITER.join(lines) + f"\n{indent}}}"


def _enum(schema: dict[str, Any]) -> _Named:
    """Enum values, checked against a declared scalar type (``[T, "null"]`` allowed)."""
    values = schema["enum"]
    if "type" in schema:
        declared = schema["type"]
        if isinstance(declared, list):
            if len(declared) == 1:
                declared = declared[0]
            elif len(declared) == 2 and "null" in declared:
                declared = declared[0] if declared[0] != "null" else declared[1]
            else:
                raise ValueError(f"Enum type {declared} is not supported")
        expected = _ENUM_VALUE_TYPES.get(declared)
        for value in values:
            if value is not None and expected is not None and not isinstance(value, expected):
                noun = "an integer" if declared == "integer" else f"a {declared}"
                raise ValueError(f"Enum value {value} is not {noun}")
    text = " | ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in values)
    return _Named(schema, text)


def _parse(schema: dict[str, Any] | bool, registry: _Registry) -> _Type:
    if isinstance(schema, bool):
        if not schema:
            logger.warning(f"Warning: Boolean value {schema} is not supported, use null instead.")
        return _Scalar("any" if schema else "null")
    if "$ref" in schema:
        return _Named(schema, registry.resolve(schema["$ref"]))
    if "anyOf" in schema:
        return _AnyOf(schema, registry)
    if "enum" in schema:
        return _enum(schema)
    if "type" in schema:
        declared = schema["type"]
        if isinstance(declared, list):
            return _Named(schema, " | ".join(_UNION_NAMES[t] for t in declared))
        if declared == "object":
            return _Object(schema, registry)
        if declared == "array":
            return _Array(schema, registry)
        return _Scalar(declared, schema)
    if schema == {}:
        return _Scalar("any")
    raise ValueError(f"Invalid JSON Schema object: {schema}")


def _function_to_typescript(function: dict[str, Any]) -> str:
    registry = _Registry()
    parameters = _Object(function.get("parameters") or {}, registry)
    interfaces = []
    self_referencing = registry.has_self_ref
    if self_referencing:
        body = _FIELD_DELIMITER.join(f.ts(_INDENT) for f in parameters.fields)
        body = f"\n{body}\n" if body else ""
        interfaces.append(f"interface parameters {{{body}}}")
    for name, schema in dict(registry.definitions).items():
        described = schema.get("description", "")
        prefix = _comment(described) + "\n" if described else ""
        interfaces.append(f"{prefix}interface {name} {_parse(schema, registry).ts()}")
    name = function.get("name", "function")
    signature = "parameters" if self_referencing else parameters.ts()
    description = function.get("description")
    pieces = [
        "\n".join(interfaces),
        (description and _comment(description)) or "",
        f"type {name} = (_: {signature}) => any;",
    ]
    return "\n".join(piece for piece in pieces if piece)


def encode_tools_to_typescript_style(tools: list[dict[str, Any]]) -> str:
    """OpenAI-style tools (``{"type": "function", "function": {...}}``) as Kimi K2.5's
    ``# Tools`` declaration; other tool types are skipped, and no functions give ``""``."""
    functions = [
        _function_to_typescript(tool["function"])
        for tool in tools
        if tool.get("type") == "function" and tool.get("function")
    ]
    if not functions:
        return ""
    return "# Tools\n\n## functions\nnamespace functions {\n" + "\n".join(functions) + "\n}\n"
