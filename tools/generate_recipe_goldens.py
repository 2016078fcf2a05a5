"""Regenerate golden/recipes/ from the pinned reference's supervised loop (never in CI).

Runs inside a virtualenv with ``tinker-cookbook==0.5.8`` and our package (``--no-deps``). For
each case the reference's own dataset builder and ``supervised.train.main`` run, with
``tinker.ServiceClient`` replaced by our :class:`~cookbook.backends.fake.FakeServiceClient`
(recording every client call) and the tokenizer name registered to our offline Llama 3
tokenizer directory. What the reference does is *observed*, not re-derived: the dataset order
comes from wrapping ``SupervisedDatasetFromHFDataset.get_batch``/``set_epoch`` (rows carry a
``row_id`` column the reference's map function never reads), the LR schedule from the reference's
own function checked against the learning rates its loop sent, the calls from the recorder and
the metrics/checkpoints from the files the loop wrote. Layers are described in
:mod:`cookbook.parity.recipe`. Files are written atomically, the manifest last.

Usage: python tools/generate_recipe_goldens.py [--golden golden] [--only NAME ...]
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import chz
import datasets
import tinker
from tinker_cookbook.recipes.chat_sl.chat_datasets import NoRobotsBuilder
from tinker_cookbook.renderers import TrainOnWhat
from tinker_cookbook.supervised import train as ref_train
from tinker_cookbook.supervised.data import (
    FromConversationFileBuilder,
    SupervisedDatasetFromHFDataset,
)
from tinker_cookbook.supervised.types import ChatDatasetBuilderCommonConfig
from tinker_cookbook.utils.lr_scheduling import compute_schedule_lr_multiplier

from cookbook.data.sources import (
    EXAMPLE_CONVERSATIONS_DISTRIBUTION,
    EXAMPLE_CONVERSATIONS_PATH,
    NO_ROBOTS,
    example_conversations_path,
    file_digest,
    read_conversations_jsonl,
)
from cookbook.digests import datum_to_json
from cookbook.parity import golden as g
from cookbook.parity import recipe as r
from cookbook.parity.rl_golden import RL_MANIFEST_REGENERATE, RL_PREFIX

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_no_robots_sample import DEFAULT_OUT as NO_ROBOTS_SAMPLE
from make_no_robots_sample import write_sample
from reference_harness import MODEL, RENDERER, patched, prepare_reference, run_on_fake

CONVERSATIONS_TEST_SIZE = 16
FAULT_STEP = 5
"""The resume layer crashes run 1 at this step's forward_backward (after the step-2 save)."""


@dataclass(frozen=True)
class Case:
    name: str
    dataset: str
    """``conversations_file`` (the wheel's example file) or ``no_robots`` (the local sample)."""
    max_length: int
    resume: bool
    batch_size: int = 4
    num_epochs: int = 2
    eval_every: int = 3
    save_every: int = 2
    learning_rate: float = 2e-4
    lr_schedule: str = "linear"
    lora_rank: int = 32
    train_on_what: str = "all_assistant_messages"
    test_size: int = CONVERSATIONS_TEST_SIZE
    """Rows a conversations file holds out for evals (no_robots has its own test split)."""


CASES = (
    Case("conversations_len256", "conversations_file", 256, resume=True),
    Case("conversations_len48", "conversations_file", 48, resume=False),
    Case("no_robots_len256", "no_robots", 256, resume=True),
    Case("no_robots_len48", "no_robots", 48, resume=False),
    # specs/sl_basic.yaml exactly as it runs offline: the declared fallback file, no test split.
    Case(
        "sl_basic_offline",
        "conversations_file",
        32768,
        resume=False,
        batch_size=128,
        num_epochs=1,
        eval_every=8,
        save_every=20,
        test_size=0,
    ),
)


def _with_row_ids(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**row, "row_id": index} for index, row in enumerate(rows)]


@dataclass
class Source:
    """One case's data: a builder factory for the reference plus the provenance to record."""

    rows: dict[str, list[dict[str, Any]]]
    """Source rows in file order: ``all`` for a conversations file (the reference splits it
    itself), ``train`` and ``test`` for no_robots."""
    provenance: dict[str, Any]
    scratch: Path

    def builder(self, case: Case) -> Any:
        common = ChatDatasetBuilderCommonConfig(
            model_name_for_tokenizer=MODEL,
            renderer_name=RENDERER,
            max_length=case.max_length,
            batch_size=case.batch_size,
            train_on_what=TrainOnWhat(case.train_on_what),
        )
        if case.dataset == "no_robots":
            return NoRobotsBuilder(common_config=common)
        path = self.scratch / "conversations_with_row_ids.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in _with_row_ids(self.rows["all"])))
        return FromConversationFileBuilder(
            common_config=common,
            file_path=str(path),
            test_size=case.test_size,
            shuffle_seed=0,
        )

    def load_dataset(self, path: str, *args: Any, **kwargs: Any) -> datasets.DatasetDict:
        """Stands in for ``datasets.load_dataset`` inside the reference's NoRobotsBuilder."""
        if path != NO_ROBOTS or args or kwargs:
            raise AssertionError(f"unexpected load_dataset({path!r}, {args}, {kwargs})")
        return datasets.DatasetDict(
            {
                split: datasets.Dataset.from_list(_with_row_ids(self.rows[split]))
                for split in ("train", "test")
            }
        )


