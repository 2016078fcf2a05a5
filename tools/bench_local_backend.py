"""Local backend training throughput vs a naive transformers loop, on the same model and data.

Both variants train the same stand-in (``LocalModelConfig()`` defaults: a 4-layer, 256-wide
Llama with the real Llama 3 vocabulary of 128,256 tokens) with the same LoRA adapter
initialisation, on the same batches: the reference wheel's example conversations rendered by
our llama3 renderer (``conversation_to_datum``, all assistant messages, ``--max-length``), cut
into batches of ``--batch-size``. One training step is ``forward_backward(cross_entropy)`` +
``optim_step(AdamW)``.

* ``local``: :class:`cookbook.backends.local.LocalServiceClient` - per-datum trunk without
  padding, LM head only at positions with non-zero weight.
* ``naive``: what one writes first with transformers: right-padded batches with an attention
  mask, ``model(...).logits`` over every position, ``log_softmax`` + gather,
  ``-(weights * logprobs).sum()``, ``backward``, ``torch.optim.AdamW``.

Throughput is timed in one process, in rounds whose order alternates, after a warm-up round;
each variant's median round gives tokens/s (input tokens of the datums, padding not counted).
Before timing, the first step's loss of both variants must agree (same model, same data), so
the speed-up cannot come from computing something else. Time to first step (cold: building the
model included) and peak RSS (``resource.getrusage``) are measured per variant in a fresh
subprocess each, since a process's peak memory cannot be split between two variants.

    python tools/bench_local_backend.py --output reports/bench/local_backend.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch
import torch.nn.functional as F
from tinker import types

from cookbook.backends.local import LocalModelConfig, LocalServiceClient
from cookbook.backends.local.model import LoraSettings, adapter_parameters, attach_lora
from cookbook.data.sources import example_conversations_path, read_conversations_jsonl
from cookbook.renderers import TrainOnWhat, get_renderer
from cookbook.supervised.common import conversation_to_datum
from cookbook.tokenizers import get_tokenizer
from cookbook.versions import package_versions

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_timing import time_rounds

MODEL_NAME = "meta-llama/Llama-3.1-8B-Instruct"
TARGET_SPEEDUP = 2.0
RANK = 32
SEED = 0
ADAM = types.AdamParams(learning_rate=1e-4, beta1=0.9, beta2=0.95, eps=1e-8)
PACKAGES = ("torch", "transformers", "peft", "tinker", "numpy", "cookbook")


def make_batches(batch_size: int, max_length: int, n_batches: int) -> list[list[types.Datum]]:
    tokenizer = get_tokenizer(MODEL_NAME, "offline")
    renderer = get_renderer("llama3", tokenizer)
    rows = read_conversations_jsonl(example_conversations_path())
    need = batch_size * n_batches
    if len(rows) < need:
        raise SystemExit(f"only {len(rows)} conversations, need {need}")
    data = [
        conversation_to_datum(
            row["messages"], renderer, max_length, TrainOnWhat.ALL_ASSISTANT_MESSAGES
        )
        for row in rows[:need]
    ]
    return [data[i : i + batch_size] for i in range(0, need, batch_size)]


class LocalVariant:
    def __init__(self, state_dir: Path, config: LocalModelConfig, vocab_size: int) -> None:
        service = LocalServiceClient(state_dir, config, SEED, vocab_size=vocab_size)
        self.client = service.create_lora_training_client(MODEL_NAME, rank=RANK).result()

    def step(self, batch: list[types.Datum]) -> float:
        out = self.client.forward_backward(batch, "cross_entropy").result()
        self.client.optim_step(ADAM).result()
        return out.metrics["loss:sum"]


class NaiveVariant:
    """Full logits over right-padded batches; same base weights and adapter init as local."""

    def __init__(self, config: LocalModelConfig, vocab_size: int) -> None:
        from cookbook.backends.local.runtime import build_base_model

        torch.set_num_threads(config.threads or os.cpu_count() or 1)
        base = build_base_model(config, vocab_size, SEED)
        lora = LoraSettings(rank=RANK, alpha=config.lora_alpha, seed=SEED)
        self.model = attach_lora(base, lora)
        params = list(adapter_parameters(self.model).values())
        self.optimizer = torch.optim.AdamW(
            params, lr=ADAM.learning_rate, betas=(ADAM.beta1, ADAM.beta2), eps=ADAM.eps
        )

    def step(self, batch: list[types.Datum]) -> float:
        width = max(d.model_input.length for d in batch)
        ids = torch.zeros(len(batch), width, dtype=torch.long)
        mask = torch.zeros(len(batch), width, dtype=torch.long)
        targets = torch.zeros(len(batch), width, dtype=torch.long)
        weights = torch.zeros(len(batch), width)
        for row, datum in enumerate(batch):
            n = datum.model_input.length
            ids[row, :n] = torch.tensor(datum.model_input.to_ints())
            mask[row, :n] = 1
            targets[row, :n] = torch.tensor(datum.loss_fn_inputs["target_tokens"].data)
            weights[row, :n] = torch.tensor(datum.loss_fn_inputs["weights"].data)
        logits = self.model(input_ids=ids, attention_mask=mask).logits
        logprobs = F.log_softmax(logits, dim=-1).gather(-1, targets[..., None])[..., 0]
        loss = -(weights * logprobs).sum()
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())


def make_variant(name: str, config: LocalModelConfig, vocab_size: int, tmp: Path) -> Any:
    if name == "local":
        return LocalVariant(tmp, config, vocab_size)
    return NaiveVariant(config, vocab_size)


def throughput_summary(times: dict[str, list[float]], tokens: int) -> dict[str, Any]:
    """``local`` vs ``naive``: tokens/s of each variant's median round and their ratio."""
    medians = {name: statistics.median(t) for name, t in times.items()}
    throughput = {name: tokens / m for name, m in medians.items()}
    speedup = throughput["local"] / throughput["naive"]
    return {
        "target_speedup": TARGET_SPEEDUP,
        "speedup_tokens_per_s": speedup,
        "meets_target": speedup >= TARGET_SPEEDUP,
        "tokens_per_s": throughput,
        "median_round_s": medians,
        "round_times_s": times,
    }


