"""gpt-oss's offline tokenizer (o200k_base + harmony specials) against OpenAI's own encoding.

The goldens' token ids come from the reference loading *our* tokenizer build, so they cannot
show the build itself is right; openai-harmony can: it tokenizes with tiktoken's o200k_harmony
encoding, read from the same official rank file, with no transformers conversion involved.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import unicodedata
from pathlib import Path

import pytest

from cookbook.exceptions import TokenizerError
from cookbook.parity.harmony import harmony_encoding
from cookbook.tokenizers import family_for, get_tokenizer, provenance
from cookbook.tokenizers.o200k import O200K_SHA256, build_gpt_oss

MODEL = "openai/gpt-oss-20b"

# The harmony special tokens of gpt-oss (ASSETS.md; openai-harmony's HARMONY_GPT_OSS encoding).
HARMONY_IDS = {
    "<|startoftext|>": 199998,
    "<|endoftext|>": 199999,
    "<|return|>": 200002,
    "<|constrain|>": 200003,
    "<|channel|>": 200005,
    "<|start|>": 200006,
    "<|end|>": 200007,
    "<|message|>": 200008,
    "<|call|>": 200012,
    "<|endofprompt|>": 200018,
    "<|reserved_200000|>": 200000,
    "<|reserved_201087|>": 201087,
}

CORPUS = [
    "Hello world",
    "  leading spaces\n\n\ttabs and trailing   ",
    "I'm sure you'LL see WE'RE DONE's",
    "12345678 + 3.14159 = 1e-3",
    "def f(x):\n    return {x: [1, 2]}\r\n\r\n",
    "你好\uff0c世界。日本語のテキスト。한국어 문장",
    "👨‍👩‍👧‍👦 🇯🇵 ❤️ 👍🏽 🧑🏿‍🚀",
    "مرحبا بالعالم · שָׁלוֹם עוֹלָם",
    unicodedata.normalize("NFD", "café naïve Ångström"),  # combining marks stay as given
    "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇ path/to/file.txt a//b",
    "<|start|>user<|message|>Hi<|end|><|start|>assistant<|channel|>final<|message|>x<|return|>",
    "x<|endoftext|>y<|call|>z<|constrain|>json<|reserved_200500|>",
    "\u00a0\u3000\u200b\ufeff end",
]


@pytest.fixture(scope="module")
def tokenizer():
    return get_tokenizer(MODEL, "offline")


def test_gpt_oss_models_use_the_harmony_build() -> None:
    assert family_for("openai/gpt-oss-120b") == family_for(MODEL) == "gpt_oss"


def test_vocabulary_and_special_ids(tokenizer) -> None:
    assert len(tokenizer) == 201088
    for token, token_id in HARMONY_IDS.items():
        assert tokenizer.convert_tokens_to_ids(token) == token_id, token
        assert tokenizer.encode(token, add_special_tokens=False) == [token_id], token
    assert tokenizer.eos_token == "<|return|>"
    assert tokenizer.encode("hi") == tokenizer.encode("hi", add_special_tokens=False)


@pytest.mark.parametrize("text", CORPUS)
def test_ids_equal_openai_harmony(tokenizer, text: str) -> None:
    expected = harmony_encoding().encode(text, allowed_special="all")
    assert tokenizer.encode(text, add_special_tokens=False) == expected
    assert tokenizer.decode(expected) == text


def test_provenance_names_the_package_and_the_official_file(tokenizer) -> None:
    prov = provenance(tokenizer)
    assert prov.source == "offline:tml-renderers==0.2.1"
    assert set(prov.files) == {"tokenizer.json", "tokenizer_config.json"}
    assert O200K_SHA256[:12] in prov.note and prov.vocab_size == 201088


def test_build_refuses_a_rank_file_that_is_not_the_official_one(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "o200k_base.tiktoken").write_text("IQ== 0\n")
    with pytest.raises(TokenizerError, match="is not the official"):
        build_gpt_oss(tmp_path, tmp_path)


def test_build_is_deterministic(tmp_path: Path, tokenizer) -> None:
    """Written by us, not by the tokenizers library: the same bytes in the reference's
    environment (tokenizers 0.22) and ours, so the goldens' file hashes hold in both."""
    spec = importlib.util.find_spec("tml_renderers")
    assert spec is not None and spec.origin is not None
    build_gpt_oss(Path(spec.origin).parent, tmp_path)
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}
    assert files == provenance(tokenizer).files
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