def conversations_source(scratch: Path) -> Source:
    path = example_conversations_path()
    return Source(
        rows={"all": read_conversations_jsonl(path)},
        provenance={
            "builder": "conversations_file",
            "distribution": f"{EXAMPLE_CONVERSATIONS_DISTRIBUTION}=="
            + importlib.metadata.version(EXAMPLE_CONVERSATIONS_DISTRIBUTION),
            "path": EXAMPLE_CONVERSATIONS_PATH,
            "sha256": file_digest(path),
            "test_size": CONVERSATIONS_TEST_SIZE,
            "shuffle_seed": 0,
            "row_ids": "line index in the file (0-based)",
        },
        scratch=scratch,
    )


def no_robots_source(scratch: Path) -> Source:
    paths = write_sample(example_conversations_path(), NO_ROBOTS_SAMPLE)
    return Source(
        rows={split: read_conversations_jsonl(path) for split, path in paths.items()},
        provenance={
            "builder": "no_robots",
            "stands_in_for": NO_ROBOTS,
            "local_copy": NO_ROBOTS_SAMPLE.as_posix(),
            "files": {f"{split}.jsonl": file_digest(path) for split, path in paths.items()},
            "made_by": "tools/make_no_robots_sample.py",
            "row_ids": "line index in the split's file (0-based)",
        },
        scratch=scratch,
    )


@dataclass
class Observed:
    """What the reference's datasets were asked for, in order."""

    events: list[tuple]

    def split(self) -> tuple[list[tuple], list[tuple]]:
        """(train events, test events): the train dataset is the one that gets set_epoch."""
        train_ids = {e[1] for e in self.events if e[0] == "set_epoch"}
        train = [e for e in self.events if e[1] in train_ids]
        test = [e for e in self.events if e[1] not in train_ids]
        return train, test


@contextlib.contextmanager
def observing_datasets() -> Iterator[Observed]:
    observed = Observed([])
    cls = SupervisedDatasetFromHFDataset
    original_get, original_set = cls.get_batch, cls.set_epoch

    def get_batch(self: Any, index: int) -> list[tinker.Datum]:
        batch = original_get(self, index)
        rows = self.shuffle_dataset.select(
            range(index * self.batch_size, (index + 1) * self.batch_size)
        ).to_list()
        row_ids = [row["row_id"] for row in rows]
        messages = [row["messages"] for row in rows]
        observed.events.append(("get_batch", id(self), row_ids, messages, batch))
        return batch

    def set_epoch(self: Any, seed: int = 0) -> None:
        observed.events.append(("set_epoch", id(self), seed))
        original_set(self, seed)

    with patched(cls, "get_batch", get_batch), patched(cls, "set_epoch", set_epoch):
        yield observed


def run_reference(config: Any, state_dir: Path, faults: dict | None = None) -> dict[str, Any]:
    """One ``train.main`` on the fake backend (:func:`run_on_fake`)."""
    return run_on_fake(
        config.log_path, state_dir, lambda: asyncio.run(ref_train.main(config)), faults
    )


def dataset_layers(source: Source, case: Case, observed: Observed) -> tuple[dict, dict]:
    """Layers (a) and (b) from the observed get_batch/set_epoch calls, self-checked."""
    train, test = observed.split()
    epochs: list[list[list[int]]] = []
    seeds = []
    first_batches: list[list[dict]] = []
    source_rows = source.rows.get("train", source.rows.get("all"))
    for event in train:
        if event[0] == "set_epoch":
            epochs.append([])
            seeds.append(event[2])
            continue
        _, _, row_ids, messages, batch = event
        _check_rows(source_rows, row_ids, messages)
        epochs[-1].append(row_ids)
        if len(first_batches) < 3:
            first_batches.append([datum_to_json(d) for d in batch])
    test_rows = source.rows.get("test", source.rows.get("all"))
    test_batches = []
    for _, _, row_ids, messages, _ in test:
        _check_rows(test_rows, row_ids, messages)
        test_batches.append(row_ids)
    order = {
        "set_epoch_seeds": seeds,
        "n_batches": len(epochs[0]) if epochs else 0,
        "epochs": epochs,
        "test": test_batches,
    }
    return order, {"batches": first_batches}


def _check_rows(source: list[dict], row_ids: list[int], messages: list) -> None:
    for row_id, seen in zip(row_ids, messages, strict=True):
        if source[row_id]["messages"] != seen:
            raise AssertionError(f"row_id {row_id} does not name the row the reference rendered")


def lr_layer(case: Case, total_steps: int, calls: list[dict]) -> list[dict[str, Any]]:
    """Layer (c): the reference's schedule, checked against the LRs its loop sent."""
    rows = r.lr_schedule_layer(
        compute_schedule_lr_multiplier, case.lr_schedule, case.learning_rate, total_steps
    )
    sent = [c["adam"]["learning_rate"] for c in calls if c["call"] == "optim_step"]
    if sent != [row["learning_rate"] for row in rows]:
        raise AssertionError("the loop's learning rates differ from the reference schedule")
    return rows


