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
the second one from the first without a second Rust load of the same file. Families whose
files differ only before the ``model`` (gpt-oss and the Kimi stand-ins: o200k_base with other
specials) share it: :func:`load_with_model_of` builds the second backend around the first one's
model instead of parsing 200k ranks and merges again.
"""

from __future__ import annotations

import copy
import json
import os
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
# The top-level keys Tokenizer.from_file reads besides "model" (tokenizers' serialization.rs).
_PIPELINE_KEYS = frozenset(
    {
        "version",
        "truncation",
        "padding",
        "added_tokens",
        "normalizer",
        "pre_tokenizer",
        "post_processor",
        "decoder",
    }
)
# A model to parse the pipeline with before the real one replaces it.
_NO_BPE = {"type": "BPE", "vocab": {}, "merges": []}
# Bytes at the end of two tokenizer.json files compared before reading them whole.
_TAIL_BYTES = 4096


def _top_level(text: str, last: str) -> tuple[dict[str, Any], int] | None:
    """The top-level values of a JSON object text before the key ``last``, and where the value
    of ``last`` starts; None if the text is no JSON object or has no such key.

    Only the values before ``last`` are parsed (small in the serializer's order: the big
    ``model`` value comes last); whatever follows is not read at all."""
    values: dict[str, Any] = {}
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
            if key == last:
                return values, position
            values[key], position = _DECODER.raw_decode(text, position)
            position = _SPACE.match(text, position).end()
            if text[position] == ",":
                position += 1
    except (ValueError, IndexError):
        return None


def added_tokens(tokenizer_file: Path) -> list[dict[str, Any]] | None:
    """The top-level ``added_tokens`` list of a tokenizer.json, or None if it has none or is
    not a JSON object (the caller then leaves everything to transformers, errors included).

    Top-level values before the key are parsed (small in the serializer's order); the ones
    after it are not read at all."""
    text = tokenizer_file.read_text("utf-8")
    found = _top_level(text, "added_tokens")
    if found is None:
        return None
    try:
        value, _ = _DECODER.raw_decode(text, found[1])
    except ValueError:
        return None
    return value if isinstance(value, list) else None


def _known_added_tokens(
    directory: Path, tokens: list[dict[str, Any]] | None = None
) -> dict[int, Any] | None:
    """``added_tokens_decoder`` for ``from_pretrained`` where transformers would otherwise read
    it from tokenizer.json itself (same tokens, same flags); None where it would not (the
    config has its own, a legacy file exists) or the file cannot say. ``tokens``: the file's
    ``added_tokens`` where the caller has read them already."""
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
    tokens = added_tokens(tokenizer_file) if tokens is None else tokens
    if tokens is None:
        return None
    try:
        return {token["id"]: _added_token(token) for token in tokens}
    except (KeyError, TypeError):
        return None


def _added_token(token: dict[str, Any]) -> Any:
    """A tokenizer.json ``added_tokens`` entry as the ``AddedToken`` it describes."""
    from tokenizers import AddedToken

    return AddedToken(**{key: value for key, value in token.items() if key != "id"})


def load_directory(directory: Path) -> Any:
    """``PreTrainedTokenizerFast.from_pretrained(directory)``, the same tokenizer, with the
    added tokens handed over where transformers would re-parse tokenizer.json for them."""
    return _from_pretrained(directory)


def _from_pretrained(
    directory: Path, backend: Any = None, tokens: list[dict[str, Any]] | None = None
) -> Any:
    """``from_pretrained(directory)``, with ``backend`` (nobody else's) as its Rust tokenizer
    instead of one loaded from tokenizer.json, if given. transformers deep-copies a
    ``tokenizer_object`` it is handed - a serialization round trip costing more than loading
    the file - so for that call the backend is its own deep copy."""
    from transformers import PreTrainedTokenizerFast

    kwargs: dict[str, Any] = {}
    decoder = _known_added_tokens(directory, tokens)
    if decoder is not None:
        kwargs["added_tokens_decoder"] = decoder
    if backend is None:
        return PreTrainedTokenizerFast.from_pretrained(str(directory), **kwargs)
    backend.__deepcopy__ = lambda memo: backend
    try:
        return PreTrainedTokenizerFast.from_pretrained(
            str(directory), tokenizer_object=backend, **kwargs
        )
    finally:
        del backend.__deepcopy__


def _tail(path: Path) -> bytes:
    with path.open("rb") as file:
        file.seek(max(0, file.seek(0, os.SEEK_END) - _TAIL_BYTES))
        return file.read()


def load_with_model_of(base: Any, base_directory: Path, directory: Path) -> Any | None:
    """``load_directory(directory)``, made with the Rust model (vocabulary and merges) of
    ``base = load_directory(base_directory)`` when both tokenizer.json files hold the same
    text from their ``model`` key on, byte for byte, and every other key from_file reads comes
    before it; None where that is not shown.

    Why: gpt-oss and the Kimi stand-ins are all o200k_base with specials of their own, and
    parsing o200k's ranks and merges is nearly all of loading each (~0.75 s of CPU). The
    backend is built as ``Tokenizer.from_file`` builds it (the pipeline from the file's own
    values, then the model, then the file's added tokens in order: tokenizers'
    serialization.rs), except that the model is ``base``'s, shared, which nothing changes
    after loading; transformers then wraps it as it wraps the file's load.
    tests/test_tokenizers.py proves the result equal to the full load, attribute for
    attribute, for every pair of offline families this applies to."""
    from tokenizers import Tokenizer

    tokenizer_file, base_file = directory / "tokenizer.json", base_directory / "tokenizer.json"
    try:
        if {path.name for path in directory.iterdir()} - _SIBLING_FILES:
            return None
        if _tail(tokenizer_file) != _tail(base_file):  # tells other models apart cheaply
            return None
        text, base_text = tokenizer_file.read_text("utf-8"), base_file.read_text("utf-8")
    except OSError:
        return None
    ours, theirs = _top_level(text, "model"), _top_level(base_text, "model")
    if ours is None or theirs is None or text[ours[1] :] != base_text[theirs[1] :]:
        return None
    values = ours[0]
    if set(values) != _PIPELINE_KEYS or not isinstance(values["added_tokens"], list):
        return None  # from_file would read a key from after the model, or an odd file
    try:
        backend = Tokenizer.from_str(json.dumps({**values, "added_tokens": [], "model": _NO_BPE}))
        backend.model = base.backend_tokenizer.model
        backend.add_tokens([_added_token(token) for token in values["added_tokens"]])
    except Exception:  # tokenizers raises its own Exception subclass; leave it to from_file
        return None
    return _from_pretrained(directory, backend, values["added_tokens"])


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
