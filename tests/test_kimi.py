"""Kimi K2 beyond the golden cases: the declared stand-in tokenizer, options the registry never
passes, splitting by user turn, the tool prefix, and negative controls for the restated
split-examples invariant.

Token parity with the reference is proved by the goldens (specs/renderers/kimi_k2.yaml), made
over the stand-in tokenizer; expected values here are derived from the reference's source
(tinker_cookbook/renderers/kimi_k2.py, 0.5.8) as each test explains.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import tinker

from cookbook.parity import restated
from cookbook.parity.golden import load_golden
from cookbook.renderers import (
    KimiK2Renderer,
    Message,
    ToolCall,
    TrainOnWhat,
    get_renderer,
)
from cookbook.specs import load_spec
from cookbook.specs.models import RendererExclusionsSpec
from cookbook.tokenizers import get_tokenizer, provenance
from cookbook.tokenizers.o200k import KIMI_K2_STANDIN_SPECIALS

pytestmark = pytest.mark.parity

ROOT = Path(__file__).resolve().parents[1]
STANDIN = "cookbook-standin/kimi-k2"


@cache
def _tokenizer():
    return get_tokenizer(STANDIN, "offline")


def _renderer(**options) -> KimiK2Renderer:
    return KimiK2Renderer(_tokenizer(), **options)


def _text(renderer: KimiK2Renderer, model_input: tinker.ModelInput) -> str:
    return renderer.tokenizer.decode(model_input.to_ints())


def _think(thinking: str, text: str) -> list:
    return [{"type": "thinking", "thinking": thinking}, {"type": "text", "text": text}]


def test_the_stand_in_is_declared_everywhere() -> None:
    """Never mistaken for Kimi's tokenizer: its name, its provenance and the catalogue say so,
    and every Kimi golden records that provenance."""
    tokenizer = _tokenizer()
    prov = provenance(tokenizer)
    assert prov.note.startswith("STAND-IN") and prov.source == "offline:tml-renderers==0.2.1"
    for marker in KIMI_K2_STANDIN_SPECIALS:
        assert len(tokenizer.encode(marker)) == 1, marker
    catalogue = load_spec(ROOT / "specs" / "renderers" / "exclusions.yaml")
    assert isinstance(catalogue, RendererExclusionsSpec)
    (entry,) = [e for e in catalogue.no_oracle if e.renderer == "kimi_k2"]
    assert "STAND-IN" in entry.reason and STANDIN in entry.reason
    spec = load_spec(ROOT / "specs" / "renderers" / "kimi_k2.yaml")
    assert spec.model_name == STANDIN and len(spec.cases) >= 30
    golden = load_golden(ROOT / "golden" / "renderers" / "kimi_k2" / "single_turn.json")
    assert golden["tokenizer"]["note"] == prov.note


def test_registry_and_stop_token() -> None:
    renderer = get_renderer("kimi_k2", _tokenizer())
    assert type(renderer) is KimiK2Renderer and renderer.strip_thinking_from_history
    assert renderer.get_stop_sequences() == _tokenizer().encode("<|im_end|>")
    assert not renderer.has_extension_property


def test_preserving_thinking_keeps_history_reasoning() -> None:
    """strip_thinking_from_history=False (not registered) writes every turn's reasoning."""
    messages = [
        Message(role="user", content="2+2?"),
        Message(role="assistant", content=_think("add", "4")),
        Message(role="user", content="3+3?"),
    ]
    stripped = _text(_renderer(), _renderer().build_generation_prompt(messages))
    kept = _text(
        _renderer(strip_thinking_from_history=False),
        _renderer(strip_thinking_from_history=False).build_generation_prompt(messages),
    )
    assert "<think></think>4<|im_end|>" in stripped
    assert "<think>add</think>4<|im_end|>" in kept


def test_examples_split_by_user_turn() -> None:
    """The reference's build_supervised_examples: one example per user turn, the conversation
    cut before each later user message; ALL_ASSISTANT_MESSAGES trains each as its last turn,
    the last-message/turn modes give one example, other modes warn and apply to every turn."""
    renderer = _renderer()
    call = ToolCall(id="functions.f:0", function=ToolCall.FunctionBody(name="f", arguments="{}"))
    messages = [
        Message(role="user", content="a"),
        Message(role="assistant", content="", tool_calls=[call]),
        Message(role="tool", content="r", name="f", tool_call_id="functions.f:0"),
        Message(role="assistant", content="b"),
        Message(role="user", content="c"),
        Message(role="assistant", content="d"),
    ]

    def same(got, want) -> bool:
        return got[0].to_ints() == want[0].to_ints() and np.array_equal(got[1], want[1])

    examples = renderer.build_supervised_examples(messages, TrainOnWhat.ALL_ASSISTANT_MESSAGES)
    turn = TrainOnWhat.LAST_ASSISTANT_TURN
    assert len(examples) == 2
    assert same(examples[0], renderer.build_supervised_example(messages[:4], turn))
    assert same(examples[1], renderer.build_supervised_example(messages, turn))
    (one,) = renderer.build_supervised_examples(messages, TrainOnWhat.LAST_ASSISTANT_MESSAGE)
    assert same(one, renderer.build_supervised_example(messages))
    with pytest.warns(UserWarning, match="apply the same `train_on_what` to all turns"):
        assert len(renderer.build_supervised_examples(messages, TrainOnWhat.ALL_MESSAGES)) == 2


