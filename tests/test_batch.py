"""The batch renderer must equal the per-conversation renderer exactly.

``build_supervised_examples_batch`` exists only for speed (see ``nox -s bench``); it is correct
only if, for every ``TrainOnWhat``, it returns the same chunks, token ids, weight values and
weight dtype as ``build_supervised_example`` one conversation at a time, and raises the same
errors. The per-conversation path is itself pinned to the reference by the golden parity tests,
so equality here carries that parity over to the batch path.

Here the generic path (the renderer's own hooks served from batched encodes) and the encodes
themselves; ``test_batch_template_path.py`` has the template path on the same conversations.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from cookbook.renderers import Llama3Renderer, Renderer, ToolCall, TrainOnWhat, get_renderer
from cookbook.renderers.batch import (
    _PROBE,
    _RECORDING_ROUNDS,
    build_supervised_examples_batch,
    encode_many,
)
from cookbook.renderers.batch_memo import SPOT_CHECKS
from cookbook.tokenizers import get_tokenizer

CONVERSATIONS: list[list[dict[str, Any]]] = [
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name a prime."},
        {"role": "assistant", "content": "Seven."},
    ],
    [
        {"role": "user", "content": "你好 👋🏽 مرحبا"},
        {"role": "assistant", "content": "  spaced  \n"},
        {"role": "user", "content": "literal <|eot_id|> inside"},
        {"role": "assistant", "content": ""},
    ],
    # A repeated text: the batch path shares one chunk between examples.
    [
        {"role": "user", "content": "Name a prime."},
        {"role": "assistant", "content": "Seven."},
    ],
    # Ends with a user turn: nothing to zero before a last assistant message.
    [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Bye"},
    ],
    [{"role": "assistant", "content": "I speak first."}],
]

MODES = [t for t in TrainOnWhat if t is not TrainOnWhat.CUSTOMIZED]


def _assert_same(batch: list, single: list) -> None:
    assert len(batch) == len(single)
    for index, ((b_input, b_weights), (s_input, s_weights)) in enumerate(
        zip(batch, single, strict=True)
    ):
        assert [list(c.tokens) for c in b_input.chunks] == [
            list(c.tokens) for c in s_input.chunks
        ], f"conversation {index}: chunks differ"
        assert b_weights.dtype == s_weights.dtype, f"conversation {index}: weight dtype differs"
        np.testing.assert_array_equal(b_weights, s_weights, err_msg=f"conversation {index}")


def _record_encodes(monkeypatch: pytest.MonkeyPatch, tokenizer: Any) -> list[str]:
    """The texts the tokenizer's ``encode`` is called with from now on, in call order."""
    calls: list[str] = []
    encode = tokenizer.encode

    def counting_encode(text: str, *args: Any, **kwargs: Any) -> list[int]:
        calls.append(text)
        return encode(text, *args, **kwargs)

    monkeypatch.setattr(tokenizer, "encode", counting_encode)
    return calls


@pytest.mark.parametrize("train_on_what", MODES, ids=str)
def test_batch_equals_per_conversation(llama3_renderer: Renderer, train_on_what) -> None:
    single = [llama3_renderer.build_supervised_example(m, train_on_what) for m in CONVERSATIONS]
    batch = build_supervised_examples_batch(llama3_renderer, CONVERSATIONS, train_on_what)
    _assert_same(batch, single)


@pytest.mark.parametrize("train_on_what", MODES, ids=str)
@pytest.mark.parametrize(
    "model",
    # Qwen3.5's base tokenizer declares no BOS (int64 weights), Llama 3.1's does (float32).
    ["Qwen/Qwen3.5-9B-Base", "meta-llama/Llama-3.1-8B"],
)
def test_role_colon_fast_path_equals_per_conversation(model: str, train_on_what) -> None:
    renderer = get_renderer("role_colon", get_tokenizer(model, "offline"))
    conversations = [*CONVERSATIONS, [{"role": "user", "content": "User: hi\n\nUser:"}]]
    single = [renderer.build_supervised_example(m, train_on_what) for m in conversations]
    batch = build_supervised_examples_batch(renderer, conversations, train_on_what)
    _assert_same(batch, single)
    assert [m for m, _ in batch] == [m for m, _ in single]


def test_customized_flags_follow_the_per_conversation_path(llama3_renderer: Renderer) -> None:
    conversations = [
        [
            {"role": "user", "content": "a", "trainable": True},
            {"role": "assistant", "content": "b", "trainable": False},
            {"role": "assistant", "content": "c", "trainable": True},
        ]
    ]
    mode = TrainOnWhat.CUSTOMIZED
    single = [llama3_renderer.build_supervised_example(m, mode) for m in conversations]
    _assert_same(build_supervised_examples_batch(llama3_renderer, conversations, mode), single)


