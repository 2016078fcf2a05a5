"""Loading a tokenizer directory with transformers, without its second parse of tokenizer.json.

When ``tokenizer_config.json`` has no ``added_tokens_decoder`` (the Llama 3, DeepSeek, GLM and
o200k-based offline builds), transformers' ``from_pretrained`` reads the whole tokenizer.json a
second time with the stdlib ``json`` only to take its ``added_tokens`` - for gpt-oss's 13 MB
file more CPU than the Rust load of the tokenizer itself. Passing the same tokens as the
``added_tokens_decoder`` argument makes it skip that read and build the same tokenizer; this
module reads them by parsing tokenizer.json's top level only up to the ``added_tokens`` key
(the serializer writes it before the vocabulary), so the big ``model`` value is never parsed in
Python.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")
# What makes transformers take another path than the one this module shortcuts.
_LEGACY_FILES = ("special_tokens_map.json", "added_tokens.json")


def added_tokens(tokenizer_file: Path) -> list[dict[str, Any]] | None:
    """The top-level ``added_tokens`` list of a tokenizer.json, or None if it has none or is
    not a JSON object (the caller then leaves everything to transformers, errors included).

    Top-level values before the key are parsed (small in the serializer's order); the ones
    after it are not read at all."""
    text = tokenizer_file.read_text("utf-8")
    try:
        position = _SPACE.match(text).end()
        if text[position] != "{":
            return None
        position += 1
        while True:
            position = _SPACE.match(text, position).end()
            if text[position] == "}":
                return None
            key, position = _DECODER.raw_decode(text, position)
            position = _SPACE.match(text, position).end()
            if text[position] != ":":
                return None
            position = _SPACE.match(text, position + 1).end()
            value, position = _DECODER.raw_decode(text, position)
            if key == "added_tokens":
                return value if isinstance(value, list) else None
            position = _SPACE.match(text, position).end()
            if text[position] == ",":
                position += 1
    except (ValueError, IndexError):
        return None


def _known_added_tokens(directory: Path) -> dict[int, Any] | None:
    """``added_tokens_decoder`` for ``from_pretrained`` where transformers would otherwise read
    it from tokenizer.json itself (same tokens, same flags); None where it would not (the
    config has its own, a legacy file exists) or the file cannot say."""
    from tokenizers import AddedToken

    tokenizer_file = directory / "tokenizer.json"
    config_file = directory / "tokenizer_config.json"
    if not tokenizer_file.is_file() or not config_file.is_file():
        return None
    if any((directory / name).exists() for name in _LEGACY_FILES):
        return None
    try:
        config = json.loads(config_file.read_text("utf-8"))
    except ValueError:
        return None
    if not isinstance(config, dict) or "added_tokens_decoder" in config:
        return None
    tokens = added_tokens(tokenizer_file)
    if tokens is None:
        return None
    try:
        return {
            token["id"]: AddedToken(**{k: v for k, v in token.items() if k != "id"})
            for token in tokens
        }
    except (KeyError, TypeError):
        return None


def load_directory(directory: Path) -> Any:
    """``PreTrainedTokenizerFast.from_pretrained(directory)``, the same tokenizer, with the
    added tokens handed over where transformers would re-parse tokenizer.json for them."""
    from transformers import PreTrainedTokenizerFast

    decoder = _known_added_tokens(directory)
    if decoder is None:
        return PreTrainedTokenizerFast.from_pretrained(str(directory))
    return PreTrainedTokenizerFast.from_pretrained(str(directory), added_tokens_decoder=decoder)
