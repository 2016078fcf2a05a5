"""Qwen3 / Qwen3.5 renderers beyond the golden cases: registry, tool declarations, refusals.

Token parity with the reference is proved by the goldens (tests/test_parity_renderers.py);
these tests cover what a conversation case cannot express: which class and options each name
builds, the tool-declaring system message (checked against the tokenizers' own chat templates,
an oracle independent of our code), and the XML tool-call parser's error branches.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import tinker

from cookbook.exceptions import RendererError
from cookbook.parity import invariants
from cookbook.renderers import (
    Message,
    ParseTermination,
    Qwen3_5DisableThinkingRenderer,
    Qwen3_5Renderer,
    Qwen3DisableThinkingRenderer,
    Qwen3InstructRenderer,
    Qwen3Renderer,
    Renderer,
    ToolCall,
    TrainOnWhat,
    get_renderer,
)
from cookbook.renderers.qwen3_5 import parse_tool_call_xml
from cookbook.renderers.types import UnparsedToolCall
from cookbook.tokenizers import get_tokenizer

pytestmark = pytest.mark.parity

QWEN3 = "Qwen/Qwen3-8B"
QWEN3_5 = "Qwen/Qwen3.5-9B"

# name -> (class, strip_thinking_from_history, has_extension_property, disables_thinking), as
# tinker_cookbook/renderers/__init__.py (0.5.8) constructs them and their classes declare.
REGISTRY = {
    "qwen3": (Qwen3Renderer, True, False, False),
    "qwen3_disable_thinking": (Qwen3DisableThinkingRenderer, True, False, True),
    "qwen3_instruct": (Qwen3InstructRenderer, True, True, False),
    "qwen3_5": (Qwen3_5Renderer, True, False, False),
    "qwen3_5_disable_thinking": (Qwen3_5DisableThinkingRenderer, True, False, True),
    "qwen3_5_preserve_thinking": (Qwen3_5Renderer, False, False, False),
}

TOOLS: list[Any] = [
    {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
    {
        "name": "search",
        "description": "Web search.",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
    },
]


def _model(name: str) -> str:
    return QWEN3_5 if name.startswith("qwen3_5") else QWEN3


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_registry_builds_the_reference_class_and_options(name: str) -> None:
    cls, strip, extends, disables = REGISTRY[name]
    renderer = get_renderer(name, get_tokenizer(_model(name), "offline"))
    assert type(renderer) is cls
    assert renderer.strip_thinking_from_history is strip
    assert renderer.has_extension_property is extends
    assert renderer.disables_thinking is disables
    assert renderer.get_stop_sequences() == [renderer.tokenizer.convert_tokens_to_ids("<|im_end|>")]


def _template_ids(tokenizer: Any, messages: list[dict], tools: list[Any]) -> list[int]:
    result = tokenizer.apply_chat_template(
        messages, tools=tools, add_generation_prompt=True, tokenize=True
    )
    return list(result["input_ids"]) if hasattr(result, "input_ids") else list(result)


@pytest.mark.parametrize("system_prompt", ["", "You are terse."])
@pytest.mark.parametrize("name", ["qwen3", "qwen3_5"])
def test_tool_declaration_is_what_the_chat_template_writes(name: str, system_prompt: str) -> None:
    """The declaring system message renders the template's own tools block, token for token.

    Qwen3's template is given tools in OpenAI form ({"type": "function", "function": spec}),
    which is what the reference declares for Qwen3; the reference's Qwen3.5 declaration writes
    each spec bare, which is what the Qwen3.5 template writes when given bare specs.
    """
    tokenizer = get_tokenizer(_model(name), "offline")
    renderer = get_renderer(name, tokenizer)
    question = {"role": "user", "content": "Weather in Oslo?"}
    ours = renderer.build_generation_prompt(
        [*renderer.create_conversation_prefix_with_tools(TOOLS, system_prompt), question]
    ).to_ints()
    template_tools = (
        TOOLS if name == "qwen3_5" else [{"type": "function", "function": t} for t in TOOLS]
    )
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    assert ours == _template_ids(tokenizer, [*system, question], template_tools)


@pytest.mark.parametrize(
    ("name", "content"),
    # The reference's Qwen3 declaration joins the prompt and the (here empty) tools block with a
    # blank line whether or not there are tools; its Qwen3.5 one writes the prompt alone.
    [("qwen3", "Be brief.\n\n"), ("qwen3_5", "Be brief.")],
)
def test_no_tools_is_the_system_prompt(name: str, content: str) -> None:
    renderer = get_renderer(name, get_tokenizer(_model(name), "offline"))
    (message,) = renderer.create_conversation_prefix_with_tools([], "Be brief.")
    assert message == {"role": "system", "content": content}


def test_qwen3_5_image_content_needs_an_image_processor() -> None:
    """Images render (the goldens' images cases); without a processor to count their tokens,
    the renderer says what is missing."""
    renderer = get_renderer("qwen3_5", get_tokenizer(QWEN3_5, "offline"))
    message = {"role": "user", "content": [{"type": "image", "image": "cat.png"}]}
    with pytest.raises(RendererError, match="image_processor is required"):
        renderer.build_generation_prompt([message])


def test_qwen3_tool_call_round_trips_through_parse() -> None:
    """A produced tool call parses back to the same name and arguments (the id is not part of
    Qwen's format, so it comes back as None)."""
    renderer = get_renderer("qwen3", get_tokenizer(QWEN3, "offline"))
    call = ToolCall(id="c1", function=ToolCall.FunctionBody(name="f", arguments='{"x": [1, 2]}'))
    messages = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
    ]
    tokens = renderer.build_supervised_example(messages)[0].to_ints()
    prompt = renderer.build_generation_prompt(messages[:1]).to_ints()
    parsed, termination = renderer.parse_response(tokens[len(prompt) :])
    assert termination.is_stop_sequence
    assert parsed["tool_calls"] == [ToolCall(function=call.function)]


# -- Qwen3.5 XML tool calls: the parser's refusals ---------------------------------------------
# Each malformed block is kept as an UnparsedToolCall whose error names what is wrong (the
# messages are the reference's, tinker_cookbook/renderers/qwen3_5.py); values that are JSON are
# decoded, others stay strings.


@pytest.mark.parametrize(
    ("block", "error"),
    [
        ("<tool_call>\nno function\n</tool_call>", "Malformed Qwen3.5 tool call XML"),
        ("<tool_call>\n<function= >\n</function>\n</tool_call>", "Missing function name"),
        (
            "<tool_call>\n<function=f>\n<parameter= >\n1\n</parameter>\n</function>\n</tool_call>",
            "Empty parameter name",
        ),
        (
            "<tool_call>\n<function=f>\n<parameter=a>\n1\n</parameter>\ntail\n</function>\n"
            "</tool_call>",
            "Unexpected trailing content inside <function> block",
        ),
    ],
)
def test_malformed_xml_tool_calls_stay_unparsed(block: str, error: str) -> None:
    assert parse_tool_call_xml(block) == UnparsedToolCall(raw_text=block, error=error)


def test_xml_parameter_values_are_json_where_they_parse() -> None:
    block = (
        "<tool_call>\n<function=book>\n<parameter=n>\n2\n</parameter>\n"
        "<parameter=city>\nOslo\n</parameter>\n<parameter=tags>\n[1, 2]\n</parameter>\n"
        "</function>\n</tool_call>"
    )
    parsed = parse_tool_call_xml(block)
    assert isinstance(parsed, ToolCall)
    assert parsed.function.name == "book"
    assert parsed.function.arguments == '{"n": 2, "city": "Oslo", "tags": [1, 2]}'


def _qwen3() -> Renderer:
    return get_renderer("qwen3", get_tokenizer(QWEN3, "offline"))


# -- negative controls for reasoning, tool calls and split examples (Qwen3) ---------------------

_WEATHER_CALL = ToolCall(
    id="call_1",
    function=ToolCall.FunctionBody(name="get_weather", arguments='{"location": "Paris"}'),
)
QWEN_CONTROL: list[Message] = [
    Message(role="system", content="You are terse."),
    Message(role="user", content="Weather in Paris?"),
    Message(
        role="assistant",
        content=[
            {"type": "thinking", "thinking": "Ask the weather tool."},
            {"type": "text", "text": "Checking."},
        ],
        tool_calls=[_WEATHER_CALL],
    ),
    Message(role="tool", content='{"sky": "sunny"}', tool_call_id="call_1"),
    Message(
        role="assistant",
        content=[
            {"type": "thinking", "thinking": "Sunny."},
            {"type": "text", "text": "It is sunny."},
        ],
    ),
    Message(role="user", content="Book a table there?"),
    Message(role="assistant", content="Booking.", tool_calls=[_WEATHER_CALL]),
]


class _Qwen3ParseDropsToolCalls(Qwen3Renderer):
    """parse_response forgets the tool calls of the reply."""

    def parse_response(self, response: list[int]) -> tuple[Message, ParseTermination]:
        message, termination = super().parse_response(response)
        message.pop("tool_calls", None)
        return message, termination


class _Qwen3ParseLosesAChar(Qwen3Renderer):
    """parse_response drops the first character of the reply's text: a loss that re-rendering
    shows, so the allowances for framing and call separators must not excuse it."""

    def parse_response(self, response: list[int]) -> tuple[Message, ParseTermination]:
        message, termination = super().parse_response(response)
        content = message["content"]
        if isinstance(content, str):
            message["content"] = content[1:]
        else:
            first = min(i for i, p in enumerate(content) if p["type"] == "text")
            content[first] = {"type": "text", "text": content[first]["text"][1:]}
        return message, termination


class _Qwen3SplitsOnTheWholeConversation(Qwen3Renderer):
    """One example per assistant message, but each renders the whole conversation: earlier
    turns are trained after history they never had when sampled."""

    def build_supervised_examples(
        self, messages: list[Message], train_on_what: TrainOnWhat = TrainOnWhat.LAST_ASSISTANT_TURN
    ) -> list[tuple[tinker.ModelInput, np.ndarray]]:
        example = self.build_supervised_example(messages, TrainOnWhat.LAST_ASSISTANT_MESSAGE)
        return [example for m in messages if m["role"] == "assistant"]


QWEN_CONTROLS: list[tuple[str, type[Qwen3Renderer]]] = [
    ("assistant-round-trip", _Qwen3ParseDropsToolCalls),
    ("assistant-round-trip", _Qwen3ParseLosesAChar),
    ("split-examples", _Qwen3SplitsOnTheWholeConversation),
]


def test_qwen_control_conversation_passes() -> None:
    invariants.check_all(_qwen3(), QWEN_CONTROL)


@pytest.mark.parametrize(
    ("invariant", "broken_cls"),
    QWEN_CONTROLS,
    ids=[f"{name}-{cls.__name__.lstrip('_')}" for name, cls in QWEN_CONTROLS],
)
def test_qwen_negative_control(invariant: str, broken_cls: type[Qwen3Renderer]) -> None:
    broken = broken_cls(_qwen3().tokenizer)
    with pytest.raises(AssertionError, match=rf"^\[{invariant}\]"):
        invariants.ALL_CHECKS[invariant](broken, QWEN_CONTROL)
