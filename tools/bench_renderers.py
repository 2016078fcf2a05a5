"""Renderer throughput: ours vs tinker-cookbook 0.5.8 vs bare batch tokenization, one process.

Why one process: the reference and ours then share the interpreter, the CPU, the tokenizer
files and the conversations, so the ratios measure the renderers and nothing else. Variants are
timed in rounds, the order rotating each round, and each variant's median is reported, so drift
on a shared machine hits every variant alike.

Variants (all for ``build_supervised_example(messages, ALL_ASSISTANT_MESSAGES)``):

* ``reference``: the ``tinker_cookbook.renderers`` renderer of the same name, one conversation
  at a time.
* ``ours_per_conversation``: ``cookbook.renderers``, one conversation at a time.
* ``ours_batch``: ``cookbook.renderers.batch.build_supervised_examples_batch`` over them all.
* ``baseline``: ``backend_tokenizer.encode_batch(texts, add_special_tokens=False)`` of each
  conversation's full rendering decoded back to one string: the floor a renderer that has to
  tokenize the same text can hope for. ``baseline_encode_batch_fast`` (no offsets) is reported
  beside it because the batch renderer uses that call; the targets use ``baseline``.

Before timing, every conversation is checked: ours and the reference must give the same token
ids, chunk boundaries, weight values and weight dtype, and the batch API must equal ours per
conversation exactly; any difference aborts the run.

Each renderer is benched with the tokenizer of its parity spec (specs/renderers/). Targets
(issue 16): one conversation at a time >= 2x the reference; the batch API <= 1.3x bare batch
encoding. ``sl_datum_reference`` / ``sl_datum_ours`` time the sl recipe's data path over every
conversation (datums checked equal first): the reference's ``conversation_to_datum`` one at a
time, ours as the sl datasets call it, ``conversations_to_datums`` per batch of
``--datum-batch-size`` rows.

While iterating, ``--renderer NAME`` (repeatable), ``--conversations`` and ``--rounds`` make a
run short; the figures in the README come from the defaults.

Run from the repo root in a venv with tinker-cookbook==0.5.8, ``pip install --no-deps -e .``
and the offline tokenizer assets (``nox -s bench`` does all of it)::

    HF_HUB_OFFLINE=1 python tools/bench_renderers.py --renderer all \
        --output reports/bench/renderers.json
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np

from cookbook.versions import package_versions

RENDERER = "llama3"
TARGET_SPEEDUP_VS_REFERENCE = 2.0
TARGET_SLOWDOWN_VS_BASELINE = 1.3
PACKAGES = ("tinker-cookbook", "transformers", "tokenizers", "tinker", "torch", "numpy", "cookbook")


def make_conversations(rows: list[list[dict[str, Any]]], n: int, seed: int) -> list[list[dict]]:
    """``n`` text-only conversations built deterministically from the example rows.

    Each conversation has 1-4 user/assistant turns (cycling) and, with probability 0.3, one of
    the rows' system prompts. Every user message joins the user texts of two rows drawn at
    random, and its reply joins their two replies, so message texts rarely repeat: a batch
    renderer cannot win by de-duplicating a few hundred strings, as it could if the 128 rows
    were simply cycled. System prompts do repeat, as they do in real data.
    """
    pairs = []
    systems = []
    for messages in rows:
        users = [m["content"] for m in messages if m["role"] == "user"]
        replies = [m["content"] for m in messages if m["role"] == "assistant"]
        pairs.extend(zip(users, replies, strict=False))
        systems.extend(m["content"] for m in messages if m["role"] == "system")
    rng = random.Random(seed)
    conversations = []
    for i in range(n):
        conversation = []
        if systems and rng.random() < 0.3:
            conversation.append({"role": "system", "content": rng.choice(systems)})
        for _ in range(1 + i % 4):
            (u1, a1), (u2, a2) = rng.sample(pairs, 2)
            conversation.append({"role": "user", "content": f"{u1} {u2}"})
            conversation.append({"role": "assistant", "content": f"{a1}\n\n{a2}"})
        conversations.append(conversation)
    return conversations


def load_rows() -> list[list[dict[str, Any]]]:
    import tinker_cookbook

    path = Path(tinker_cookbook.__file__).parent / "example_data" / "conversations.jsonl"
    lines = path.read_text("utf-8").splitlines()
    return [json.loads(line)["messages"] for line in lines if line.strip()]


def machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "packages": package_versions(PACKAGES),
        "env": {
            key: os.environ.get(key)
            for key in ("TOKENIZERS_PARALLELISM", "RAYON_NUM_THREADS", "OMP_NUM_THREADS")
        },
    }


def fail(message: str) -> NoReturn:
    print(f"bench_renderers: FAILED: {message}", file=sys.stderr)
    raise SystemExit(1)


def verify(
    conversations: list[list[dict]],
    reference: list[tuple[Any, Any]],
    ours: list[tuple[Any, np.ndarray]],
    batch: list[tuple[Any, np.ndarray]],
) -> None:
    """Abort unless all three agree on every conversation (ids, chunks, weights, dtype)."""
    if not len(conversations) == len(reference) == len(ours) == len(batch):
        fail("variants returned different numbers of examples")
    for i, ((ref_input, ref_w), (our_input, our_w), (b_input, b_w)) in enumerate(
        zip(reference, ours, batch, strict=True)
    ):
        ref_ids, our_ids = ref_input.to_ints(), our_input.to_ints()
        if ref_ids != our_ids:
            at = next(
                (k for k, (a, b) in enumerate(zip(ref_ids, our_ids, strict=False)) if a != b), None
            )
            fail(
                f"conversation {i}: token ids differ from the reference (first at {at}; "
                f"lengths {len(ref_ids)} vs {len(our_ids)})"
            )
        if [c.length for c in ref_input.chunks] != [c.length for c in our_input.chunks]:
            fail(f"conversation {i}: chunk boundaries differ from the reference")
        ref_weights = ref_w.numpy()
        if ref_weights.dtype != our_w.dtype or not np.array_equal(ref_weights, our_w):
            fail(
                f"conversation {i}: weights differ from the reference "
                f"({ref_weights.dtype} {ref_weights.tolist()} vs {our_w.dtype} {our_w.tolist()})"
            )
        if b_input != our_input:
            fail(f"conversation {i}: batch ModelInput differs from per-conversation")
        if b_w.dtype != our_w.dtype or not np.array_equal(b_w, our_w):
            fail(f"conversation {i}: batch weights differ from per-conversation")


def verify_datums(reference: list[Any], ours: list[Any]) -> None:
    """Abort unless the sl recipe's datums agree: inputs, targets and weights."""
    for i, (ref, our) in enumerate(zip(reference, ours, strict=True)):
        if ref.model_input.to_ints() != our.model_input.to_ints():
            fail(f"conversation {i}: datum inputs differ from the reference")
        for key in ("target_tokens", "weights"):
            a = np.asarray(ref.loss_fn_inputs[key].to_numpy())
            b = np.asarray(our.loss_fn_inputs[key].to_numpy())
            if a.dtype != b.dtype or not np.array_equal(a, b):
                fail(f"conversation {i}: datum {key} differ from the reference")