def test_tool_prefix_declares_sorted_compact_json_then_the_system_message() -> None:
    """tool_declare holds the OpenAI-style list as json.dumps(separators=(",", ":"),
    sort_keys=True); the system message follows, the default one without a prompt."""
    tool = {"name": "f", "description": "d", "parameters": {"type": "object", "properties": {}}}
    declare, system = _renderer().create_conversation_prefix_with_tools([tool])
    assert declare == Message(
        role="tool_declare",
        content='[{"function":{"description":"d","name":"f","parameters":'
        '{"properties":{},"type":"object"}},"type":"function"}]',
    )
    assert system == Message(role="system", content=KimiK2Renderer.DEFAULT_SYSTEM_PROMPT)
    assert _renderer().create_conversation_prefix_with_tools([], "Be brief.") == [
        Message(role="system", content="Be brief.")
    ]


def test_segments_point_into_the_callers_messages() -> None:
    """The default system message, inserted after a leading tool_declare, gets index -1."""
    renderer = _renderer()
    messages = [
        Message(role="tool_declare", content="[]"),
        Message(role="user", content="Hi"),
        Message(role="assistant", content="Yo"),
    ]
    segments = renderer.supervised_segments(messages, TrainOnWhat.LAST_ASSISTANT_MESSAGE)
    model_input, _ = renderer.build_supervised_example(messages)
    assert [t for s in segments for t in s.chunk.tokens] == model_input.to_ints()
    assert [s.message_index for s in segments] == [0, 0, -1, -1, 1, 1, 2, 2]


def test_tool_results_need_a_name_and_an_id() -> None:
    result = Message(role="tool", content="42")
    with pytest.warns(UserWarning) as caught:
        text = _text(_renderer(), _renderer().build_generation_prompt([result]))
    warned = " ".join(str(w.message) for w in caught)
    assert "missing 'name' field" in warned and "missing 'tool_call_id' field" in warned
    assert "<|im_system|>tool<|im_middle|>## Return of \n42<|im_end|>" in text


# -- negative controls for the restated split-examples invariant --------------------------------

_CALL = ToolCall(
    id="functions.lookup:0", function=ToolCall.FunctionBody(name="lookup", arguments='{"id": 7}')
)
KIMI_CONTROL: list[Message] = [
    Message(role="user", content="Find 7."),
    Message(role="assistant", content=_think("Look it up.", "On it."), tool_calls=[_CALL]),
    Message(role="tool", content="seven", name="lookup", tool_call_id="functions.lookup:0"),
    Message(role="assistant", content=_think("Found.", "It is seven.")),
    Message(role="user", content="And 8?"),
    Message(role="assistant", content=_think("Same tool.", "Eight.")),
]


class _SplitsPerAssistantMessage(KimiK2Renderer):
    """The generic split: one example per assistant message."""

    def build_supervised_examples(self, messages, train_on_what=TrainOnWhat.LAST_ASSISTANT_TURN):
        return [
            self.build_supervised_example(messages[: i + 1])
            for i, m in enumerate(messages)
            if m["role"] == "assistant"
        ]


class _EveryTurnOnTheWholeConversation(KimiK2Renderer):
    """One example per user turn, but each renders the whole conversation."""

    def build_supervised_examples(self, messages, train_on_what=TrainOnWhat.LAST_ASSISTANT_TURN):
        turns = sum(m["role"] == "user" for m in messages)
        return [self.build_supervised_example(messages, TrainOnWhat.LAST_ASSISTANT_TURN)] * turns


class _ExamplesDropToolCallReasoning(KimiK2Renderer):
    """Examples write a tool-calling message without its reasoning, while the prompt its
    answer is sampled from keeps it: the answer is trained after history it never saw."""

    def build_supervised_example(self, messages, train_on_what=TrainOnWhat.LAST_ASSISTANT_MESSAGE):
        def drop(message: Message) -> Message:
            if not message.get("tool_calls") or isinstance(message["content"], str):
                return message
            text = [p for p in message["content"] if p["type"] == "text"]
            return Message(role="assistant", content=text, tool_calls=message["tool_calls"])

        return super().build_supervised_example([drop(m) for m in messages], train_on_what)


@pytest.mark.filterwarnings("ignore:Tool message missing")
def test_kimi_control_conversation_passes() -> None:
    renderer = get_renderer("kimi_k2", _tokenizer())
    for check in restated.checks_for(renderer).values():
        check(renderer, KIMI_CONTROL)


@pytest.mark.parametrize(
    "broken_cls",
    [_SplitsPerAssistantMessage, _EveryTurnOnTheWholeConversation, _ExamplesDropToolCallReasoning],
    ids=lambda cls: cls.__name__.lstrip("_"),
)
def test_kimi_negative_control(broken_cls: type[KimiK2Renderer]) -> None:
    with pytest.raises(AssertionError, match=r"^\[split-examples\]"):
        restated.check_split_by_user_turn(broken_cls(_tokenizer()), KIMI_CONTROL)


def test_restated_checks_are_the_ones_declared() -> None:
    for name in restated.KIMI_RENDERERS:
        assert restated.RESTATED[name] == {"split-examples": restated.check_split_by_user_turn}
    assert json.dumps(sorted(restated.RESTATED)) == json.dumps(
        sorted(
            [
                *restated.GPT_OSS_RENDERERS,
                *restated.KIMI_RENDERERS,
                *restated.NEMOTRON_THINKING_RENDERERS,
                "qwen3_vl",
            ]
        )
    )