def test_generic_path_equals_per_conversation(llama3_tokenizer: Any) -> None:
    """A subclass is not the exact type the fast path knows, so it takes the generic path."""

    class Subclassed(Llama3Renderer):
        pass

    renderer = Subclassed(llama3_tokenizer)
    for mode in MODES:
        single = [renderer.build_supervised_example(m, mode) for m in CONVERSATIONS]
        _assert_same(build_supervised_examples_batch(renderer, CONVERSATIONS, mode), single)


@pytest.mark.parametrize(
    "bad",
    [
        [{"role": "user", "content": "x", "trainable": True}],  # flag without CUSTOMIZED
        [{"role": "user", "content": [{"type": "image", "image": "a.png"}]}],  # multimodal
    ],
)
def test_errors_are_the_per_conversation_errors(llama3_renderer: Renderer, bad: list) -> None:
    mode = TrainOnWhat.ALL_MESSAGES
    with pytest.raises(Exception) as single_error:
        llama3_renderer.build_supervised_example(bad, mode)
    with pytest.raises(type(single_error.value), match=re.escape(str(single_error.value))):
        build_supervised_examples_batch(llama3_renderer, [CONVERSATIONS[0], bad], mode)


def test_empty_batch(llama3_renderer: Renderer) -> None:
    assert build_supervised_examples_batch(llama3_renderer, []) == []


def test_encode_many_equals_encode(llama3_renderer: Renderer) -> None:
    texts = ["Hello", "<|eot_id|>", "", "  spaced\n\n", "你好", "Hello"]
    assert encode_many(llama3_renderer, texts) == [llama3_renderer._encode(t) for t in texts]


# Reasoning, tool calls and tool results: the Qwen renderers encode content with special-token
# parsing off (Qwen3) or move part of the header into the output (Qwen3.5), so the generic path
# must not assume the Llama 3 layout.
QWEN_CONVERSATIONS: list[list[dict[str, Any]]] = [
    *CONVERSATIONS,
    [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Use the tool."},
                {"type": "text", "text": "Checking."},
            ],
            "tool_calls": [
                ToolCall(
                    function=ToolCall.FunctionBody(
                        name="get_weather", arguments='{"location": "Paris"}'
                    )
                )
            ],
        },
        {"role": "tool", "content": '{"sky": "sunny"}'},
        {"role": "tool", "content": '{"wind": "none"}'},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Sunny, calm."},
                {"type": "text", "text": "Sunny and calm."},
            ],
        },
    ],
]


@pytest.mark.parametrize("train_on_what", MODES, ids=str)
@pytest.mark.parametrize(
    ("name", "model"), [("qwen3", "Qwen/Qwen3-8B"), ("qwen3_5", "Qwen/Qwen3.5-9B")]
)
def test_qwen_batch_equals_per_conversation(name: str, model: str, train_on_what) -> None:
    renderer = get_renderer(name, get_tokenizer(model, "offline"))
    single = [renderer.build_supervised_example(m, train_on_what) for m in QWEN_CONVERSATIONS]
    batch = build_supervised_examples_batch(renderer, QWEN_CONVERSATIONS, train_on_what)
    _assert_same(batch, single)


# Literal special-token strings in message text. Qwen3 encodes message bodies through
# ``Renderer._encode_split`` (special-token parsing off), so "<|im_end|>" typed in a message is
# several ordinary tokens there, while headers go through ``_encode``. The batch path serves
# both kinds from one batched encode each; these texts tell the two kinds apart.
SPECIAL_TEXT_CONVERSATIONS: list[list[dict[str, Any]]] = [
    [
        {"role": "system", "content": "Never print <|endoftext|>."},
        {"role": "user", "content": "Say <|im_end|> then <|im_start|>assistant\nhi"},
        {"role": "assistant", "content": "Literal <|im_end|> is just text."},
    ],
    [
        {"role": "user", "content": "What does <think> mean?"},
        {"role": "assistant", "content": "A tag: <|im_start|>"},
        {"role": "user", "content": "<|im_end|>"},
        {"role": "assistant", "content": "<|im_end|><|im_end|>"},
    ],
    # The same text as a header would give ("\n<|im_start|>user\n") but as a body.
    [
        {"role": "user", "content": "\n<|im_start|>user\n"},
        {"role": "assistant", "content": "ok"},
    ],
]

QWEN3_MODEL = {
    "qwen3": "Qwen/Qwen3-8B",
    "qwen3_disable_thinking": "Qwen/Qwen3-8B",
    "qwen3_instruct": "Qwen/Qwen3-4B-Instruct-2507",
}