def time_rounds(variants: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds per run of each variant, one run per variant per round, order rotating."""
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            gc.collect()
            start = time.perf_counter()
            variants[name]()
            samples[name].append(time.perf_counter() - start)
    return samples


def bench_renderer(
    renderer_name: str, model_name: str, conversations: list[list[dict]], args: argparse.Namespace
) -> dict[str, Any]:
    """Verify, then time, one renderer: ours (per conversation and batched), the reference and
    bare batch encoding of the same text, in rotating rounds; returns the JSON report."""
    from tinker_cookbook import renderers as ref_renderers
    from tinker_cookbook import tokenizer_utils
    from tinker_cookbook.supervised.data import conversation_to_datum as ref_to_datum

    from cookbook import renderers, tokenizers
    from cookbook.renderers.batch import build_supervised_examples_batch
    from cookbook.supervised.common import conversations_to_datums

    directory = tokenizers.offline_directory(model_name)
    our_tokenizer = tokenizers.get_tokenizer(model_name, tokenizers.TokenizerSource.OFFLINE)
    ref_tokenizer = tokenizer_utils.get_tokenizer(str(directory))
    ours = renderers.get_renderer(renderer_name, our_tokenizer)
    reference = ref_renderers.get_renderer(renderer_name, ref_tokenizer)
    our_mode = renderers.TrainOnWhat.ALL_ASSISTANT_MESSAGES
    ref_mode = ref_renderers.TrainOnWhat.ALL_ASSISTANT_MESSAGES

    def run_reference() -> list:
        return [reference.build_supervised_example(m, ref_mode) for m in conversations]

    def run_ours() -> list:
        return [ours.build_supervised_example(m, our_mode) for m in conversations]

    def run_batch() -> list:
        return build_supervised_examples_batch(ours, conversations, our_mode)

    def run_reference_datums() -> list:
        return [ref_to_datum(m, reference, args.max_length, ref_mode) for m in conversations]

    def run_our_datums() -> list:
        # As the sl datasets render (cookbook/data/builders.py): one batch at a time.
        size = args.datum_batch_size
        return [
            datum
            for start in range(0, len(conversations), size)
            for datum in conversations_to_datums(
                conversations[start : start + size], ours, args.max_length, our_mode
            )
        ]

    # Untimed first runs: warm every cache and produce the outputs that are checked.
    ref_out, our_out, batch_out = run_reference(), run_ours(), run_batch()
    verify(conversations, ref_out, our_out, batch_out)
    verify_datums(run_reference_datums(), run_our_datums())
    total_tokens = sum(model_input.length for model_input, _ in our_out)

    backend = our_tokenizer.backend_tokenizer
    texts = [our_tokenizer.decode(model_input.to_ints()) for model_input, _ in our_out]
    baseline_encodings = backend.encode_batch(texts, add_special_tokens=False)
    baseline_tokens = sum(len(e.ids) for e in baseline_encodings)
    baseline_same_ids = sum(
        e.ids == model_input.to_ints()
        for e, (model_input, _) in zip(baseline_encodings, our_out, strict=True)
    )
    del baseline_encodings

    variants: dict[str, Callable[[], object]] = {
        "reference": run_reference,
        "ours_per_conversation": run_ours,
        "ours_batch": run_batch,
        "sl_datum_reference": run_reference_datums,
        "sl_datum_ours": run_our_datums,
        "baseline": lambda: backend.encode_batch(texts, add_special_tokens=False),
        "baseline_encode_batch_fast": lambda: backend.encode_batch_fast(
            texts, add_special_tokens=False
        ),
    }
    token_counts = dict.fromkeys(variants, total_tokens)
    token_counts["baseline"] = token_counts["baseline_encode_batch_fast"] = baseline_tokens
    samples = time_rounds(variants, args.rounds)

    results: dict[str, dict[str, Any]] = {}
    for name, seconds in samples.items():
        median = statistics.median(seconds)
        results[name] = {
            "median_seconds": median,
            "min_seconds": min(seconds),
            "tokens_per_second": token_counts[name] / median,
            "seconds": seconds,
            "tokens": token_counts[name],
        }
    ref_s = results["reference"]["median_seconds"]
    base_s = results["baseline"]["median_seconds"]
    base_fast_s = results["baseline_encode_batch_fast"]["median_seconds"]
    ratios = {}
    for name in ("ours_per_conversation", "ours_batch"):
        seconds = results[name]["median_seconds"]
        ratios[name] = {
            "speedup_vs_reference": ref_s / seconds,
            "slowdown_vs_baseline": seconds / base_s,
            "slowdown_vs_baseline_encode_batch_fast": seconds / base_fast_s,
        }
    ratios["ours_per_conversation"]["meets_targets"] = (
        ratios["ours_per_conversation"]["speedup_vs_reference"] >= TARGET_SPEEDUP_VS_REFERENCE
    )
    ratios["ours_batch"]["meets_targets"] = (
        ratios["ours_batch"]["slowdown_vs_baseline"] <= TARGET_SLOWDOWN_VS_BASELINE
    )
    datum_s = results["sl_datum_ours"]["median_seconds"]
    # The same ratios from each variant's fastest round: on a loaded machine the least
    # disturbed run of each; the targets use the medians.
    best = {name: min(result["seconds"]) for name, result in results.items()}
    ratios["from_fastest_rounds"] = {
        "ours_per_conversation_speedup_vs_reference": best["reference"]
        / best["ours_per_conversation"],
        "ours_batch_speedup_vs_reference": best["reference"] / best["ours_batch"],
        "ours_batch_slowdown_vs_baseline": best["ours_batch"] / best["baseline"],
        "sl_datum_speedup_vs_reference": best["sl_datum_reference"] / best["sl_datum_ours"],
    }
    ratios["sl_datum_ours"] = {
        "speedup_vs_reference": results["sl_datum_reference"]["median_seconds"] / datum_s,
        "tokens_per_second": results["sl_datum_ours"]["tokens_per_second"],
        "reference_tokens_per_second": results["sl_datum_reference"]["tokens_per_second"],
    }

    contents = [m["content"] for conversation in conversations for m in conversation]
    report = {
        "benchmark": "renderers.build_supervised_example",
        "renderer": renderer_name,
        "model_name": model_name,
        "train_on_what": str(our_mode),
        "machine": machine_info(),
        "tokenizer": {
            "ours": tokenizers.provenance(our_tokenizer).to_json(),
            "reference_loaded_from": str(directory),
        },
        "data": {
            "source": "tinker_cookbook/example_data/conversations.jsonl",
            "generator": "make_conversations (tools/bench_renderers.py)",
            "seed": args.seed,
            "n_conversations": len(conversations),
            "n_messages": len(contents),
            "n_distinct_message_texts": len(set(contents)),
            "total_tokens": total_tokens,
            "baseline_tokens": baseline_tokens,
            "baseline_conversations_with_identical_ids": baseline_same_ids,
        },
        "rounds": args.rounds,
        "timing": "wall clock (perf_counter) per full pass over all conversations; gc.collect() "
        "before each; order rotates per round; median over rounds",
        "verified": "token ids, chunk lengths, weights and dtype equal to the reference for every "
        "conversation; batch output equal to per-conversation output",
        "variants": results,
        "ratios": ratios,
        "targets": {
            "speedup_vs_reference_at_least": TARGET_SPEEDUP_VS_REFERENCE,
            "slowdown_vs_baseline_at_most": TARGET_SLOWDOWN_VS_BASELINE,
            "met_by": [name for name, r in ratios.items() if r.get("meets_targets")],
        },
    }
    print(
        f"{renderer_name}: {len(conversations)} conversations, {total_tokens} tokens, "
        f"{args.rounds} rounds, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"{'variant':<28}{'median s':>10}{'tokens/s':>14}{'vs ref':>9}{'vs base':>9}")
    for name, result in results.items():
        seconds = result["median_seconds"]
        print(
            f"{name:<28}{seconds:>10.4f}{result['tokens_per_second']:>14,.0f}"
            f"{ref_s / seconds:>8.2f}x{seconds / base_s:>8.2f}x"
        )
    met = report["targets"]["met_by"]
    print(
        f"targets (per conversation >= {TARGET_SPEEDUP_VS_REFERENCE}x reference, batch <= "
        f"{TARGET_SLOWDOWN_VS_BASELINE}x baseline) met by: {', '.join(met) or 'none'}"
    )
    return report


def renderer_models(spec_dir: Path) -> list[tuple[str, str]]:
    """(renderer, tokenizer model) of every renderer-cases spec: the pairs parity checks."""
    from cookbook.specs import RendererCasesSpec, load_spec

    pairs = {}
    for path in sorted(spec_dir.glob("*.yaml")):
        spec = load_spec(path)
        if isinstance(spec, RendererCasesSpec):
            pairs.setdefault(spec.renderer, spec.model_name)
    return sorted(pairs.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=Path("reports/bench/renderers.json"))
    parser.add_argument(
        "--conversations",
        type=int,
        default=1024,
        help="conversations per renderer (default 1024; fewer for a quick look while iterating)",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--max-length", type=int, default=32768, help="conversation_to_datum's max_length"
    )
    parser.add_argument(
        "--datum-batch-size",
        type=int,
        default=128,
        help="rows per batch of the sl data path (sl_basic's batch_size)",
    )
    parser.add_argument(
        "--renderer",
        action="append",
        help=f"renderer to bench (repeatable; default {RENDERER}); 'all' for every renderer "
        "with parity specs in specs/renderers/",
    )
    args = parser.parse_args(argv)
    # Both packages warn once per ALL_ASSISTANT_MESSAGES example without the extension property;
    # thousands of identical lines would bury the table (and time the terminal, not renderers).
    logging.disable(logging.WARNING)
    if args.conversations < 1:
        parser.error("--conversations must be at least 1")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    known = dict(renderer_models(Path("specs/renderers")))
    names = args.renderer or [RENDERER]
    if "all" in names:
        names = sorted(known)
    unknown = [name for name in names if name not in known]
    if unknown:
        parser.error(f"no parity spec for {unknown}; known: {', '.join(sorted(known))}")
    conversations = make_conversations(load_rows(), args.conversations, args.seed)
    reports = [bench_renderer(name, known[name], conversations, args) for name in names]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    document = reports[0] if len(reports) == 1 else {"renderers": reports}
    args.output.write_text(json.dumps(document, indent=2) + "\n", "utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
