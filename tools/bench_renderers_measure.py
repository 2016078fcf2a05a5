"""The measuring half of ``tools/bench_renderers.py``: the conversations, the renderers built as
parity builds them, the checks that ours and the reference agree, and the timed rounds.

Why variants repeat: a batch of 64 conversations renders or encodes in ~10 ms, and on a shared
2-core machine a 10 ms run is mostly the scheduler's noise: two runs of the same code moved the
batch-vs-bare ratio by up to 50%. The variants compared with each other therefore share one run
per round, on the same conversations as every other variant: ``ours_batch``, ``baseline`` and
``baseline_encode_batch_fast`` in one (``BATCH``), ``reference`` and ``ours_per_conversation``
in another (``PER_CONVERSATION``: one pass of ours took ~11 ms, and its ratio to the reference
moved by 0.5x between runs when each had a run of its own). Each group's variants are called
in turn, again and again, until the run does ``batch_round_seconds`` of work
(``calls_per_round``, calibrated once per group on CPU time and reported), each call timed on
its own, so the variants of a group see the same moments of the machine's load. CPU seconds
(this process, all threads) are recorded beside wall for every run: the Rust encode is
multi-threaded in both ours and bare, so when another job takes a core the wall ratio moves
while the CPU ratio (the work each does) hardly does.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_timing import calls_per_round, time_rounds

BATCH = ("ours_batch", "baseline", "baseline_encode_batch_fast")
PER_CONVERSATION = ("reference", "ours_per_conversation")
REPEATED = (BATCH, PER_CONVERSATION)
"""The groups of variants called in turn, again and again, until each group's shared run
lasts ``--batch-round-seconds`` of CPU time."""


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


@dataclass
class Measurement:
    """One renderer's timed rounds and what the report says about how they were taken."""

    wall: dict[str, list[float]]
    """Wall seconds per call, one entry per round, for every variant."""
    cpu: dict[str, list[float]]
    """Process CPU seconds (all threads) per call for the same runs."""
    calls: dict[str, int]
    """Back-to-back calls per run (1 for the variants in no group of ``REPEATED``)."""
    tokens: dict[str, int]
    """Tokens one call of each variant produces."""
    about: dict[str, Any]
    """Tokenizer, image processor, renderer options and data figures for the report."""


def measure(
    renderer_name: str,
    spec: BenchSpec,
    conversations: list[list[dict]],
    recipe_rows: list[list[dict]],
    args: argparse.Namespace,
) -> Measurement:
    """Verify, then time, one renderer: ours (per conversation and batched), the reference and
    bare batch encoding of the same text, in rotating rounds.

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
    from cookbook.renderers.encoding import drop_memoised_texts
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
        # Each pass as on new data: no message body memoised by the pass before.
        drop_memoised_texts(our_tokenizer)
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
    tokens = dict.fromkeys(variants, total_tokens)
    tokens["baseline"] = tokens["baseline_encode_batch_fast"] = baseline_tokens
    recipe_tokens = sum(d.model_input.length for d in recipe_datums)
    tokens["sl_recipe_rows_reference"] = tokens["sl_recipe_rows_ours"] = recipe_tokens

    def sweep(group: tuple[str, ...]) -> Callable[[], None]:
        def call_each() -> None:
            for name in group:
                variants[name]()

        return call_each

    together = {
        group: calls_per_round(sweep(group), args.batch_round_seconds) for group in REPEATED
    }
    cpu: dict[str, list[float]] = {}
    wall = time_rounds(variants, args.rounds, cpu, warm_up=False, collect=True, together=together)

    contents = [m["content"] for conversation in conversations for m in conversation]
    about = {
        "model_name": model_name,
        "train_on_what": str(our_mode),
        "tokenizer": {
            "ours": tokenizers.provenance(our_tokenizer).to_json(),
            "reference_loaded_from": ref_source,
            "baseline": baseline_note,
        },
        "image_processor": None if processor is None else processor.cookbook_provenance,
        "renderer_options": options,
        "data": {
            "source": "tinker_cookbook/example_data/conversations.jsonl",
            "generator": "make_conversations (tools/bench_renderers_measure.py)",
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
    }
    counts = dict.fromkeys(variants, 1)
    for group, calls in together.items():
        counts.update(dict.fromkeys(group, calls))
    return Measurement(wall, cpu, counts, tokens, about)
