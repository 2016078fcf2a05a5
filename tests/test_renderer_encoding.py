"""The renderers' direct encode route returns exactly what ``tokenizer.encode`` returns."""

from __future__ import annotations

from typing import Any

import pytest
from test_batch import _record_encodes

from cookbook.renderers import encoding, get_renderer
from cookbook.renderers.encoding import encode_text, rendering_call
from cookbook.tokenizers import get_tokenizer

TEXTS = [
    "",
    "plain text",
    "<|im_end|>",
    "a<|im_start|>user\nhi<|eot_id|>",
    "<|begin_of_text|>x",
    " leading space and trailing \n\n",
    "日本語 🙂 مرحبا e\u0301",
    "x" * 200,
]


@pytest.mark.parametrize("model", ["Qwen/Qwen3-8B", "meta-llama/Llama-3.1-8B-Instruct"])
@pytest.mark.parametrize("add_special_tokens", [False, True])
@pytest.mark.parametrize("split", [None, False, True])
def test_direct_route_equals_encode(
    model: str, add_special_tokens: bool, split: bool | None
) -> None:
    tokenizer = get_tokenizer(model, "offline")
    kwargs: dict[str, Any] = {"add_special_tokens": add_special_tokens}
    if split is not None:
        kwargs["split_special_tokens"] = split
    for _ in range(2):  # the second round answers from the memo
        with rendering_call():
            for text in TEXTS:
                expected = tokenizer.encode(text, **kwargs)
                got = encode_text(
                    tokenizer,
                    text,
                    add_special_tokens=add_special_tokens,
                    split_special_tokens=split,
                )
                assert got == expected, text


def test_returns_a_fresh_list() -> None:
    tokenizer = get_tokenizer("Qwen/Qwen3-8B", "offline")
    first = encode_text(
        tokenizer, "<|im_end|>", add_special_tokens=False, split_special_tokens=None
    )
    first.append(-1)
    again = encode_text(
        tokenizer, "<|im_end|>", add_special_tokens=False, split_special_tokens=None
    )
    assert again == tokenizer.encode("<|im_end|>", add_special_tokens=False)


def test_truncated_backend_goes_through_encode() -> None:
    """A backend left truncated must not truncate: ``encode`` resets it, so must we."""
    tokenizer = get_tokenizer("Qwen/Qwen3-8B", "offline")
    text = "one two three four five six seven"
    expected = tokenizer.encode(text, add_special_tokens=False)
    tokenizer.backend_tokenizer.enable_truncation(max_length=2)
    try:
        got = encode_text(tokenizer, text, add_special_tokens=False, split_special_tokens=None)
    finally:
        tokenizer.backend_tokenizer.no_truncation()
    assert got == expected


def test_instance_encode_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    tokenizer = get_tokenizer("Qwen/Qwen3-8B", "offline")
    calls = _record_encodes(monkeypatch, tokenizer)
    encode_text(tokenizer, "hello there", add_special_tokens=False, split_special_tokens=None)
    assert calls == ["hello there"]


def test_fixed_texts_are_memoised_per_tokenizer() -> None:
    """A long fixed text (a built-in system prompt) is memoised whatever its length: the memo
    is the tokenizer's, so another tokenizer encodes it afresh, and a caller that changes the
    list it got changes nothing memoised."""
    text = "You are ChatGPT, a large language model trained by OpenAI.\n" * 4
    first, second = (get_tokenizer(m, "offline") for m in ("Qwen/Qwen3-8B", "openai/gpt-oss-20b"))
    for tokenizer in (first, second, first, second):
        got = encode_text(
            tokenizer, text, add_special_tokens=False, split_special_tokens=None, fixed=True
        )
        assert got == tokenizer.encode(text, add_special_tokens=False)
        got.append(-1)


def test_renderer_encode_fixed_honours_an_overridden_encode() -> None:
    """A renderer whose ``_encode`` is replaced (the batch path's hooks do this) is asked for
    fixed texts too, not answered from the memo behind its back."""
    renderer = get_renderer("gpt_oss_low_reasoning", get_tokenizer("openai/gpt-oss-20b", "offline"))
    asked: list[str] = []

    def encode(text: str) -> list[int]:
        asked.append(text)
        return [7]

    renderer._encode = encode  # type: ignore[method-assign]
    assert renderer._encode_fixed("<|message|>fixed<|end|>") == [7]
    assert asked == ["<|message|>fixed<|end|>"]


def test_fixed_texts_past_the_bound_are_not_kept() -> None:
    """A system prompt longer than FIXED_TEXT_CHARS is encoded, not memoised for good."""
    tokenizer = get_tokenizer("Qwen/Qwen3-8B", "offline")
    long_text = "y" * (encoding.FIXED_TEXT_CHARS + 1)
    short_text = "z" * encoding.FIXED_TEXT_CHARS
    for text in (long_text, short_text):
        got = encode_text(
            tokenizer, text, add_special_tokens=False, split_special_tokens=None, fixed=True
        )
        assert got == tokenizer.encode(text, add_special_tokens=False)
    kept = {key[0] for key in encoding._encoder(tokenizer).memo}
    assert short_text in kept
    assert long_text not in kept


def test_dropping_the_memoised_texts_makes_the_next_pass_encode_them() -> None:
    """The bench calls ``drop_memoised_texts`` between passes over the same conversations, so
    a short message body is encoded again, as it would be on new data; the results stay the
    same."""
    tokenizer = get_tokenizer("Qwen/Qwen3-8B", "offline")
    text = "A short reply."

    def encode() -> list[int]:
        return encode_text(tokenizer, text, add_special_tokens=False, split_special_tokens=None)

    first = encode()
    assert any(key[0] == text for key in encoding._encoder(tokenizer).memo)
    encoding.drop_memoised_texts(tokenizer)
    assert not any(key[0] == text for key in encoding._encoder(tokenizer).memo)
    assert encode() == first == tokenizer.encode(text, add_special_tokens=False)
