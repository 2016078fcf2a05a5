"""Which model the local backend trains, and how it builds that model's base weights.

The spec's model (e.g. Llama 3.1 8B) cannot be trained on a 2-core CPU, so the local backend
trains a *stand-in*: by default a small randomly initialised Llama-architecture model that uses
the spec model's real tokenizer (so rendering, token ids and weights are exactly those of the
real model; only the network differs). The stand-in is fully determined by this config, the
vocabulary size and the seed, and checkpoints record a fingerprint of its base weights, so a
checkpoint can never be resumed onto a different stand-in by accident.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cookbook.exceptions import ConfigurationError


class LocalModelKind(StrEnum):
    RANDOM_LLAMA = "random_llama"
    SMOLLM2_GGUF = "smollm2_gguf"


class LocalModelConfig(BaseModel):
    """The local backend's stand-in model and how it runs (embedded in the recipe spec)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: LocalModelKind = Field(
        default=LocalModelKind.RANDOM_LLAMA,
        description="random_llama: a small LlamaForCausalLM initialised from the seed, with "
        "the spec model's tokenizer vocabulary. smollm2_gguf: not implemented yet.",
    )
    hidden_size: Annotated[int, Field(ge=8)] = 256
    num_hidden_layers: Annotated[int, Field(ge=1)] = 4
    num_attention_heads: Annotated[int, Field(ge=1)] = 4
    num_key_value_heads: Annotated[int, Field(ge=1)] = 4
    intermediate_size: Annotated[int, Field(ge=1)] = 688
    max_position_embeddings: Annotated[int, Field(ge=16)] = Field(
        default=4096, description="Longest sequence (prompt + sampled tokens) the model takes."
    )
    dtype: Literal["float32"] = "float32"
    threads: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="torch CPU threads; None means os.cpu_count()."
    )
    lora_alpha: Annotated[float, Field(gt=0)] = Field(
        default=32.0, description="LoRA scaling is lora_alpha / rank (peft's convention)."
    )
    full_logprobs: bool = Field(
        default=False,
        description="cross_entropy returns exact logprobs at every target position. By default "
        "only positions with non-zero weight are scored (the LM head dominates CPU time) and "
        "the others are returned as 0.0.",
    )

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> LocalModelConfig:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        if (self.hidden_size // self.num_attention_heads) % 2:
            raise ValueError("the head size (hidden_size / num_attention_heads) must be even")
        return self


def build_base_model(config: LocalModelConfig, vocab_size: int, seed: int) -> torch.nn.Module:
    """The stand-in's base weights (a ``LlamaForCausalLM``), identical for equal arguments.

    Initialised under a forked RNG, so building a model neither depends on nor disturbs the
    caller's global torch random state.
    """
    if config.kind != LocalModelKind.RANDOM_LLAMA:
        raise ConfigurationError(
            f"local model kind {config.kind.value!r} is not implemented; "
            f"use kind: {LocalModelKind.RANDOM_LLAMA.value}"
        )
    if vocab_size < 2:
        raise ConfigurationError(f"the local model needs a vocabulary, got vocab_size={vocab_size}")
    from transformers import LlamaConfig, LlamaForCausalLM

    llama = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        intermediate_size=config.intermediate_size,
        max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=True,
        use_cache=False,
        attn_implementation="sdpa",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(llama)
    model.requires_grad_(False)
    return model.eval()


def fingerprint(model: torch.nn.Module) -> str:
    """sha256 over the names, shapes and bytes of every weight (tied ones once), in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.named_parameters()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(tensor.detach().contiguous().numpy().data)
    return digest.hexdigest()


def describe(
    config: LocalModelConfig, vocab_size: int, seed: int, model: torch.nn.Module
) -> dict[str, Any]:
    """What the console banner and config.json say about the stand-in."""
    parameters = sum(p.numel() for p in model.parameters())
    return {
        "stand_in": f"{config.kind.value} (LlamaForCausalLM, randomly initialised from seed "
        f"{seed}, {parameters / 1e6:.1f}M parameters)",
        "config": config.model_dump(mode="json"),
        "vocab_size": vocab_size,
        "seed": seed,
        "parameters": parameters,
        "base_fingerprint": fingerprint(model),
        "torch": torch.__version__,
    }
