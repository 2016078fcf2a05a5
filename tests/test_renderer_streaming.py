"""Streaming parse == batch parse, for every renderer that streams.

``parse_response_streaming`` must end in the Message ``parse_response`` gives (and, for a
truncated reply, in the one the complete reply parses to), and its deltas must carry every
character of the reply exactly once, in order, with no half-decoded multi-byte character.
"""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cookbook.renderers import (
    Message,
    ParseTermination,
    StreamingMessageHeader,
    StreamingTextDelta,
    StreamingThinkingDelta,
    get_renderer,
)
from cookbook.renderers.base import Renderer
from cookbook.tokenizer_utils import get_tokenizer, register_tokenizer, unregister_tokenizer
from cookbook.tokenizers import TokenizerSource
from cookbook.tokenizers import get_tokenizer as load_tokenizer

MODELS = {
    "qwen3": "Qwen/Qwen3-8B",
    "qwen3_disable_thinking": "Qwen/Qwen3-8B",
    "qwen3_instruct": "Qwen/Qwen3-8B",
    "qwen3_5": "Qwen/Qwen3.5-4B",
    "qwen3_5_disable_thinking": "Qwen/Qwen3.5-4B",
    "deepseekv3": "deepseek-ai/DeepSeek-V3.1",
    "deepseekv3_thinking": "deepseek-ai/DeepSeek-V3.1",
    "kimi_k2": "cookbook-standin/kimi-k2",
    "nemotron3": "cookbook-standin/nemotron-3",
    "nemotron3_ultra": "cookbook-standin/nemotron-3",
}
REPLIES = [
    "Plain answer.",
    "<think>Let me add 2 and 2.</think>The answer is 4.",
    "<think>\n多字节 🙂 emoji and CJK split across tokens\n</think>\n\nÉtonnant: 你好 👋🏽",
    "Before <think>inner</think> between <think>second</think> after",
    "A < b and <thi not a tag",
]
DELTA_TYPES = (StreamingTextDelta, StreamingThinkingDelta)


def renderer_for(name: str) -> Renderer:
    return get_renderer(name, load_tokenizer(MODELS[name], TokenizerSource.OFFLINE))


def reply_tokens(renderer: Renderer, text: str, complete: bool = True) -> list[int]:
    tokens = renderer.tokenizer.encode(text, add_special_tokens=False)
    return [*tokens, renderer._end_message_token] if complete else tokens


def stream(renderer: Renderer, tokens: list[int]) -> tuple[list, Message]:
    items = list(renderer.parse_response_streaming(tokens))
    assert isinstance(items[0], StreamingMessageHeader) and items[0].role == "assistant"
    assert all(isinstance(item, DELTA_TYPES) for item in items[1:-1])
    return items[1:-1], items[-1]


def delta_text(deltas: list) -> str:
    return "".join(d.text if isinstance(d, StreamingTextDelta) else d.thinking for d in deltas)


def without_tags(text: str) -> str:
    """The text with every ``<think>`` that opens a block and ``</think>`` that closes one
    removed (inside a block an opening tag is content, and outside one a closing tag is)."""
    out, inside = [], False
    while text:
        tag = "</think>" if inside else "<think>"
        head, found, text = text.partition(tag)
        out.append(head)
        inside ^= bool(found)
    return "".join(out)


def check_stream(renderer: Renderer, text: str) -> None:
    tokens = reply_tokens(renderer, text)
    deltas, streamed = stream(renderer, tokens)
    batch, termination = renderer.parse_response(tokens)
    assert termination.is_clean
    assert streamed == batch
    decoded = renderer.tokenizer.decode(renderer._normalize_response_tokens(tokens[:-1]))
    assert delta_text(deltas) == without_tags(decoded)
    assert not any("\ufffd" in delta_text([d]) for d in deltas)
    indices = [d.content_index for d in deltas]
    assert indices == sorted(indices)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("text", REPLIES, ids=range(len(REPLIES)))
def test_streaming_ends_in_the_batch_parse(name: str, text: str) -> None:
    check_stream(renderer_for(name), text)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_truncated_stream_still_ends_in_a_parsed_message(name: str) -> None:
    renderer = renderer_for(name)
    text = "<think>partial reasoning</think>partial answer"
    truncated = reply_tokens(renderer, text, complete=False)
    deltas, streamed = stream(renderer, truncated)
    complete, termination = renderer.parse_response(reply_tokens(renderer, text))
    assert termination.is_clean
    assert streamed == complete
    assert renderer.parse_response(truncated)[1] is ParseTermination.MALFORMED
    decoded = renderer.tokenizer.decode(renderer._normalize_response_tokens(truncated))
    assert delta_text(deltas) == without_tags(decoded)


@given(
    thinking=st.one_of(st.none(), st.text(max_size=40)),
    answer=st.text(max_size=40),
)
def test_streaming_equals_batch_on_any_text(thinking: str | None, answer: str) -> None:
    for name in ("qwen3", "deepseekv3_thinking"):
        renderer = renderer_for(name)
        text = answer if thinking is None else f"<think>{thinking}</think>{answer}"
        if renderer.tokenizer.decode(renderer.tokenizer.encode(text)) != text:
            continue  # text the tokenizer itself does not round-trip (special tokens typed in)
        check_stream(renderer, text)


def test_renderers_without_streaming_say_so() -> None:
    renderer = renderer_for("qwen3")
    llama = get_renderer("role_colon", renderer.tokenizer)
    with pytest.raises(NotImplementedError, match="does not support streaming"):
        list(llama.parse_response_streaming([1, 2]))


def test_pickle_rebuilds_through_get_renderer_with_registered_tokenizers() -> None:
    name = "cookbook-test/pickled-qwen3"
    register_tokenizer(name, lambda: load_tokenizer("Qwen/Qwen3-8B", TokenizerSource.OFFLINE))
    try:
        renderer = get_renderer("qwen3_5_disable_thinking", get_tokenizer(name), model_name=name)
        restored = pickle.loads(pickle.dumps(renderer))
        assert type(restored) is type(renderer)
        assert (restored._renderer_name, restored._model_name) == (
            "qwen3_5_disable_thinking",
            name,
        )
        tokens = reply_tokens(renderer, REPLIES[1])
        assert restored.parse_response(tokens) == renderer.parse_response(tokens)
    finally:
        unregister_tokenizer(name)
    direct = type(renderer)(renderer.tokenizer)
    with pytest.raises(pickle.PicklingError, match="not set"):
        pickle.dumps(direct)