def make_config(case: Case, source: Source, log_path: Path) -> Any:
    return ref_train.Config(
        log_path=str(log_path),
        model_name=MODEL,
        recipe_name="recipe_sl_basic",
        renderer_name=RENDERER,
        dataset_builder=source.builder(case),
        learning_rate=case.learning_rate,
        lr_schedule=case.lr_schedule,
        num_epochs=case.num_epochs,
        lora_rank=case.lora_rank,
        eval_every=case.eval_every,
        save_every=case.save_every,
    )


def config_record(case: Case, config: Any) -> dict[str, Any]:
    """Every scalar setting of the reference's train.Config (all but paths), plus the data's."""
    values = {name: getattr(config, name) for name in chz.chz_fields(config)}
    scalars = (str, int, float, bool, type(None))
    return {
        **{k: v for k, v in values.items() if k != "log_path" and isinstance(v, scalars)},
        "dataset": {
            "builder": case.dataset,
            "batch_size": case.batch_size,
            "max_length": case.max_length,
            "train_on_what": case.train_on_what,
        },
    }


def resume_layer(case: Case, source: Source, full_calls: list[dict], scratch: Path) -> dict:
    """Layer (e): crash run 1 at FAULT_STEP's forward_backward, then resume in a new client."""
    fb_indices = [i for i, c in enumerate(full_calls) if c["call"] == "forward_backward"]
    fault_index = fb_indices[FAULT_STEP]
    log_path, state_dir = scratch / "resume_log", scratch / "resume_state"
    config = make_config(case, source, log_path)
    first = run_reference(config, state_dir, {fault_index: RuntimeError(r.INJECTED_FAULT)})
    second = run_reference(config, state_dir)
    return {
        "fault": {"call_index": fault_index, "call": "forward_backward", "step": FAULT_STEP},
        "runs": [{"label": "crashes", **first}, {"label": "resumes", **second}],
    }


def generate(case: Case, source: Source, tokenizer_info: dict, reference: dict) -> dict:
    scratch = Path(tempfile.mkdtemp(prefix=f"recipe-{case.name}-", dir=source.scratch))
    config = make_config(case, source, scratch / "log")
    with observing_datasets() as observed:
        run = run_reference(config, scratch / "state")
    order, datums = dataset_layers(source, case, observed)
    total_steps = order["n_batches"] * case.num_epochs
    layers: dict[str, Any] = {
        "dataset_order": order,
        "datums": datums,
        "lr_schedule": lr_layer(case, total_steps, run["calls"]),
        "run": run,
    }
    if case.resume:
        layers["resume"] = resume_layer(case, source, run["calls"], scratch)
    return {
        "schema_version": r.RECIPE_SCHEMA_VERSION,
        "name": case.name,
        "provenance": {
            "reference": reference,
            "tokenizer": tokenizer_info,
            "dataset": (
                {**source.provenance, "test_size": case.test_size}
                if case.dataset == "conversations_file"
                else source.provenance
            ),
            "backend": {
                "module": "cookbook.backends.fake",
                "logprob": "-(1 + ((t*31 + i*7) % 97) / 97) / (1 + 1000 * applied_lr_sum)",
            },
            "case": asdict(case),
        },
        "config": config_record(case, config),
        "layers": layers,
    }


def main(argv: list[str] | None = None) -> int:
    prepared = prepare_reference(argv, __doc__)
    if prepared is None:
        return 2
    args, reference, tokenizer_info, _ = prepared
    out = args.golden / "recipes"
    cases = [c for c in CASES if args.only is None or c.name in args.only]
    with tempfile.TemporaryDirectory(prefix="recipe-goldens-") as tmp:
        sources = {
            "conversations_file": conversations_source(Path(tmp)),
            "no_robots": no_robots_source(Path(tmp)),
        }
        loader = sources["no_robots"].load_dataset
        goldens = {}
        with patched(datasets, "load_dataset", loader):
            for case in cases:
                goldens[case.name] = generate(
                    case, sources[case.dataset], tokenizer_info, reference
                )
                print(f"{case.name}: {len(goldens[case.name]['layers']['run']['calls'])} calls")
    for name, record in goldens.items():
        g.write_atomic(out / f"{name}.json", g.dump(record))
    wanted = {f"{c.name}.json" for c in CASES}

    def ours(name: str) -> bool:
        return not name.startswith(RL_PREFIX)  # rl_* are tools/generate_rl_goldens.py's

    for stale in sorted(out.glob("*.json")):
        if ours(stale.name) and stale.name not in wanted and stale.name != "manifest.json":
            stale.unlink()
            print(f"removed unused recipe golden {stale}")
    header = {"schema_version": r.RECIPE_SCHEMA_VERSION, "regenerate": RL_MANIFEST_REGENERATE}
    g.update_manifest(out, ours, header, reference)
    print(f"wrote {len(goldens)} recipe goldens and {out / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
