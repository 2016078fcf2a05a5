"""``tinker_cookbook.tokenizer_utils`` under our name: a registry of custom tokenizer factories
in front of :func:`cookbook.tokenizers.get_tokenizer` (hub or cache first, offline build second).

Code written against the reference (``register_tokenizer("Foo/foo", factory)`` then
``get_tokenizer("Foo/foo")``) keeps working after switching the import; Inkling models get
``tml_renderers``' own tokenizer (:mod:`cookbook.tokenizers.tml`), as in the reference.
"""

from __future__ import annotations

from collections.abc import Callable

from cookbook.tokenizers import Tokenizer
from cookbook.tokenizers import get_tokenizer as _load_tokenizer
from cookbook.tokenizers.tml import (
    SupportsTmlTokenizer,
    TmlRenderersTokenizerAdapter,
    TmlTokenizer,
    ensure_tml_renderers_importable,
)

_CUSTOM_TOKENIZER_REGISTRY: dict[str, Callable[[], Tokenizer]] = {}


def register_tokenizer(name: str, factory: Callable[[], Tokenizer]) -> None:
    """``get_tokenizer(name)`` calls ``factory()`` from now on (not cached: the factory
    decides), before any hub or offline lookup."""
    _CUSTOM_TOKENIZER_REGISTRY[name] = factory


def get_registered_tokenizer_names() -> list[str]:
    return list(_CUSTOM_TOKENIZER_REGISTRY)


def is_tokenizer_registered(name: str) -> bool:
    return name in _CUSTOM_TOKENIZER_REGISTRY


def unregister_tokenizer(name: str) -> bool:
    """True if ``name`` was registered (and now is not)."""
    return _CUSTOM_TOKENIZER_REGISTRY.pop(name, None) is not None


def get_tokenizer(model_name: str) -> Tokenizer:
    """The registered factory's tokenizer, else tml-renderers' for Inkling models, else the
    hub's (cached), else the offline build."""
    factory = _CUSTOM_TOKENIZER_REGISTRY.get(model_name)
    if factory is not None:
        return factory()
    return _load_tokenizer(model_name)


__all__ = [
    "SupportsTmlTokenizer",
    "TmlRenderersTokenizerAdapter",
    "TmlTokenizer",
    "Tokenizer",
    "ensure_tml_renderers_importable",
    "get_registered_tokenizer_names",
    "get_tokenizer",
    "is_tokenizer_registered",
    "register_tokenizer",
    "unregister_tokenizer",
]
