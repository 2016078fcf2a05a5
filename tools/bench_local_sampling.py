"""Local backend sampling throughput vs a naive ``model.generate`` loop, same model and prompts.

Both variants sample from the same stand-in (``LocalModelConfig()`` defaults: a 4-layer,
256-wide Llama with the real Llama 3 vocabulary of 128,256 tokens) and the same LoRA adapter,
at temperature 1 with no filtering, ``--max-tokens`` new tokens for each of ``--samples``
samples of each prompt (no stop token, so both produce exactly the same number of tokens):

* ``local``: :class:`cookbook.backends.local.LocalSamplingClient` ``sample`` (KV cache, logits
  of the last position only, the prompt's cache computed once per request, the request's
  samples decoded together: one LM-head product per step for all of them).
* ``naive``: what one writes first with transformers: one ``model.generate(do_sample=True)``
  call per sample on the training model (which holds the same adapter).

Before timing, both must produce the same greedy continuation of the first prompt (same model,
same logits), so the speed-up cannot come from computing something else. Throughput is timed
in one process, in rounds whose order alternates, after a warm-up round; each variant's median
round gives sampled tokens/s.

    python tools/bench_local_sampling.py --output reports/bench/local_sampling.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_local_backend as bench
import torch
from tinker import types

from cookbook.backends.local import LocalModelConfig, LocalServiceClient
from cookbook.tokenizers import get_tokenizer
from cookbook.versions import package_versions

MODEL_NAME = bench.MODEL_NAME
TARGET_SPEEDUP = bench.TARGET_SPEEDUP
PROMPTS = [
    "What is 17 + 25? Answer with a number.",
    "Write a haiku about the sea.",
    "Explain in one sentence why the sky is blue.",
    "List three prime numbers greater than 100.",
]


class Local:
    def __init__(self, sampler: object, samples: int, max_tokens: int) -> None:
        self.sampler, self.samples, self.max_tokens = sampler, samples, max_tokens

    def run(self, prompts: list[list[int]], seed: int = 0, greedy: bool = False) -> list:
        params = types.SamplingParams(
            max_tokens=self.max_tokens, temperature=0.0 if greedy else 1.0, seed=seed
        )
        out = []
        for tokens in prompts:
            response = self.sampler.sample(
                types.ModelInput.from_ints(tokens), 1 if greedy else self.samples, params
            ).result()
            out.extend(list(s.tokens) for s in response.sequences)
        return out


class Naive:
    def __init__(self, model: torch.nn.Module, samples: int, max_tokens: int) -> None:
        self.model, self.samples, self.max_tokens = model, samples, max_tokens

    def run(self, prompts: list[list[int]], seed: int = 0, greedy: bool = False) -> list:
        torch.manual_seed(seed)
        out = []
        for tokens in prompts:
            ids = torch.tensor([tokens])
            for _ in range(1 if greedy else self.samples):
                with torch.no_grad():
                    generated = self.model.generate(
                        input_ids=ids,
                        attention_mask=torch.ones_like(ids),
                        do_sample=not greedy,
                        temperature=1.0,
                        top_k=0,
                        top_p=1.0,
                        max_new_tokens=self.max_tokens,
                        min_new_tokens=self.max_tokens,
                        pad_token_id=0,
                    )
                out.append(generated[0, len(tokens) :].tolist())
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--samples", type=int, default=4, help="samples per prompt")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    config = LocalModelConfig()
    tokenizer = get_tokenizer(MODEL_NAME, "offline")
    prompts = [tokenizer.encode(text) for text in PROMPTS]
    with tempfile.TemporaryDirectory() as tmp:
        service = LocalServiceClient(Path(tmp), config, bench.SEED, tokenizer=tokenizer)
        training = service.create_lora_training_client(MODEL_NAME, rank=bench.RANK).result()
        sampler = training.save_weights_and_get_sampling_client().result()
        variants = {
            "local": Local(sampler, args.samples, args.max_tokens),
            "naive": Naive(training._model, args.samples, args.max_tokens),
        }
        greedy = {name: v.run(prompts[:1], greedy=True) for name, v in variants.items()}
        if greedy["local"] != greedy["naive"]:
            raise SystemExit(f"the variants disagree on a greedy continuation: {greedy}")
        times = bench.time_rounds(
            {name: (lambda v=v: v.run(prompts)) for name, v in variants.items()}, args.rounds
        )
    tokens = len(prompts) * args.samples * args.max_tokens
    summary = bench.throughput_summary(times, tokens)
    throughput, speedup = summary["tokens_per_s"], summary["speedup_tokens_per_s"]
    result = {
        "benchmark": "local_backend_sampling_throughput",
        **summary,
        "workload": {
            "prompts": PROMPTS,
            "prompt_tokens": [len(p) for p in prompts],
            "samples_per_prompt": args.samples,
            "max_tokens": args.max_tokens,
            "sampled_tokens_per_round": tokens,
            "rounds": args.rounds,
            "temperature": 1.0,
            "lora_rank": bench.RANK,
        },
        "model": {"config": config.model_dump(mode="json"), "seed": bench.SEED},
        "machine": bench.machine_info(),
        "versions": package_versions(bench.PACKAGES),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"local {throughput['local']:.0f} tok/s, naive generate {throughput['naive']:.0f} tok/s: "
        f"{speedup:.2f}x (target {TARGET_SPEEDUP}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
