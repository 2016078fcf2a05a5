"""gpt-oss and Kimi encode a message's texts alone between their frames' memoised ids
(``renderers/framing.py``): the ids must be those of the whole text, for any text, and where
the tokenizer does not split independently at its added tokens the whole text is encoded.
"""

from __future__ import annotations

import warnings
from functools import cache
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import PreTrainedTokenizerFast

from cookbook.renderers import (
    GptOssRenderer,
    KimiK2Renderer,
    KimiK26PreserveThinkingRenderer,
    Message,
    RenderContext,
    ToolCall,
    get_renderer,
)
from cookbook.renderers.framing import splits_at_added_tokens
from cookbook.tokenizers import get_tokenizer

# Every frame render_message encodes text in.
FRAMES = [
    ("<|channel|>final<|message|>", "<|end|>"),
    ("<|channel|>final<|message|>", "<|return|>"),
    ("<|message|>", "<|end|>"),
]
SPECIALS = ["<|message|>", "<|end|>", "<|channel|>", "<|return|>"]
# Kimi's frames as render_message passes them: (frame, text, frame, ...), texts left empty.
KIMI_FRAMES = [
    ("", "", "<|im_end|>"),
    ("<think></think>", "", "<|im_end|>"),
    ("<think>", "", "</think>", "", "<|im_end|>"),
    (
        "<think>",
        "",
        "</think>",
        "",
        "<|tool_calls_section_begin|><|tool_call_begin|>",
        "",
        "<|tool_call_argument_begin|>",
        "",
        "<|tool_call_end|><|tool_call_begin|>",
        "",
        "<|tool_call_argument_begin|>",
        "",
        "<|tool_call_end|><|tool_calls_section_end|><|im_end|>",
    ),
]

# Text made of what could interact with a frame: special tokens whole and in part, stray
# brackets and bars, whitespace runs at either end, letters, digits, non-ASCII.
PIECES = st.sampled_from(
    [
        *SPECIALS,
        "<|im_end|>",
        "<think>",
        "</think>",
        "[BOS]",
        "<think",
        "think>",
        "[",
        "]",
        "[EOS",
        "<|",
        "|>",
        "<",
        ">",
        "|",
        "<|end",
        "end|>",
        "<|start|>",
        "<|constrain|>",
        " ",
        "  ",
        "\n",
        "\n\n",
        "\t",
        "final",
        "hello",
        "world",
        "'s",
        "123",
        "4567",
        "é",
        "日本",
        "🙂",
        "x",
    ]
)
CONTENTS = st.lists(PIECES, max_size=12).map("".join) | st.text(max_size=30)


@cache
def _gpt_oss() -> GptOssRenderer:
    renderer = get_renderer("gpt_oss_no_sysprompt", get_tokenizer("openai/gpt-oss-20b", "offline"))
    assert isinstance(renderer, GptOssRenderer)
    return renderer


