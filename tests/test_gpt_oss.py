"""gpt-oss renderers beyond the golden cases: registry, options, the system prompt's date, tool
definitions, parsing corners, and negative controls for the invariants restated for harmony.

Token parity with the reference is proved by the goldens (specs/renderers/gpt_oss_*.yaml); these
cover what a conversation case cannot express.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from functools import cache
from pathlib import Path

import pytest
import tinker

from cookbook.exceptions import ConfigurationError
from cookbook.parity import golden as g
from cookbook.parity import restated
from cookbook.parity.harmony import TOOL_PREFIX_FILE
from cookbook.parity.record import GPT_OSS_PINNED_DATE, RENDERER_OPTIONS, jsonable
from cookbook.renderers import (
    GptOssRenderer,
    Message,
    ParseTermination,
    RenderContext,
    RenderedMessage,
    ToolCall,
    TrainOnWhat,
    get_renderer,
)
from cookbook.tokenizers import get_tokenizer

pytestmark = pytest.mark.parity

ROOT = Path(__file__).resolve().parents[1]
MODEL = "openai/gpt-oss-20b"
RETURN, CALL, END = 200002, 200012, 200007  # harmony's <|return|>, <|call|>, <|end|>

# name -> (use_system_prompt, reasoning_effort), as tinker_cookbook/renderers/__init__.py
# (0.5.8) constructs them; none passes current_date.
REGISTRY = {
    "gpt_oss_no_sysprompt": (False, None),
    "gpt_oss_low_reasoning": (True, "low"),
    "gpt_oss_medium_reasoning": (True, "medium"),
    "gpt_oss_high_reasoning": (True, "high"),
}


@cache
def _tokenizer():
    return get_tokenizer(MODEL, "offline")


def _renderer(name: str) -> GptOssRenderer:
    renderer = get_renderer(name, _tokenizer())
    assert isinstance(renderer, GptOssRenderer)
    return renderer


def _text(renderer: GptOssRenderer, model_input: tinker.ModelInput) -> str:
    return renderer.tokenizer.decode(model_input.to_ints())


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_registry_builds_the_reference_configuration(name: str) -> None:
    renderer = _renderer(name)
    assert (renderer.use_system_prompt, renderer.reasoning_effort) == REGISTRY[name]
    assert renderer.current_date is None
    assert renderer.get_stop_sequences() == [RETURN, CALL]
    assert renderer._bos_tokens == [] and not renderer.has_extension_property


def test_system_prompt_needs_a_reasoning_effort_and_only_then() -> None:
    for args in ({"use_system_prompt": True}, {"reasoning_effort": "low"}):
        with pytest.raises(ConfigurationError, match="Reasoning effort must be set iff"):
            GptOssRenderer(_tokenizer(), **args)


def test_the_system_prompt_states_today_unless_a_date_is_pinned() -> None:
    """The reference's semantics: today's date at each rendering (dates read around it, in
    case the test straddles midnight), or current_date when given."""
    renderer = _renderer("gpt_oss_high_reasoning")
    messages = [Message(role="user", content="Hi")]
    before = datetime.now().strftime("%Y-%m-%d")
    text = _text(renderer, renderer.build_generation_prompt(messages))
    after = datetime.now().strftime("%Y-%m-%d")
    assert f"Current date: {before}" in text or f"Current date: {after}" in text
    assert "Reasoning: high\n\n" in text
    renderer.current_date = "1999-12-31"
    text = _text(renderer, renderer.build_generation_prompt(messages))
    assert text.startswith("<|start|>system<|message|>You are ChatGPT")
    assert "Current date: 1999-12-31\n" in text


def test_goldens_were_rendered_with_the_pinned_date() -> None:
    """The reference rendered the goldens with the date pinned (else they would hold the day
    they were made, and go stale the next), and records the option it was given."""
    assert set(RENDERER_OPTIONS) == {n for n, (system, _) in REGISTRY.items() if system}
    for name, (system, effort) in REGISTRY.items():
        golden = g.load_golden(g.golden_path(ROOT / "golden", name, "user_only"))
        assert golden["renderer"]["options"] == RENDERER_OPTIONS.get(name, {})
        text = golden["outputs"]["generation_prompt"]["text"]
        assert (f"Current date: {GPT_OSS_PINNED_DATE}\n" in text) is system
        assert (f"Reasoning: {effort}\n" in text) is system


def test_warnings_for_a_second_system_prompt_and_an_unnamed_tool_result() -> None:
    renderer = _renderer("gpt_oss_low_reasoning")
    with pytest.warns(UserWarning, match="already start with a system message"):
        renderer.build_generation_prompt([Message(role="system", content="Be brief.")])
    result = Message(role="tool", content="42", tool_call_id="c1")
    with pytest.warns(UserWarning, match="missing 'name' field"):
        text = _text(renderer, renderer.build_generation_prompt([result]))
    assert "<|start|>functions.unknown to=assistant<|channel|>commentary<|message|>42" in text


def test_segments_cover_the_built_in_system_prompt_as_message_minus_one() -> None:
    """The reference's base assembly has no segments for a prepended message, so the goldens
    leave them out for these renderers; ours still lay out every token, and keep pointing into
    the caller's messages."""
    renderer = _renderer("gpt_oss_medium_reasoning")
    messages = [Message(role="user", content="Hi"), Message(role="assistant", content="Yo")]
    model_input, _ = renderer.build_supervised_example(messages)
    segments = renderer.supervised_segments(messages, TrainOnWhat.LAST_ASSISTANT_MESSAGE)
    assert [t for s in segments for t in s.chunk.tokens] == model_input.to_ints()
    assert [s.message_index for s in segments] == [-1, -1, 0, 0, 1, 1]


