"""Regenerate golden/recipes/rl_*.json from the pinned reference's RL loops (never in CI).

Runs in the reference's virtualenv (tinker-cookbook==0.5.8 with its math-rl extra, our package
``--no-deps``), like tools/generate_recipe_goldens.py: ``tinker.ServiceClient`` is replaced by
our :class:`~cookbook.backends.fake.FakeServiceClient` (recording every call; unseeded samples
give reward mixes, see :mod:`cookbook.backends.fake_rl`) and the model's tokenizer is our
offline Llama 3 directory. For ``rl.train.main`` on the arithmetic env, what the loop does is
*observed* (:mod:`cookbook.parity.rl_observe`): groups, prompts, samples, parsed responses,
rewards, kept groups, advantages and datums per step; then the calls, metrics and checkpoints of
the whole run, and for the resume case a crashed run and its resume. ``recipes/rl_loop.main``
runs on the declared GSM8K stand-in (:func:`cookbook.recipes.math_rl.gsm8k_data.stand_in_rows`)
and is recorded at the call/metrics/checkpoint level. Layers: :mod:`cookbook.parity.rl_golden`.

Usage: PYTHONPATH=$PWD python tools/generate_rl_goldens.py [--golden golden] [--only NAME ...]
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import chz
import datasets
from tinker_cookbook import renderers
from tinker_cookbook.recipes import rl_loop as ref_rl_loop
from tinker_cookbook.recipes.math_rl.arithmetic_env import ArithmeticDatasetBuilder
from tinker_cookbook.rl import train as ref_train

from cookbook.parity import golden as g
from cookbook.parity import recipe as r
from cookbook.parity import rl_golden as rg
from cookbook.parity.rl_observe import observing_rl, rl_step_layers
from cookbook.recipes.math_rl.gsm8k_data import stand_in_rows
from cookbook.tokenizers import TokenizerSource, get_tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_harness import MODEL, RENDERER, patched, prepare_reference, run_on_fake


@dataclass(frozen=True)
class Case:
    name: str
    entry: str
    """``train`` (rl.train.main on the arithmetic env) or ``rl_loop`` (recipes/rl_loop.main)."""
    loss_fn: str = "importance_sampling"
    remove_constant_reward_groups: bool = False
    batch_size: int = 4
    group_size: int = 4
    n_batches: int = 3
    max_tokens: int = 8
    learning_rate: float = 1e-4
    save_every: int = 0
    eval_every: int = 0
    kl_penalty_coef: float = 0.0
    """With a KL reference config on the base model (the fake's untrained logprobs)."""
    fault_step: int | None = None
    """Crash run 1 at this step's forward_backward, then resume from the last checkpoint."""


CASES = (
    Case("rl_arithmetic_is", "train"),
    Case("rl_arithmetic_ppo_filtered", "train", loss_fn="ppo", remove_constant_reward_groups=True),
    Case("rl_arithmetic_resume", "train", n_batches=5, save_every=2, fault_step=3),
    Case("rl_arithmetic_kl", "train", kl_penalty_coef=0.5),
    Case("rl_loop_gsm8k", "rl_loop", batch_size=2, n_batches=3, save_every=2),
)


def make_config(case: Case, log_path: Path) -> Any:
    if case.entry == "rl_loop":
        return ref_rl_loop.Config(
            log_path=str(log_path),
            model_name=MODEL,
            batch_size=case.batch_size,
            group_size=case.group_size,
            learning_rate=case.learning_rate,
            save_every=case.save_every,
            max_tokens=case.max_tokens,
            max_steps=case.n_batches,
        )
    builder = ArithmeticDatasetBuilder(
        batch_size=case.batch_size,
        model_name_for_tokenizer=MODEL,
        renderer_name=RENDERER,
        n_batches=case.n_batches,
        group_size=case.group_size,
    )
    return ref_train.Config(
        learning_rate=case.learning_rate,
        dataset_builder=builder,
        model_name=MODEL,
        recipe_name="rl_arithmetic",
        max_tokens=case.max_tokens,
        log_path=str(log_path),
        renderer_name=RENDERER,
        eval_every=case.eval_every,
        save_every=case.save_every,
        loss_fn=case.loss_fn,
        remove_constant_reward_groups=case.remove_constant_reward_groups,
        kl_penalty_coef=case.kl_penalty_coef,
        kl_reference_config=(
            ref_train.KLReferenceConfig(base_model=MODEL) if case.kl_penalty_coef > 0 else None
        ),
    )


def config_record(case: Case, config: Any) -> dict[str, Any]:
    """Every scalar setting of the reference's config (all but paths) and the dataset's."""
    values = {name: getattr(config, name) for name in chz.chz_fields(config)}
    scalars = (str, int, float, bool, type(None))
    record = {k: v for k, v in values.items() if k != "log_path" and isinstance(v, scalars)}
    if case.entry == "train":
        builder = config.dataset_builder
        record["dataset"] = {name: getattr(builder, name) for name in chz.chz_fields(builder)}
        kl = config.kl_reference_config
        if kl is not None:
            record["kl_reference_config"] = {n: getattr(kl, n) for n in chz.chz_fields(kl)}
    return record


def run_reference(
    case: Case, config: Any, state_dir: Path, faults: dict | None = None
) -> dict[str, Any]:
    """One run on the fake backend. The fake gets our offline tokenizer to see string stop
    sequences (rl_loop's role_colon renderer)."""

    def start() -> None:
        with contextlib.redirect_stderr(io.StringIO()):  # rl_loop's tqdm bars
            if case.entry == "rl_loop":
                ref_rl_loop.main(config)
            else:
                asyncio.run(ref_train.main(config))

    tokenizer = get_tokenizer(MODEL, TokenizerSource.OFFLINE)
    return run_on_fake(config.log_path, state_dir, start, faults, tokenizer)


def resume_layer(case: Case, full_calls: list[dict], scratch: Path) -> dict[str, Any]:
    """Crash run 1 at ``fault_step``'s forward_backward, then resume with a fresh client."""
    fb_indices = [i for i, c in enumerate(full_calls) if c["call"] == "forward_backward"]
    fault_index = fb_indices[case.fault_step]
    config = make_config(case, scratch / "resume_log")
    state_dir = scratch / "resume_state"
    first = run_reference(case, config, state_dir, {fault_index: RuntimeError(r.INJECTED_FAULT)})
    second = run_reference(case, config, state_dir)
    return {
        "fault": {"call_index": fault_index, "call": "forward_backward", "step": case.fault_step},
        "runs": [{"label": "crashes", **first}, {"label": "resumes", **second}],
    }


def parse_with(renderer: Any) -> Any:
    def parse(tokens: list[int]) -> str:
        message, _ = renderer.parse_response(tokens)
        return renderers.get_text_content(message)

    return parse


def generate(case: Case, scratch: Path, renderer: Any, provenance_: dict) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"{case.name}-", dir=scratch))
    config = make_config(case, work / "log")
    layers: dict[str, Any] = {}
    if case.entry == "train":
        with observing_rl(ref_train) as seen:
            run = run_reference(case, config, work / "state")
        layers.update(rl_step_layers(seen, parse_with(renderer)))
    else:
        run = run_reference(case, config, work / "state")
    layers["run"] = run
    if case.fault_step is not None:
        layers["resume"] = resume_layer(case, run["calls"], work)
    return {
        "schema_version": rg.RL_SCHEMA_VERSION,
        "name": case.name,
        "provenance": {**provenance_, "case": asdict(case)},
        "config": config_record(case, config),
        "layers": layers,
    }