def _small_tokenizer(**changes: Any) -> Any:
    """A byte-level BPE with harmony's specials, built in a second; ``changes`` break one
    condition of splits_at_added_tokens each."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = changes.get(
        "pre_tokenizer",
        pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(r"\s+|\w+|[^\s\w]+"), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        ),
    )
    trainer = trainers.BpeTrainer(
        vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    backend.train_from_iterator(["hello world final foo  bar\n\n 123 4567 'sé"] * 3, trainer)
    if "normalizer" in changes:
        backend.normalizer = changes["normalizer"]
    backend.add_special_tokens(changes.get("specials", SPECIALS))
    return PreTrainedTokenizerFast(tokenizer_object=backend)


def test_the_offline_gpt_oss_tokenizer_takes_the_framed_route() -> None:
    assert _gpt_oss()._frame_ids() is not None


@given(content=CONTENTS, frame=st.sampled_from(FRAMES))
def test_framed_ids_are_the_whole_texts(content: str, frame: tuple[str, str]) -> None:
    renderer = _gpt_oss()
    prefix, suffix = frame
    whole = renderer.tokenizer.encode(prefix + content + suffix, add_special_tokens=False)
    assert renderer._encode_framed(prefix, content, suffix) == whole


@cache
def _kimi(model_name: str) -> KimiK2Renderer:
    renderer = get_renderer("kimi_k2", get_tokenizer(model_name, "offline"))
    assert isinstance(renderer, KimiK2Renderer)
    return renderer


KIMI_STANDINS = ["cookbook-standin/kimi-k2", "cookbook-standin/kimi-k2.5"]


@pytest.mark.parametrize("model_name", KIMI_STANDINS)
def test_the_kimi_stand_ins_take_the_framed_route(model_name: str) -> None:
    """Kimi encodes with add_special_tokens=True: the stand-ins' byte-level post-processor
    adds no token, and <think>/[BOS] are added tokens of the bracket form."""
    assert _kimi(model_name)._frame_ids() is not None


@given(
    model_name=st.sampled_from(KIMI_STANDINS),
    frames=st.sampled_from(KIMI_FRAMES),
    texts=st.lists(CONTENTS, min_size=6, max_size=6),
)
def test_kimi_framed_ids_are_the_whole_texts(
    model_name: str, frames: tuple[str, ...], texts: list[str]
) -> None:
    renderer = _kimi(model_name)
    parts = [texts[at // 2] if at % 2 else frame for at, frame in enumerate(frames)]
    whole = renderer.tokenizer.encode("".join(parts))
    assert renderer._encode_framed(*parts) == whole


BROKEN = {
    "a special token that strips the space before it": {
        "specials": [*SPECIALS[:1], AddedToken("<|end|>", lstrip=True, special=True)]
    },
    "an added token of another form": {"specials": [*SPECIALS, "END"]},
    "an added token with a bracket inside": {"specials": [*SPECIALS, "<a<b>"]},
    "a normalizer": {"normalizer": normalizers.NFKC()},
    "a prefix space on the first piece only": {
        "pre_tokenizer": pre_tokenizers.Metaspace(prepend_scheme="first")
    },
}


@pytest.mark.parametrize("change", sorted(BROKEN))
def test_a_tokenizer_that_does_not_split_independently_is_encoded_whole(change: str) -> None:
    tokenizer = _small_tokenizer(**BROKEN[change])
    assert not splits_at_added_tokens(tokenizer)
    renderer = GptOssRenderer(tokenizer)
    for content in ("hello ", " world", "<|end|> x", ""):
        whole = tokenizer.encode(f"<|message|>{content}<|end|>", add_special_tokens=False)
        assert renderer._encode_framed("<|message|>", content, "<|end|>") == whole


def test_a_post_processor_that_adds_tokens_stops_framing_an_encode_that_asks_for_them() -> None:
    tokenizer = _small_tokenizer()
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<|channel|> $A",
        special_tokens=[("<|channel|>", tokenizer.convert_tokens_to_ids("<|channel|>"))],
    )
    assert splits_at_added_tokens(tokenizer)
    assert not splits_at_added_tokens(tokenizer, add_special_tokens=True)

    class AddsSpecialTokens(GptOssRenderer):
        _encode_adds_special_tokens = True

    renderer = AddsSpecialTokens(tokenizer)
    assert renderer._frame_ids() is None
    whole = tokenizer.encode("<|message|>hi<|end|>")
    assert whole[0] == tokenizer.convert_tokens_to_ids("<|channel|>")
    assert renderer._encode_framed("<|message|>", "hi", "<|end|>") == whole


def test_frames_that_are_not_bounded_by_special_tokens_are_encoded_whole() -> None:
    """A frame with plain text next to a text, or two texts side by side, is not split."""
    renderer = GptOssRenderer(_small_tokenizer())
    for parts in (
        ("<|message|>hello", " world", "<|end|>"),
        ("<|message|>", "hello", "world<|end|>"),
        ("<|message|>", "hello", "", " world", "<|end|>"),
    ):
        whole = renderer.tokenizer.encode("".join(parts), add_special_tokens=False)
        assert renderer._encode_framed(*parts) == whole


def test_the_condition_matters() -> None:
    """A negative control: with the stripping special token, framing would be wrong."""
    tokenizer = _small_tokenizer(**BROKEN["a special token that strips the space before it"])
    whole = tokenizer.encode("<|message|>hello <|end|>", add_special_tokens=False)
    parts = [
        *tokenizer.encode("<|message|>", add_special_tokens=False),
        *tokenizer.encode("hello ", add_special_tokens=False),
        *tokenizer.encode("<|end|>", add_special_tokens=False),
    ]
    assert parts != whole
    assert splits_at_added_tokens(_small_tokenizer())


def test_per_call_conditions_fall_back_to_the_whole_text() -> None:
    tokenizer = _small_tokenizer()
    renderer = GptOssRenderer(tokenizer)
    assert renderer._frame_ids() is not None
    tokenizer.split_special_tokens = True  # special tokens read as text: no frame to split at
    assert renderer._frame_ids() is None
    whole = tokenizer.encode("<|message|>hi<|end|>", add_special_tokens=False)
    assert renderer._encode_framed("<|message|>", "hi", "<|end|>") == whole
    tokenizer.split_special_tokens = False

    class Hooked(GptOssRenderer):
        def _encode(self, text: str) -> list[int]:
            self.asked.append(text)
            return super()._encode(text)

    hooked = Hooked(tokenizer)
    hooked.asked = []
    hooked._encode_framed("<|message|>", "hi", "<|end|>")
    assert hooked.asked == ["<|message|>hi<|end|>"]  # an overriding hook sees every text whole


class _KimiWhole(KimiK26PreserveThinkingRenderer):
    """The path before framing: an overriding ``_encode`` makes every text encoded whole."""

    def _encode(self, text: str) -> list[int]:
        return super()._encode(text)


@st.composite
def _kimi_messages(draw: st.DrawFn) -> Message:
    role = draw(st.sampled_from(["user", "system", "assistant", "tool"]))
    if role != "assistant":
        message = Message(role=role, content=draw(CONTENTS))
        if role == "tool":
            message["name"] = draw(st.sampled_from(["get_weather", "x<|im_end|>"]))
            message["tool_call_id"] = draw(CONTENTS.filter(bool))
        return message
    content: Any = draw(CONTENTS)
    if draw(st.booleans()):
        content = [
            {"type": "thinking", "thinking": draw(CONTENTS)},
            {"type": "text", "text": content},
        ]
    message = Message(role="assistant", content=content)
    calls = draw(st.lists(st.tuples(st.none() | CONTENTS, CONTENTS), max_size=2))
    if calls:
        message["tool_calls"] = [
            ToolCall(id=call_id, function=ToolCall.FunctionBody(name="f", arguments=arguments))
            for call_id, arguments in calls
        ]
    return message


@given(message=_kimi_messages(), last_turn=st.booleans(), strip=st.booleans())
def test_kimi_messages_render_as_when_encoded_whole(
    message: Message, last_turn: bool, strip: bool
) -> None:
    """Every Kimi message shape (text with special-token strings in it, reasoning kept or
    dropped, tool calls with and without ids, tool results) renders the ids it did when each
    text was encoded whole."""
    tokenizer = _kimi("cookbook-standin/kimi-k2.5").tokenizer
    framed = KimiK26PreserveThinkingRenderer(tokenizer)
    whole = _KimiWhole(tokenizer)
    assert framed._frame_ids() is not None and whole._frame_ids() is None
    framed.strip_thinking_from_history = whole.strip_thinking_from_history = strip
    ctx = RenderContext(1, False, None, None, 0, last_turn)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got, expected = framed.render_message(message, ctx), whole.render_message(message, ctx)
    assert got == expected
