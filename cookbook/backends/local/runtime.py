"""What a local service client and every client it creates share: the stand-in's base weights,
the checkpoint directory, the tokenizer and the seed.

The stand-in is fully determined by its config, the vocabulary size and the seed (random_llama)
or by the packaged GGUF file (smollm2_gguf, :mod:`.pretrained`). Checkpoints record these and a
fingerprint (sha256) of the base weights, so a checkpoint is never loaded onto a different
stand-in - another config, seed, vocabulary, GGUF file, or a torch whose random initialisation
changed - without an error saying so.
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from cookbook.backends.local import checkpoints, pretrained
from cookbook.backends.local.config import ARCHITECTURE, LocalModelConfig, LocalModelKind
from cookbook.exceptions import ConfigurationError


def build_base_model(config: LocalModelConfig, vocab_size: int, seed: int) -> torch.nn.Module:
    """The random_llama stand-in's frozen base weights (a ``LlamaForCausalLM``), identical for
    equal arguments.

    Initialised under a forked RNG, so building a model neither depends on nor disturbs the
    caller's global torch random state.
    """
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


class Runtime:
    def __init__(
        self,
        state_dir: Path,
        config: LocalModelConfig,
        vocab_size: int,
        seed: int,
        tokenizer: Any,
    ) -> None:
        self.state_dir = state_dir
        self.config = config
        self.vocab_size = vocab_size
        self.seed = seed
        self.tokenizer = tokenizer

        if config.kind == LocalModelKind.SMOLLM2_GGUF:
            # Checked now (package installed, tokenizer its own) so a run fails before it
            # writes anything; the weights themselves load on first use.
            pretrained.check_vocabulary(vocab_size)
            self.source: dict[str, Any] | None = pretrained.source_record()
        else:
            self.source = None

    @cached_property
    def base(self) -> torch.nn.Module:
        """Built on first use, so creating a service client costs nothing."""
        if self.source is not None:
            return pretrained.load_smollm2(self.source)
        return build_base_model(self.config, self.vocab_size, self.seed)

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint(self.base)

    def stand_in_record(self) -> dict[str, Any]:
        """What a checkpoint stores to check it is loaded onto the same stand-in."""
        return {
            "config": self.config.model_dump(mode="json"),
            "vocab_size": self.vocab_size,
            "seed": self.seed,
            "base_fingerprint": self.fingerprint,
            **({"source": self.source} if self.source is not None else {}),
        }

    def check_stand_in(self, path: str, record: dict[str, Any]) -> None:
        ours = self.stand_in_record()
        if record != ours:
            differ = sorted(key for key in ours if record.get(key) != ours[key])
            raise ConfigurationError(
                f"{path!r} was trained on another local stand-in model "
                f"(differs in {', '.join(differ)}); load it with the same local model config, "
                "seed and tokenizer"
            )

    def load_checkpoint(self, path: str, kind: str) -> dict[str, Any]:
        """A checkpoint's payload, after checking it was trained on this stand-in."""
        payload = checkpoints.load(path, kind)
        self.check_stand_in(path, payload["stand_in"])
        return payload

    def describe(self) -> dict[str, Any]:
        """What the console banner and config.json say about the stand-in."""
        parameters = sum(p.numel() for p in self.base.parameters())
        if self.source is not None:
            what = (
                f"SmolLM2-135M-Instruct from {self.source['package']} ({self.source['file']}, "
                f"sha256 {self.source['sha256'][:12]}...) dequantised to float32"
            )
        else:
            what = f"LlamaForCausalLM randomly initialised from seed {self.seed}"
        record = self.stand_in_record()
        # The config's architecture fields are a random_llama's; a pretrained stand-in has its
        # own, so the run records those of the network actually built (checkpoints keep the
        # config as given: it is what a resume is checked against).
        built = {name: getattr(self.base.config, name) for name in ARCHITECTURE}
        return {
            "stand_in": f"{self.config.kind}: {what}, {parameters / 1e6:.1f}M parameters, "
            f"vocabulary {self.vocab_size}",
            "parameters": parameters,
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            **record,
            "config": {**record["config"], **built},
        }
