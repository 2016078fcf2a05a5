"""Offline-first tokenizer loading with provenance.

``get_tokenizer(model_name)`` mirrors ``tinker_cookbook.tokenizer_utils.get_tokenizer``: the real
tokenizer from the Hugging Face cache or hub when it can be had, else an offline build from a
registry package (see :mod:`cookbook.tokenizers.offline`). Whatever is returned carries a
:class:`TokenizerProvenance` (``provenance(tokenizer)``) naming its source and the sha256 of its
files, so goldens and run artifacts can record exactly what produced their token ids.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import os
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

from cookbook.exceptions import TokenizerError
from cookbook.hub import hub_reachable
from cookbook.tokenizers.loading import load_directory, load_sibling, load_with_model_of
from cookbook.tokenizers.offline import RECIPES, OfflineRecipe, materialize
from cookbook.tokenizers.tml import inkling_tokenizer, is_tml_model

Tokenizer = Any
"""A Hugging Face tokenizer (``PreTrainedTokenizerFast``); typed loosely, as the reference does."""

# Model-name prefixes -> offline family. Order matters: first match wins. Qwen3.6 uses the
# Qwen3.5 tokenizer unchanged (the reference's model_info says so, and the asset package ships
# the same files for both); Qwen3.8 shares the ids but not the chat template, so it has a family
# of its own without one (packaged.build_qwen3_8 records the evidence).
# Qwen3 lists the text models of the reference's model_info (their -Base and -Instruct-2507
# variants share the ids); Qwen3-VL keeps Qwen3's ids but not its template, so it has a family
# of its own without one (packaged.build_qwen3_vl).
_FAMILY_PREFIXES: tuple[tuple[str, str], ...] = (
    ("meta-llama/Llama-3", "llama3"),
    ("Qwen/Qwen3.5", "qwen3_5"),
    ("Qwen/Qwen3.6", "qwen3_5"),
    ("Qwen/Qwen3.8", "qwen3_8"),
    ("Qwen/Qwen3-VL", "qwen3_vl"),
    ("Qwen/Qwen3-8B", "qwen3"),
    ("Qwen/Qwen3-32B", "qwen3"),
    ("Qwen/Qwen3-30B-A3B", "qwen3"),
    ("Qwen/Qwen3-4B-Instruct-2507", "qwen3"),
    ("Qwen/Qwen3-235B-A22B-Instruct-2507", "qwen3"),
    ("deepseek-ai/DeepSeek-V3.1", "deepseek_v3_1"),
    ("openai/gpt-oss", "gpt_oss"),
    ("HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2"),
    # Not a hub model: the name says the tokenizer is a stand-in (see offline.RECIPES), so no
    # Kimi K2 model name ever resolves to it silently.
    # K2.5 first: the K2 prefix would match it too. K2.6 renders with K2.5's markers.
    ("cookbook-standin/kimi-k2.5", "kimi_k25_standin"),
    ("cookbook-standin/kimi-k2", "kimi_k2_standin"),
    ("cookbook-standin/glm-5.3", "glm5_standin"),
    ("cookbook-standin/deepseek-v4.1", "deepseek_v4_standin"),
    ("cookbook-standin/nemotron-3", "nemotron3_standin"),
)
# The reference loads every Llama 3 tokenizer from this ungated mirror.
_HUB_ALIASES: tuple[tuple[str, str], ...] = (
    ("meta-llama/Llama-3", "thinkingmachineslabinc/meta-llama-3-instruct-tokenizer"),
)


class TokenizerSource(StrEnum):
    AUTO = "auto"
    """Hugging Face cache or hub first, offline build as the fallback."""
    OFFLINE = "offline"
    """Only the offline build: what parity tests and goldens use, so hashes stay fixed."""


@dataclass(frozen=True)
class TokenizerProvenance:
    model_name: str
    source: str
    """``hub:<repo>``, ``directory:<path>`` or ``offline:<package>==<version>``."""
    files: dict[str, str] = field(default_factory=dict)
    """File name -> sha256 of every file the tokenizer was loaded from."""
    vocab_size: int = 0
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def family_for(model_name: str) -> str:
    """The offline tokenizer family of a model; ``TokenizerError`` names the known ones."""
    base = model_name.split(":", 1)[0]
    for prefix, family in _FAMILY_PREFIXES:
        if base.startswith(prefix):
            return family
    known = ", ".join(f"{prefix}*" for prefix, _ in _FAMILY_PREFIXES)
    raise TokenizerError(
        f"no offline tokenizer for model {model_name!r}; offline builds exist for: {known}"
    )


def offline_directory(model_name: str) -> Path:
    """The cached offline tokenizer directory for a model (built on first use)."""
    directory, _ = materialize(family_for(model_name))
    return directory


def file_digests(directory: Path) -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.iterdir())
        if path.is_file()
    }


def _hub_repo(model_name: str) -> str:
    base = model_name.split(":", 1)[0]
    for prefix, repo in _HUB_ALIASES:
        if base.startswith(prefix):
            return repo
    return base


def _try_hub(model_name: str) -> tuple[Tokenizer, str] | None:
    """The hub tokenizer if cached, or downloadable when the hub is not switched off."""
    from transformers import AutoTokenizer

    repo = _hub_repo(model_name)
    # The cache first; the hub only if it answers (see cookbook.hub: no 50 s of retries).
    attempts = [True, False] if hub_reachable() else [True]
    for local_only in attempts:
        try:
            return AutoTokenizer.from_pretrained(repo, local_files_only=local_only), repo
        except (OSError, ValueError):
            continue
    return None


_LOADED: dict[str, list[tuple[Path, Tokenizer]]] = {}
"""tokenizer.json sha256 -> (directory, a pristine copy of its tokenizer) for each offline family
loaded from a file with those bytes."""


@cache
def _offline_family(family: str) -> tuple[Tokenizer, OfflineRecipe, dict[str, str]]:
    """One offline family's tokenizer, loaded once per process for all the model names that map
    to it (Llama 3.1 and its Instruct, the Qwen3 sizes...): the Rust load of a 6-20 MB
    tokenizer.json is the largest part of a parity run that is not rendering. A family whose
    tokenizer.json has the bytes of one already loaded is made from it where
    :func:`~cookbook.tokenizers.loading.load_sibling` can (same backend, own chat template)."""
    directory, recipe = materialize(family)
    files = file_digests(directory)
    return _load_sharing(directory, files.get("tokenizer.json")), recipe, files


def _load_sharing(directory: Path, digest: str | None) -> Tokenizer:
    """``load_directory(directory)``, made from a tokenizer loaded earlier where it can be."""
    loaded = _LOADED.setdefault(digest, []) if digest else []
    tokenizer = _made_from_loaded(directory, digest, loaded)
    if tokenizer is None:
        tokenizer = load_directory(directory)
    backend = tokenizer.backend_tokenizer
    loaded.append((directory, copy.deepcopy(tokenizer, {id(backend): backend})))
    return tokenizer


def _made_from_loaded(
    directory: Path, digest: str | None, loaded: list[tuple[Path, Tokenizer]]
) -> Tokenizer | None:
    """The tokenizer of ``directory`` made from one loaded from the same tokenizer.json bytes
    (:func:`~cookbook.tokenizers.loading.load_sibling`), else around the Rust model of one
    loaded from a file with the same model
    (:func:`~cookbook.tokenizers.loading.load_with_model_of`); None where neither can."""
    for base_directory, base in loaded:
        if (tokenizer := load_sibling(base, base_directory, directory)) is not None:
            return tokenizer
    for other, others in _LOADED.items():
        if other == digest or not others:
            continue
        base_directory, base = others[0]
        if (tokenizer := load_with_model_of(base, base_directory, directory)) is not None:
            return tokenizer
    return None


@cache
def get_tokenizer(
    model_name: str, source: TokenizerSource | str = TokenizerSource.AUTO
) -> Tokenizer:
    """Load the tokenizer for ``model_name`` (a hub id or a local directory).

    Cached per (model, source), like the reference; offline, the names of one family share one
    load (each gets a shallow copy with its own provenance). Raises :class:`TokenizerError`
    when neither the hub nor an offline build can provide it.
    """
    source = TokenizerSource(source)
    if is_tml_model(model_name):
        # The reference always uses tml-renderers' own tokenizer here, hub or not.
        return inkling_tokenizer(model_name)
    if os.path.isdir(model_name):
        directory = Path(model_name)
        tokenizer = load_directory(directory)
        prov = TokenizerProvenance(
            model_name, f"directory:{directory}", file_digests(directory), len(tokenizer)
        )
    else:
        hub = _try_hub(model_name) if source is TokenizerSource.AUTO else None
        if hub is not None:
            tokenizer, repo = hub
            prov = TokenizerProvenance(model_name, f"hub:{repo}", {}, len(tokenizer))
        else:
            base, recipe, files = _offline_family(family_for(model_name))
            # A shallow copy: its own attributes (the provenance below), the same vocabulary and
            # Rust backend, which nothing here changes after loading.
            tokenizer = copy.copy(base)
            prov = TokenizerProvenance(
                model_name=model_name,
                source=f"offline:{recipe.package}=={recipe.version}",
                files=dict(files),
                vocab_size=len(tokenizer),
                note=recipe.note,
            )
    tokenizer.cookbook_provenance = prov
    return tokenizer


def provenance(tokenizer: Tokenizer) -> TokenizerProvenance:
    """What a tokenizer from :func:`get_tokenizer` was built from."""
    prov = getattr(tokenizer, "cookbook_provenance", None)
    if prov is None:
        raise TokenizerError("tokenizer was not loaded through cookbook.tokenizers.get_tokenizer")
    return prov


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose behaviour decides token ids."""
    return {name: importlib.metadata.version(name) for name in ("transformers", "tokenizers")}


__all__ = [
    "RECIPES",
    "Tokenizer",
    "TokenizerProvenance",
    "TokenizerSource",
    "family_for",
    "file_digests",
    "get_tokenizer",
    "library_versions",
    "offline_directory",
    "provenance",
]