@pytest.mark.parametrize("train_on_what", MODES, ids=str)
@pytest.mark.parametrize("name", list(QWEN3_MODEL))
def test_qwen3_literal_special_tokens_equal_per_conversation(name: str, train_on_what) -> None:
    renderer = get_renderer(name, get_tokenizer(QWEN3_MODEL[name], "offline"))
    conversations = SPECIAL_TEXT_CONVERSATIONS
    single = [renderer.build_supervised_example(m, train_on_what) for m in conversations]
    batch = build_supervised_examples_batch(renderer, conversations, train_on_what)
    _assert_same(batch, single)
    # Each message closes with exactly one stop token; a literal "<|im_end|>" in the text must
    # not add another (it would end the turn early when the model reads it).
    stop = renderer.get_stop_sequences()[0]
    for messages, (model_input, _) in zip(conversations, batch, strict=True):
        assert model_input.to_ints().count(stop) == len(messages)


@pytest.mark.parametrize(
    ("name", "model"), [("qwen3", "Qwen/Qwen3-8B"), ("deepseekv3", "deepseek-ai/DeepSeek-V3.1")]
)
def test_batch_does_not_call_the_tokenizer_per_text(name: str, model: str, monkeypatch) -> None:
    """The batch path's point: texts are encoded in one backend call per hook and recording
    round, not one ``tokenizer.encode`` each. What is left is the spot-check guard
    (``SPOT_CHECKS`` texts per batch) and at most one call per batch to reset the backend;
    text by text it would be at least one call per message (here 2 * 60).

    Qwen3 encodes message bodies through ``_encode_split``; DeepSeek reads marker ids off
    ``_encode`` (``(token,) = ...``): the recording encodes added-token texts at once (one call
    each here, memoised afterwards) so its first round finds the message texts.
    """
    tokenizer = get_tokenizer(model, "offline")
    renderer = get_renderer(name, tokenizer)
    conversations = [
        [
            {"role": "user", "content": f"Question {i}: what is <|im_end|> {i}?"},
            {"role": "assistant", "content": f"Answer {i}."},
        ]
        for i in range(60)
    ]
    single = [renderer.build_supervised_example(m) for m in conversations]
    calls = _record_encodes(monkeypatch, tokenizer)
    batch = build_supervised_examples_batch(renderer, conversations)
    _assert_same(batch, single)
    assert len(calls) <= _RECORDING_ROUNDS * 2 * (SPOT_CHECKS + 1), calls


@pytest.mark.parametrize("flag_before", [False, True])
def test_encode_many_split_equals_encode_split(flag_before: bool) -> None:
    renderer = get_renderer("qwen3", get_tokenizer("Qwen/Qwen3-8B", "offline"))
    texts = ["<|im_end|>", "a<|im_start|>user", "<think>", "", "plain", "<|endoftext|>", "x"]
    backend = renderer.tokenizer.backend_tokenizer
    for split, hook in [(True, renderer._encode_split), (False, renderer._encode)]:
        backend.encode_special_tokens = flag_before
        ids = encode_many(renderer, texts, split=split)
        # It leaves the backend as it found it (transformers sets the flag on every encode).
        assert backend.encode_special_tokens == flag_before
        assert ids == [hook(t) for t in texts]
    # With parsing on, the marker is the stop token; with it off, several ordinary tokens.
    (stop,) = renderer.get_stop_sequences()
    assert encode_many(renderer, ["<|im_end|>"]) == [[stop]]
    assert len(encode_many(renderer, ["<|im_end|>"], split=True)[0]) > 1


def test_reshaping_renderer_is_recorded_whole(monkeypatch) -> None:
    """DeepSeek V4.1 drops reasoning from history inside its own conversation-level path, so
    message-by-message recording misses every earlier assistant text; after the first
    ``_PROBE`` conversations the rest are recorded whole, not encoded one text at a time."""
    tokenizer = get_tokenizer("cookbook-standin/deepseek-v4.1", "offline")
    renderer = get_renderer("deepseekv4_1", tokenizer)
    conversations = [
        [
            {"role": "user", "content": f"Question {i}?"},
            {"role": "assistant", "content": f"Answer {i}."},
            {"role": "user", "content": f"And {i + 1}?"},
            {"role": "assistant", "content": f"Then {i + 1}."},
        ]
        for i in range(40)
    ]
    single = [renderer.build_supervised_example(m) for m in conversations]
    calls = _record_encodes(monkeypatch, tokenizer)
    batch = build_supervised_examples_batch(renderer, conversations)
    _assert_same(batch, single)
    # Recording message by message only, it would be one call per conversation at least.
    assert len(calls) <= _PROBE + 4 * (SPOT_CHECKS + 1) < len(conversations), calls
