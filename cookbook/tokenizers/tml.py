"""Inkling's tokenizer: the one ``tml-renderers`` compiles in, behind a small HF-like facade.

The reference tokenizes ``thinkingmachines/Inkling*`` models with
``tml_renderers.tokenizers`` (``o200k_base`` plus TML's chat specials: ``<|message_user|>``
=200000, ``<|message_model|>``=200001, ``<|end_message|>``=200010, ...), never with a hub
tokenizer, so the registry package ``tml-renderers`` (already an offline asset) *is* the real
thing here, not a stand-in. :func:`inkling_tokenizer` wraps it as the reference's
``TmlRenderersTokenizerAdapter`` does, with provenance: the package version and the sha256 of
the ``o200k_base.tiktoken`` it reads (the specials live in its compiled extension).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

TML_MODEL_PREFIX = "thinkingmachines/Inkling"
TML_PACKAGE = "tml-renderers"
SOURCE_DIR_ENV = "TML_RENDERERS_SOURCE_DIR"
"""A directory holding a ``tml_renderers`` source checkout, used when the package is not
installed (the reference's escape hatch)."""


def is_tml_model(model_name: str) -> bool:
    return model_name.split(":", 1)[0].startswith(TML_MODEL_PREFIX)


def ensure_tml_renderers_importable() -> None:
    """Make ``tml_renderers`` importable, from ``$TML_RENDERERS_SOURCE_DIR`` if not installed."""
    if importlib.util.find_spec("tml_renderers") is not None:
        return
    source = os.environ.get(SOURCE_DIR_ENV)
    if source and (Path(source).expanduser() / "tml_renderers").exists():
        sys.path.insert(0, str(Path(source).expanduser()))
        importlib.invalidate_caches()
        if importlib.util.find_spec("tml_renderers") is not None:
            return
    raise ImportError(
        "Could not import dependency 'tml_renderers' (Inkling's renderer and tokenizer): run "
        f"`pip install --no-deps {TML_PACKAGE}==0.2.1`, or set {SOURCE_DIR_ENV} to a directory "
        "containing the tml_renderers package."
    )


class TmlTokenizer(Protocol):
    """What cookbook uses of a ``tml_renderers`` tokenizer."""

    bos_token: str
    eos_token: str

    def encode_ordinary(self, text: str) -> Sequence[int]: ...

    def decode(self, token_ids: list[int]) -> str: ...

    def encode_special(self, text: str) -> int: ...


@runtime_checkable
class SupportsTmlTokenizer(Protocol):
    """A tokenizer facade that exposes its underlying :class:`TmlTokenizer`."""

    tml_tokenizer: TmlTokenizer


class TmlRenderersTokenizerAdapter:
    """``encode``/``decode``/``eos_token_id`` over a ``tml_renderers`` tokenizer, as renderers
    and datasets expect of a tokenizer; ``tml_tokenizer`` is what the tml renderer takes."""

    eos_token_id: int | None = None
    tml_tokenizer: TmlTokenizer

    def __init__(self, name_or_path: str):
        ensure_tml_renderers_importable()
        tokenizers = importlib.import_module("tml_renderers.tokenizers")
        self.name_or_path = name_or_path
        with warnings.catch_warnings():
            # 0.2.x deprecates the factory the reference calls; same tokenizer either way.
            warnings.simplefilter("ignore", DeprecationWarning)
            self.tml_tokenizer = tokenizers.o200k_base_chat()
        self.bos_token = self.tml_tokenizer.bos_token
        self.eos_token = self.tml_tokenizer.eos_token
        try:
            self.eos_token_id = int(self.tml_tokenizer.encode_special(self.eos_token))
        except Exception:  # the reference's adapter leaves it unset too
            self.eos_token_id = None

    def encode(self, text: str, add_special_tokens: bool = False, **_: Any) -> list[int]:
        """Text as ordinary tokens: special-token strings in it stay text."""
        if add_special_tokens:
            raise ValueError("tml_renderers tokenizer does not support HF-style add_special_tokens")
        return list(self.tml_tokenizer.encode_ordinary(text))

    def decode(self, token_ids: Sequence[int], **_: Any) -> str:
        return str(self.tml_tokenizer.decode(list(token_ids)))


def _tiktoken_file() -> Path:
    spec = importlib.util.find_spec("tml_renderers")
    assert spec is not None and spec.origin is not None  # ensure_tml_renderers_importable ran
    return Path(spec.origin).parent / "data" / "o200k_base.tiktoken"


def inkling_tokenizer(model_name: str) -> TmlRenderersTokenizerAdapter:
    """Inkling's tokenizer with ``cookbook_provenance`` (see ``cookbook.tokenizers``)."""
    from cookbook.tokenizers import TokenizerProvenance

    tokenizer = TmlRenderersTokenizerAdapter(model_name)
    tml: Any = tokenizer.tml_tokenizer
    vocabulary = _tiktoken_file()
    try:
        version = importlib.metadata.version(TML_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        version = f"source ({os.environ.get(SOURCE_DIR_ENV)})"
    tokenizer.cookbook_provenance = TokenizerProvenance(
        model_name=model_name,
        source=f"package:{TML_PACKAGE}=={version}",
        files={vocabulary.name: hashlib.sha256(vocabulary.read_bytes()).hexdigest()},
        vocab_size=1 + max(map(tml.encode_special, tml.special_tokens())),
        note="the tokenizer the reference uses for Inkling models "
        "(tml_renderers.tokenizers.O200kBaseChatTokenizer: o200k_base plus TML's chat "
        "specials, compiled into the package)",
    )
    return tokenizer
