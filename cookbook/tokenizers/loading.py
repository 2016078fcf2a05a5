"""Loading a tokenizer directory with transformers, without its second parse of tokenizer.json.

When ``tokenizer_config.json`` has no ``added_tokens_decoder`` (the Llama 3, DeepSeek, GLM and
o200k-based offline builds), transformers' ``from_pretrained`` reads the whole tokenizer.json a
second time with the stdlib ``json`` only to take its ``added_tokens`` - for gpt-oss's 13 MB
file more CPU than the Rust load of the tokenizer itself. Passing the same tokens as the
``added_tokens_decoder`` argument makes it skip that read and build the same tokenizer; this
module reads them by parsing tokenizer.json's top level only up to the ``added_tokens`` key
(the serializer writes it before the vocabulary), so the big ``model`` value is never parsed in
Python.

Offline families whose tokenizer.json files are byte-identical (Qwen3, Qwen3-VL and the Nemotron 3
stand-in; Qwen3.5/3.6 and Qwen3.8) differ only in their chat template; :func:`load_sibling` makes
the second one from the first without a second Rust load of the same file.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")
# What makes transformers take another path than the one this module shortcuts.
_LEGACY_FILES = ("special_tokens_map.json", "added_tokens.json")
_TEMPLATE_FILE = "chat_template.jinja"
# The only files a sibling may hold: anything else (a legacy file, chat_template.json, a
# directory of extra templates, a model config) is read by from_pretrained in ways not mirrored.
_SIBLING_FILES = frozenset({"tokenizer.json", "tokenizer_config.json", _TEMPLATE_FILE})


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


def _layout(directory: Path) -> tuple[list[tuple[str, Any]], str | None, tuple[str, ...]] | None:
    """A directory's tokenizer config as ordered items without the chat template, the chat
    template as from_pretrained reads it (chat_template.jinja over the config's string), and
    where it comes from (the config keys in order, and the file if there is one); None where
    the directory holds anything else."""
    try:
        names = {path.name for path in directory.iterdir()}
        config = json.loads((directory / "tokenizer_config.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not names <= _SIBLING_FILES or not isinstance(config, dict):
        return None
    template = config.get("chat_template")
    if template is not None and not isinstance(template, str):
        return None  # a list of named templates: from_pretrained makes a dict of it
    if _TEMPLATE_FILE in names:
        template = (directory / _TEMPLATE_FILE).read_text("utf-8")
    source = (*config, *sorted(names & {_TEMPLATE_FILE}))
    items = [(key, value) for key, value in config.items() if key != "chat_template"]
    return items, template, source


def load_sibling(base: Any, base_directory: Path, directory: Path) -> Any | None:
    """``load_directory(directory)``, made from ``base = load_directory(base_directory)`` when
    both directories hold the same tokenizer.json bytes (the caller compares their digests) and
    differ in nothing else but the chat template; None where that is not shown.

    ``base``'s Python-side state is copied (nothing changed on the copy reaches it) and its Rust
    backend shared, as :func:`cookbook.tokenizers.get_tokenizer` shares it between the model
    names of one family: what from_pretrained sets on a backend (truncation and padding off,
    the same added tokens) depends only on tokenizer.json and the config, and the encoders set
    ``encode_special_tokens`` before every call. The template and ``name_or_path`` are what
    from_pretrained would set (in ``init_kwargs`` too, in the same key order: the template is
    only replaced in place or dropped, so a sibling whose template would be inserted elsewhere
    is loaded in full)."""
    ours, theirs = _layout(directory), _layout(base_directory)
    if ours is None or theirs is None or ours[0] != theirs[0]:
        return None
    _, template, source = ours
    if template is not None and source != theirs[2]:
        return None
    backend = base.backend_tokenizer
    tokenizer = copy.deepcopy(base, {id(backend): backend})
    tokenizer.chat_template = template
    tokenizer.name_or_path = str(directory)
    tokenizer.init_kwargs["name_or_path"] = str(directory)
    if template is None:
        tokenizer.init_kwargs.pop("chat_template", None)
    else:
        tokenizer.init_kwargs["chat_template"] = template
    return tokenizer