@contextlib.contextmanager
def gsm8k_stand_in() -> Any:
    rows = stand_in_rows()

    def load_dataset(path: str, name: str | None = None, **kwargs: Any) -> datasets.DatasetDict:
        if (path, name, kwargs) != ("openai/gsm8k", "main", {}):
            raise AssertionError(f"unexpected load_dataset({path!r}, {name!r}, {kwargs})")
        return datasets.DatasetDict(
            {
                "train": datasets.Dataset.from_list(rows.train),
                "test": datasets.Dataset.from_list(rows.test),
            }
        )

    with patched(datasets, "load_dataset", load_dataset):
        yield rows.source


def main(argv: list[str] | None = None) -> int:
    prepared = prepare_reference(argv, __doc__)
    if prepared is None:
        return 2
    args, reference, tokenizer_info, ref_tokenizer = prepared
    renderer = renderers.get_renderer(RENDERER, ref_tokenizer)
    out = args.golden / "recipes"
    cases = [c for c in CASES if args.only is None or c.name in args.only]
    goldens = {}
    with tempfile.TemporaryDirectory(prefix="rl-goldens-") as tmp, gsm8k_stand_in() as source:
        provenance_ = {
            "reference": reference,
            "tokenizer": tokenizer_info,
            "renderer": RENDERER,
            "gsm8k": {"stands_in_for": "openai/gsm8k", "source": source},
            "backend": {
                "module": "cookbook.backends.fake",
                "sampling": "unseeded draws, cookbook.backends.fake_rl",
                "logprob": "-(1 + ((t*31 + i*7) % 97) / 97) / (1 + 1000 * applied_lr_sum)",
            },
        }
        for case in cases:
            goldens[case.name] = generate(case, Path(tmp), renderer, provenance_)
            print(f"{case.name}: {len(goldens[case.name]['layers']['run']['calls'])} calls")
    for name, record in goldens.items():
        g.write_atomic(out / f"{name}.json", g.dump(record))
    wanted = {f"{c.name}.json" for c in CASES}
    for stale in sorted(out.glob(f"{rg.RL_PREFIX}*.json")):
        if stale.name not in wanted:
            stale.unlink()
            print(f"removed unused RL golden {stale}")
    g.update_manifest(
        out,
        lambda name: name.startswith(rg.RL_PREFIX),
        {"schema_version": r.RECIPE_SCHEMA_VERSION, "regenerate": rg.RL_MANIFEST_REGENERATE},
        reference,
    )
    print(f"wrote {len(goldens)} RL goldens and {out / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