def cold_start(name: str, batches: list[list[types.Datum]], config: LocalModelConfig) -> dict:
    """Run in a fresh subprocess: build everything, first step, then the rest; peak RSS."""
    vocab = len(get_tokenizer(MODEL_NAME, "offline"))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        variant = make_variant(name, config, vocab, Path(tmp))
        variant.step(batches[0])
        first = time.perf_counter() - start
        for batch in batches[1:]:
            variant.step(batch)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"time_to_first_step_s": first, "peak_rss_mib": peak_kib / 1024}


def machine_info() -> dict[str, Any]:
    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else platform.processor()
    )
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batches", type=int, default=4, help="training steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cold", choices=["local", "naive"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    config = LocalModelConfig()
    batches = make_batches(args.batch_size, args.max_length, args.batches)
    if args.cold:
        args.output.write_text(json.dumps(cold_start(args.cold, batches, config)))
        return 0

    # Cold starts first: a child inherits the parent's peak RSS high-water mark across
    # fork + exec, so the children must start while this process is still small.
    cold = {}
    for name in ("local", "naive"):
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            command = [sys.executable, __file__, "--output", out.name, "--cold", name]
            command += ["--batch-size", str(args.batch_size), "--max-length", str(args.max_length)]
            command += ["--batches", str(args.batches)]
            subprocess.run(command, check=True)
            cold[name] = json.loads(Path(out.name).read_text())
    vocab = len(get_tokenizer(MODEL_NAME, "offline"))
    with tempfile.TemporaryDirectory() as tmp:
        variants = {
            name: make_variant(name, config, vocab, Path(tmp)) for name in ("local", "naive")
        }
        first_loss = {name: v.step(batches[0]) for name, v in variants.items()}
        if abs(first_loss["local"] - first_loss["naive"]) > 1e-4 * abs(first_loss["naive"]):
            raise SystemExit(f"the variants disagree on the first step's loss: {first_loss}")
        times = time_rounds(
            {name: (lambda v=v: [v.step(b) for b in batches]) for name, v in variants.items()},
            args.rounds,
        )
    tokens = sum(d.model_input.length for batch in batches for d in batch)
    padded = sum(len(b) * max(d.model_input.length for d in b) for b in batches)
    weighted = sum(
        sum(1 for w in d.loss_fn_inputs["weights"].data if w) for b in batches for d in b
    )
    summary = throughput_summary(times, tokens)
    throughput, speedup = summary["tokens_per_s"], summary["speedup_tokens_per_s"]
    result = {
        "benchmark": "local_backend_training_throughput",
        **summary,
        "first_step_loss": first_loss,
        "cold_start": cold,
        "workload": {
            "data": "tinker_cookbook/example_data/conversations.jsonl, llama3 renderer, "
            "all_assistant_messages",
            "batch_size": args.batch_size,
            "max_length": args.max_length,
            "steps_per_round": args.batches,
            "rounds": args.rounds,
            "input_tokens_per_round": tokens,
            "padded_tokens_per_round": padded,
            "weighted_positions_per_round": weighted,
            "lora_rank": RANK,
            "adam": ADAM.model_dump(),
        },
        "model": {"config": config.model_dump(mode="json"), "vocab_size": vocab, "seed": SEED},
        "machine": machine_info(),
        "versions": package_versions(PACKAGES),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"local {throughput['local']:.0f} tok/s, naive {throughput['naive']:.0f} tok/s: "
        f"{speedup:.2f}x (target {TARGET_SPEEDUP}x); cold first step local "
        f"{cold['local']['time_to_first_step_s']:.1f}s / naive "
        f"{cold['naive']['time_to_first_step_s']:.1f}s; peak RSS local "
        f"{cold['local']['peak_rss_mib']:.0f} MiB / naive {cold['naive']['peak_rss_mib']:.0f} MiB"
    )
    return 0 if speedup >= TARGET_SPEEDUP else 1


if __name__ == "__main__":
    sys.exit(main())
