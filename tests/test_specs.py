"""Spec system: generated schemas are committed, every shipped spec validates, and every kind of
bad input is one `file:line: field: message` error."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml

from cookbook.exceptions import SpecError
from cookbook.specs import SPEC_KINDS, load_spec, loader
from cookbook.specs.schema import render

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "specs").rglob("*.yaml"))


@pytest.mark.parametrize("kind", sorted(SPEC_KINDS))
def test_committed_schema_is_generated_from_the_models(kind: str) -> None:
    committed = (ROOT / "specs" / "schema" / f"{kind}.schema.json").read_text("utf-8")
    assert committed == render(kind), "run `python -m cookbook.specs.schema`"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_spec_validates(path: Path) -> None:
    spec = load_spec(path)
    schema = json.loads((ROOT / "specs" / "schema" / f"{spec.kind}.schema.json").read_text())
    jsonschema.validate(yaml.safe_load(path.read_text("utf-8")), schema)
    first_line = path.read_text("utf-8").splitlines()[0]
    schema_path = os.path.relpath(ROOT / "specs" / "schema", path.parent)
    assert first_line == f"# yaml-language-server: $schema={schema_path}/{spec.kind}.schema.json"


def _node_lines(node: yaml.Node | None) -> list[tuple[str, int, int]]:
    """Every node of a composed tree, in order: tag, line and column (what errors point at)."""
    if node is None:
        return []
    out = [(node.tag, node.start_mark.line, node.start_mark.column)]
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            out += _node_lines(key) + _node_lines(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            out += _node_lines(item)
    return out


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML without libyaml")
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_libyaml_parses_shipped_specs_as_the_pure_parser_does(path: Path) -> None:
    """Specs load through libyaml when it is there: the same data and the same node positions
    (what error lines come from) as PyYAML's own parser."""
    text = path.read_text("utf-8")
    fast_root, fast = loader._parse_with(path, text, yaml.CSafeLoader)
    pure_root, pure = loader._parse_with(path, text, yaml.SafeLoader)
    assert fast == pure
    assert _node_lines(fast_root) == _node_lines(pure_root)


GOOD = """\
kind: renderer_cases
version: 1
renderer: llama3
model_name: meta-llama/Llama-3.1-8B-Instruct
cases:
  - id: one
    category: basic
    messages:
      - role: user
        content: Hi
"""

# (name, document, expected line, expected field, text the message must contain)
BAD = [
    ("yaml_syntax", "kind: [renderer_cases\n", 2, "", "invalid YAML"),
    ("tab_indent", "kind: renderer_cases\n\tversion: 1\n", 2, "", "invalid YAML"),
    ("not_a_mapping", "- just\n- a list\n", 1, "", "mapping"),
    ("empty_file", "", None, "", "mapping"),
    ("unknown_kind", GOOD.replace("renderer_cases", "recipes"), 1, "kind", "unknown spec kind"),
    ("missing_kind", GOOD.replace("kind: renderer_cases\n", ""), 1, "kind", "unknown spec kind"),
    ("wrong_version", GOOD.replace("version: 1", "version: 2"), 2, "version", "Input should be 1"),
    ("unknown_renderer", GOOD.replace("llama3", "llama9"), 3, "renderer", "unknown renderer"),
    ("unknown_top_key", GOOD + "extra: 1\n", 11, "extra", "Extra inputs"),
    (
        "duplicate_key",
        GOOD.replace("version: 1\n", "version: 1\nversion: 1\n"),
        3,
        "version",
        "duplicate key",
    ),
    ("no_cases", GOOD.split("cases:")[0] + "cases: []\n", 5, "cases", "at least 1"),
    ("bad_case_id", GOOD.replace("id: one", "id: One Two"), 6, "cases.0.id", "pattern"),
    ("missing_messages", GOOD.split("    messages:")[0], 6, "cases.0.messages", "Field required"),
    (
        "missing_role",
        GOOD.replace("- role: user\n        content", "- content"),
        9,
        "cases.0.messages.0.role",
        "Field required",
    ),
    (
        "content_wrong_type",
        GOOD.replace("content: Hi", "content: 42"),
        10,
        "cases.0.messages.0.content",
        "valid",
    ),
    (
        "unknown_message_key",
        GOOD.replace("content: Hi", "content: Hi\n        mood: happy"),
        11,
        "cases.0.messages.0.mood",
        "Extra inputs",
    ),
    (
        "unknown_train_on_what",
        GOOD + "    train_on_what: [everything]\n",
        11,
        "cases.0.train_on_what.0",
        "last_assistant_message",
    ),
    (
        "mixed_trainable",
        GOOD.replace(
            "content: Hi",
            "content: Hi\n        trainable: true\n      - role: assistant\n        content: Yo",
        ),
        6,
        "cases.0",
        "trainable",
    ),
    (
        "duplicate_case_id",
        GOOD + textwrap.indent(GOOD.split("cases:\n")[1], ""),
        5,
        "cases",
        "duplicate case id",
    ),
    (
        "bad_part_type",
        GOOD.replace("content: Hi", "content:\n          - type: audio\n            audio: x"),
        10,
        "cases.0.messages.0.content",
        "",
    ),
]


@pytest.mark.parametrize(("name", "text", "line", "field", "needle"), BAD, ids=[b[0] for b in BAD])
def test_bad_spec_is_one_located_error(tmp_path: Path, name, text, line, field, needle) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, "utf-8")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    error = info.value
    assert (error.line, error.field) == (line, field), str(error)
    assert needle in error.message
    location = f"{path}:{line}" if line else str(path)
    assert str(error).startswith(f"{location}: ") and "\n" not in str(error)


def test_missing_spec_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "absent.yaml")
