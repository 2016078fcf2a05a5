"""gpt-oss encodes a message's text alone inside its frame's memoised ids
(``renderers/gpt_oss_framing.py``): the ids must be those of the whole text, for any text, and
where the tokenizer does not split independently at its added tokens the whole text is encoded.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tokenizers import AddedToken, Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from cookbook.renderers import GptOssRenderer, get_renderer
from cookbook.renderers.gpt_oss_framing import splits_at_added_tokens
from cookbook.tokenizers import get_tokenizer

# Every frame render_message encodes text in.
FRAMES = [
    ("<|channel|>final<|message|>", "<|end|>"),
    ("<|channel|>final<|message|>", "<|return|>"),
    ("<|message|>", "<|end|>"),
]
SPECIALS = ["<|message|>", "<|end|>", "<|channel|>", "<|return|>"]

# Text made of what could interact with a frame: special tokens whole and in part, stray
# brackets and bars, whitespace runs at either end, letters, digits, non-ASCII.
PIECES = st.sampled_from(
    [
        *SPECIALS,
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


BROKEN = {
    "a special token that strips the space before it": {
        "specials": [*SPECIALS[:1], AddedToken("<|end|>", lstrip=True, special=True)]
    },
    "an added token of another form": {"specials": [*SPECIALS, "[END]"]},
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