def test_tool_definitions_are_the_references() -> None:
    """golden/gpt_oss_tool_prefixes.json: the reference's create_conversation_prefix_with_tools
    over probes that take every branch of its TypeScript formatting."""
    path = ROOT / "golden" / TOOL_PREFIX_FILE
    manifest = g.load_manifest(ROOT / "golden")
    assert manifest["tool_prefixes"] == {TOOL_PREFIX_FILE: g.file_sha256(path)}, g.REGENERATE
    renderer = _renderer("gpt_oss_no_sysprompt")
    probes = json.loads(path.read_text("utf-8"))["probes"]
    assert len(probes) >= 4
    for probe in probes:
        ours = renderer.create_conversation_prefix_with_tools(
            probe["tools"], probe["system_prompt"]
        )
        assert jsonable(ours) == probe["messages"], probe["system_prompt"]


def test_parse_stops_at_the_first_stop_token_and_reports_a_cut_reply() -> None:
    renderer = _renderer("gpt_oss_no_sysprompt")
    encode = renderer._encode
    call = encode(' to=functions.f<|channel|>commentary <|constrain|>json<|message|>{"a": 1}')
    message, termination = renderer.parse_response([*call, CALL, *encode("<|start|>x"), RETURN])
    assert termination is ParseTermination.STOP_SEQUENCE
    assert [(c.function.name, c.function.arguments) for c in message["tool_calls"]] == [
        ("f", '{"a": 1}')
    ]
    cut = encode("<|channel|>final<|message|>Hel")
    message, termination = renderer.parse_response(cut)
    assert termination is ParseTermination.MALFORMED and not termination.is_clean
    assert message["content"] == "<|channel|>final<|message|>Hel"


def test_to_openai_message_puts_reasoning_in_reasoning_content() -> None:
    call = ToolCall(function=ToolCall.FunctionBody(name="f", arguments="{}"), id="c")
    message = Message(
        role="assistant",
        content=[{"type": "thinking", "thinking": "t"}, {"type": "text", "text": "x"}],
        tool_calls=[call],
    )
    assert _renderer("gpt_oss_no_sysprompt").to_openai_message(message) == {
        "role": "assistant",
        "content": "x",
        "reasoning_content": "t",
        "tool_calls": [
            {"type": "function", "id": "c", "function": {"name": "f", "arguments": "{}"}}
        ],
    }


# -- negative controls for the invariants restated for harmony ----------------------------------

