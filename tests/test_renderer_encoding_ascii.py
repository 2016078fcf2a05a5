"""ASCII text skips NFC on a copy of the backend and still gets ``tokenizer.encode``'s ids."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from cookbook.renderers import encoding
from cookbook.renderers.encoding import encode_text
from cookbook.tokenizers import _FAMILY_PREFIXES, get_tokenizer

# One model name per offline family (the prefixes resolve like full names).
MODELS = list({family: prefix for prefix, family in _FAMILY_PREFIXES}.values())
NFC_FAMILIES = ("Qwen/Qwen3.5", "Qwen/Qwen3.8", "Qwen/Qwen3-VL", "Qwen/Qwen3-8B")


def _pieces(tokenizer: Any) -> st.SearchStrategy[str]:
    """ASCII fragments: the tokenizer's added-token strings, whitespace runs, printable text."""
    added = sorted(
        t.content for t in tokenizer.backend_tokenizer.get_added_tokens_decoder().values()
    )
    specials = [text for text in added if text.isascii()]
    return st.one_of(
        st.sampled_from(specials or [" "]),
        st.text(st.sampled_from(" \t\n\r\x0b\x0c"), min_size=1, max_size=6),
        st.text(st.characters(min_codepoint=0, max_codepoint=127), max_size=24),
    )


@pytest.mark.parametrize("model", NFC_FAMILIES)
def test_nfc_families_get_the_ascii_route(model: str) -> None:
    tokenizer = get_tokenizer(model, "offline")
    assert encoding._encoder(tokenizer).ascii_backend is not None


@pytest.mark.parametrize("model", MODELS)
def test_ascii_text_equals_encode(model: str) -> None:
    tokenizer = get_tokenizer(model, "offline")

    @seed(16)
    @settings(max_examples=40, deadline=None, database=None)
    @given(
        st.lists(_pieces(tokenizer), max_size=8).map("".join),
        st.booleans(),
        st.sampled_from([None, False, True]),
    )
    def check(text: str, add_special_tokens: bool, split: bool | None) -> None:
        kwargs: dict[str, Any] = {"add_special_tokens": add_special_tokens}
        if split is not None:
            kwargs["split_special_tokens"] = split
        got = encode_text(
            tokenizer, text, add_special_tokens=add_special_tokens, split_special_tokens=split
        )
        assert got == tokenizer.encode(text, **kwargs)

    check()


def test_non_nfc_normalizer_or_normalized_non_ascii_token_has_no_ascii_route() -> None:
    from tokenizers import AddedToken, Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.normalizers import NFC, NFKC

    backend = Tokenizer(WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
    backend.normalizer = NFKC()
    assert encoding._without_nfc(backend) is None
    backend.normalizer = NFC()
    assert encoding._without_nfc(backend) is not None
    # NFC("\u212a") is "K": matched in ASCII text by the NFC backend only.
    backend.add_tokens([AddedToken("\u212a", normalized=True)])
    assert encoding._without_nfc(backend) is None
