"""gpt-oss's tokenizer, rebuilt offline: o200k_base plus the harmony special tokens.

``tml-renderers`` (a dependency of the reference) ships the official ``o200k_base.tiktoken``;
with the o200k split pattern and the harmony specials it gives the 201088-id tokenizer of
openai/gpt-oss-*, whose ids equal tiktoken's ``o200k_harmony`` encoding (tests/test_gpt_oss.py
checks them against openai-harmony's own tokenizer).
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from cookbook.exceptions import TokenizerError

O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
"""sha256 of the official ``o200k_base.tiktoken`` (tiktoken_ext.openai_public's expected_hash)."""

# tiktoken_ext.openai_public's o200k pattern, piece by piece.
O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

# The harmony specials of gpt-oss after o200k's 199998 ranks; every other id up to 201087 is
# ``<|reserved_N|>`` (the layout of openai/gpt-oss-20b's tokenizer.json).
HARMONY_SPECIALS = {
    199998: "<|startoftext|>",
    199999: "<|endoftext|>",
    200002: "<|return|>",
    200003: "<|constrain|>",
    200005: "<|channel|>",
    200006: "<|start|>",
    200007: "<|end|>",
    200008: "<|message|>",
    200012: "<|call|>",
    200018: "<|endofprompt|>",
}
HARMONY_VOCAB_SIZE = 201088


def _byte_symbols() -> dict[int, str]:
    """GPT-2's byte -> printable character table, in which byte-level BPE vocabularies are
    written (printable bytes stand for themselves, the rest are shifted past 255)."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    table, shift = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + shift)
            shift += 1
    return table


def _tiktoken_vocab_merges(path: Path) -> tuple[dict[str, int], list[list[str]]]:
    """Vocabulary and merges of a ``.tiktoken`` rank file, as transformers' TikTokenConverter
    derives them: a token's merges are its splits into two tokens, ordered by the ranks of the
    halves, and all merges are ordered by the rank of the token they make.

    Written here rather than called, so the built file does not depend on the transformers or
    tiktoken version installed (the reference's environment and ours must hash the same).
    """
    ranks: dict[bytes, int] = {}
    for line in path.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    symbols = _byte_symbols()

    def spell(token: bytes) -> str:
        return "".join(symbols[b] for b in token)

    merges: list[list[str]] = []
    for token in sorted(ranks, key=ranks.__getitem__):
        splits = [
            (token[:i], token[i:])
            for i in range(1, len(token))
            if token[:i] in ranks and token[i:] in ranks
        ]
        splits.sort(key=lambda pair: (ranks[pair[0]], ranks[pair[1]]))
        merges.extend([spell(left), spell(right)] for left, right in splits)
    return {spell(token): rank for token, rank in ranks.items()}, merges


def _byte_level(**flags: bool) -> dict[str, Any]:
    return {"type": "ByteLevel", **flags}


def _write_o200k(
    package_dir: Path, out_dir: Path, specials: list[str], config: dict[str, Any]
) -> None:
    """tokenizer.json for o200k_base with ``specials`` from id 199998 on, as transformers'
    TikTokenConverter produces it (byte-level BPE, o200k split pattern, merges ignored for
    whole vocabulary words), serialized here so the bytes are the same in every environment;
    and ``config`` as tokenizer_config.json."""
    source = package_dir / "data" / "o200k_base.tiktoken"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    if digest != O200K_SHA256:
        raise TokenizerError(f"{source}: sha256 {digest} is not the official {O200K_SHA256}")
    vocab, merges = _tiktoken_vocab_merges(source)
    added = [
        {
            "id": token_id,
            "content": content,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for token_id, content in enumerate(specials, start=len(vocab))
    ]
    split = {
        "type": "Split",
        "pattern": {"Regex": O200K_PATTERN},
        "behavior": "Isolated",
        "invert": False,
    }
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                split,
                _byte_level(add_prefix_space=False, trim_offsets=True, use_regex=False),
            ],
        },
        "post_processor": _byte_level(add_prefix_space=True, trim_offsets=False, use_regex=True),
        "decoder": _byte_level(add_prefix_space=True, trim_offsets=True, use_regex=True),
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": True,
            "vocab": vocab,
            "merges": merges,
        },
    }
    (out_dir / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False), "utf-8")
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **config,
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 131072,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2), "utf-8")


def build_gpt_oss(package_dir: Path, out_dir: Path) -> None:
    """gpt-oss's tokenizer: o200k_base plus the harmony specials (201088 ids)."""
    first = 199998  # o200k_base's ranks end here
    specials = [
        HARMONY_SPECIALS.get(token_id, f"<|reserved_{token_id}|>")
        for token_id in range(first, HARMONY_VOCAB_SIZE)
    ]
    config = {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|return|>",
        "pad_token": "<|endoftext|>",
    }
    _write_o200k(package_dir, out_dir, specials, config)


KIMI_K2_STANDIN_SPECIALS = [
    "[BOS]",
    "[EOS]",
    "<|im_end|>",
    "<|im_user|>",
    "<|im_assistant|>",
    "<|im_system|>",
    "<|im_middle|>",
    "<|tool_calls_section_begin|>",
    "<|tool_calls_section_end|>",
    "<|tool_call_begin|>",
    "<|tool_call_argument_begin|>",
    "<|tool_call_end|>",
    "<think>",
    "</think>",
]
"""Every marker the Kimi K2 renderer writes, one token each (it requires that of <|im_end|>),
and Kimi's BOS/EOS names. Their ids (199998 on) are not Kimi's."""
_KIMI_STANDIN_CONFIG = {"bos_token": "[BOS]", "eos_token": "[EOS]"}


def build_kimi_k2_standin(package_dir: Path, out_dir: Path) -> None:
    """A declared STAND-IN for Kimi K2's tokenizer, which no registry package ships: o200k_base
    for ordinary text and Kimi's chat markers as special tokens. Renderer logic (which markers
    go where, segments, weights, parsing) can be checked token by token with it; its ids are
    not Kimi K2's."""
    _write_o200k(package_dir, out_dir, KIMI_K2_STANDIN_SPECIALS, _KIMI_STANDIN_CONFIG)


KIMI_K25_STANDIN_SPECIALS = [
    *KIMI_K2_STANDIN_SPECIALS,
    "<|media_begin|>",
    "<|media_content|>",
    "<|media_end|>",
    "<|media_pad|>",
]
"""Kimi K2's stand-in markers, at the same ids, then the media markers K2.5/K2.6 write around
an image (``<|media_pad|>`` is where the model's processor puts the image's tokens)."""


def build_kimi_k25_standin(package_dir: Path, out_dir: Path) -> None:
    """A declared STAND-IN for Kimi K2.5/K2.6's tokenizer (none ships in a registry package):
    the Kimi K2 stand-in plus the media markers, so a user typing one is tokenized as the
    marker it is; ids are not Kimi's."""
    _write_o200k(package_dir, out_dir, KIMI_K25_STANDIN_SPECIALS, _KIMI_STANDIN_CONFIG)