_CALL = ToolCall(function=ToolCall.FunctionBody(name="lookup", arguments='{"id": 7}'), id="c1")
HARMONY_CONTROL: list[Message] = [
    Message(role="system", content="You are terse."),
    Message(role="user", content="Find 7."),
    Message(
        role="assistant",
        content=[
            {"type": "thinking", "thinking": "Look it up."},
            {"type": "text", "text": "On it."},
        ],
        tool_calls=[_CALL],
    ),
    Message(role="tool", content="seven", name="lookup", tool_call_id="c1"),
    Message(role="assistant", content="It is seven."),
    Message(role="user", content="Both 8 and 9?"),
    Message(
        role="assistant",
        content=[{"type": "thinking", "thinking": "Two calls."}, {"type": "text", "text": " "}],
        tool_calls=[
            ToolCall(function=ToolCall.FunctionBody(name="lookup", arguments='{"id": 8}')),
            ToolCall(function=ToolCall.FunctionBody(name="lookup", arguments='{"id": 9}')),
        ],
    ),
]
"""Reasoning in history, a blank preamble and two calls in the final message: every allowance
the restated checks make, so each control below fails only because of its breakage."""


class _FinalEndsWithEnd(GptOssRenderer):
    """Ends the final answer with <|end|>, as if it were history: nothing trains <|return|>."""

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        return super().render_message(message, dataclasses.replace(ctx, is_last=False))


class _HistoryWithoutEnd(GptOssRenderer):
    """Drops the <|end|> that closes an answer in history."""

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        rendered = super().render_message(message, ctx)
        tokens = list(rendered.output[0].tokens)
        if message["role"] == "assistant" and tokens[-1] == END:
            tokens = tokens[:-1]
        return RenderedMessage(
            header=rendered.header, output=[tinker.EncodedTextChunk(tokens=tokens)]
        )


class _ParseDropsReasoning(GptOssRenderer):
    def parse_response(self, response: list[int]) -> tuple[Message, ParseTermination]:
        message, termination = super().parse_response(response)
        if isinstance(message["content"], list):
            message["content"] = [p for p in message["content"] if p["type"] != "thinking"]
        return message, termination


class _ParseDropsCalls(GptOssRenderer):
    def parse_response(self, response: list[int]) -> tuple[Message, ParseTermination]:
        message, termination = super().parse_response(response)
        message.pop("tool_calls", None)
        return message, termination


class _ParseLosesAChar(GptOssRenderer):
    """Loses the last character of every text part (the preamble of a call included)."""

    def parse_response(self, response: list[int]) -> tuple[Message, ParseTermination]:
        message, termination = super().parse_response(response)
        if isinstance(message["content"], list):
            message["content"] = [
                {**p, "text": p["text"][:-1]} if p["type"] == "text" else p
                for p in message["content"]
            ]
        return message, termination


CONTROLS: list[tuple[str, type[GptOssRenderer], list[Message]]] = [
    ("stop-token-ends-turn", _FinalEndsWithEnd, HARMONY_CONTROL[:5]),
    ("stop-token-ends-turn", _HistoryWithoutEnd, HARMONY_CONTROL),
    ("assistant-round-trip", _ParseDropsReasoning, HARMONY_CONTROL),
    ("assistant-round-trip", _ParseDropsCalls, HARMONY_CONTROL),
    ("assistant-round-trip", _ParseLosesAChar, HARMONY_CONTROL[:5]),
]


def test_every_restated_invariant_has_a_negative_control() -> None:
    assert {name for name, *_ in CONTROLS} == set(restated.HARMONY_CHECKS)
    for name in REGISTRY:
        assert (
            restated.checks_for(_renderer(name))["assistant-round-trip"]
            is restated.check_harmony_round_trip
        )


@pytest.mark.parametrize("name", sorted(REGISTRY))
@pytest.mark.filterwarnings("ignore:use_system_prompt=True but messages already start")
def test_harmony_control_conversations_pass(name: str) -> None:
    """Every invariant, restated ones included, holds for the real renderers on the controls'
    conversations: the controls fail because of their breakage alone."""
    renderer = _renderer(name)
    for check in restated.checks_for(renderer).values():
        check(renderer, HARMONY_CONTROL)
        check(renderer, HARMONY_CONTROL[:5])


@pytest.mark.parametrize(
    ("invariant", "broken_cls", "messages"),
    CONTROLS,
    ids=[f"{name}-{cls.__name__.lstrip('_')}" for name, cls, _ in CONTROLS],
)
def test_harmony_negative_control(
    invariant: str, broken_cls: type[GptOssRenderer], messages: list[Message]
) -> None:
    broken = broken_cls(_tokenizer())
    with pytest.raises(AssertionError, match=rf"^\[{invariant}\]"):
        restated.HARMONY_CHECKS[invariant](broken, messages)
