"""Layered recipe parity: our data pipeline and loop against the reference's sl_basic goldens.

Every golden in golden/recipes/ records what tinker-cookbook 0.5.8 did on the fake backend:
(a) dataset order, (b) the first batches' datums, (c) the LR schedule, (d) the client calls,
metrics and checkpoints of a whole run, (e) a crashed run and its resume. Ours must reproduce
each layer; a failure names the first differing layer and item.

With ``checkpoint_semantics: reference`` the match is exact in every layer. Our default,
``exact_resume``, differs in exactly the way golden/recipes/DIVERGENCES.md declares, and
:func:`exact_resume_expectation` applies that declaration to the reference's record.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from cookbook.backends.fake import CallRecorder, FakeServiceClient
from cookbook.digests import datum_to_json
from cookbook.parity import recipe as r
from cookbook.parity.rl_golden import RL_PREFIX
from cookbook.specs.recipe import Backend, CheckpointSemantics, DatasetBuilder, RecipeSpec
from cookbook.supervised.checkpoints import last_checkpoint, read_checkpoints
from cookbook.supervised.recipe import resolve_data
from cookbook.supervised.schedule import lr_multiplier
from cookbook.supervised.train import ResumePoint, SupervisedTrainer
from cookbook.tokenizers import get_tokenizer

pytestmark = pytest.mark.parity

ROOT = Path(__file__).resolve().parents[1]
GOLDENS = sorted(
    p
    for p in (ROOT / "golden" / "recipes").glob("*.json")
    if p.stem != "manifest" and not p.name.startswith(RL_PREFIX)  # RL: test_rl_parity.py
)
# Only some cases record an interrupted run and its resume (layer e).
RESUME_GOLDENS = [p for p in GOLDENS if "resume" in json.loads(p.read_text("utf-8"))["layers"]]


@pytest.fixture(scope="module", params=GOLDENS, ids=lambda p: p.stem)
def golden(request: pytest.FixtureRequest) -> dict[str, Any]:
    return r.load_recipe_golden(request.param)


def spec_for(golden: dict[str, Any], semantics: CheckpointSemantics) -> RecipeSpec:
    """Our recipe spec for the configuration the golden was recorded with."""
    config, source = golden["config"], golden["provenance"]["dataset"]
    dataset = {key: config["dataset"][key] for key in ("batch_size", "max_length", "train_on_what")}
    if source["builder"] == "conversations_file":
        dataset.update(
            builder="conversations_file",
            package_file={"distribution": "tinker-cookbook", "path": source["path"]},
            test_size=source["test_size"],
            shuffle_seed=source["shuffle_seed"],
        )
    else:
        dataset.update(builder="no_robots", path=str(ROOT / source["local_copy"]))
    fields = [
        "model_name",
        "recipe_name",
        "renderer_name",
        "learning_rate",
        "lr_schedule",
        "num_epochs",
        "lora_rank",
        "save_every",
        "eval_every",
        "ttl_seconds",
        "adam_beta1",
        "adam_beta2",
        "adam_eps",
        "max_steps",
        "submit_ahead",
    ]
    return RecipeSpec.model_validate(
        {
            "kind": "recipe",
            "version": 1,
            "name": golden["name"],
            "backend": "fake",
            "dataset": dataset,
            "checkpoint_semantics": semantics,
            **{name: config[name] for name in fields},
        }
    )


def _data(spec: RecipeSpec):
    return resolve_data(ROOT / "golden" / "recipes", spec, spec.renderer_name)


def _run(
    spec: RecipeSpec, log_dir: Path, state_dir: Path, faults=None, resume: bool = False
) -> dict[str, Any]:
    """One run of our loop on the fake backend; returns what *this* run recorded/appended."""
    log_dir.mkdir(parents=True, exist_ok=True)
    metrics_file = log_dir / "metrics.jsonl"
    metrics_before = len(r.read_jsonl(metrics_file)) if metrics_file.exists() else 0
    checkpoints_before = len(read_checkpoints(log_dir))
    client = FakeServiceClient(state_dir=state_dir, recorder=CallRecorder(), faults=faults)
    data = _data(spec)
    trainer = SupervisedTrainer(
        spec, spec.renderer_name, client, data.train, data.test, _tokenizer(spec), log_dir
    )
    record = last_checkpoint(log_dir) if resume else None
    point = (
        ResumePoint(
            record["epoch"], record["batch"], record["elapsed_tokens"], record["state_path"]
        )
        if record
        else None
    )
    try:
        trainer.run(point)
    except RuntimeError as exc:
        assert faults and r.INJECTED_FAULT in str(exc)
    return {
        "calls": client.recorder.calls,
        "metrics": (r.read_jsonl(metrics_file) if metrics_file.exists() else [])[metrics_before:],
        "checkpoints": read_checkpoints(log_dir)[checkpoints_before:],
    }


def _tokenizer(spec: RecipeSpec):
    return get_tokenizer(spec.model_name)


def test_goldens_exist() -> None:
    assert len(GOLDENS) >= 4 and RESUME_GOLDENS


def test_dataset_order(golden: dict[str, Any]) -> None:
    data = _data(spec_for(golden, CheckpointSemantics.REFERENCE))
    seeds = golden["layers"]["dataset_order"]["set_epoch_seeds"]
    epochs = []
    for seed in seeds:
        data.train.set_epoch(seed=seed)
        epochs.append([data.train.batch_row_ids(i) for i in range(len(data.train))])
    test = [data.test.batch_row_ids(i) for i in range(len(data.test))] if data.test else []
    actual = {"epochs": epochs, "test": test}
    assert r.compare_layer(golden, "dataset_order", actual) is None, r.compare_layer(
        golden, "dataset_order", actual
    )


def test_first_batches_datums(golden: dict[str, Any]) -> None:
    data = _data(spec_for(golden, CheckpointSemantics.REFERENCE))
    data.train.set_epoch(seed=0)
    n = len(golden["layers"]["datums"]["batches"])
    actual = {"batches": [[datum_to_json(d) for d in data.train.get_batch(i)] for i in range(n)]}
    found = r.compare_layer(golden, "datums", actual)
    assert found is None, found


def test_lr_schedule(golden: dict[str, Any]) -> None:
    spec = spec_for(golden, CheckpointSemantics.REFERENCE)
    total = len(golden["layers"]["lr_schedule"])
    actual = r.lr_schedule_layer(lr_multiplier, spec.lr_schedule, spec.learning_rate, total)
    found = r.compare_layer(golden, "lr_schedule", actual)
    assert found is None, found


def test_run_with_reference_checkpoint_semantics(golden: dict[str, Any], tmp_path: Path) -> None:
    spec = spec_for(golden, CheckpointSemantics.REFERENCE)
    found = r.compare_layer(golden, "run", _run(spec, tmp_path / "log", tmp_path / "state"))
    assert found is None, found


@pytest.mark.parametrize("path", RESUME_GOLDENS, ids=lambda p: p.stem)
def test_resume_with_reference_checkpoint_semantics(path: Path, tmp_path: Path) -> None:
    golden = r.load_recipe_golden(path)
    spec = spec_for(golden, CheckpointSemantics.REFERENCE)
    log, state = tmp_path / "log", tmp_path / "state"
    runs = [
        _run(spec, log, state, faults=r.resume_faults(golden)),
        _run(spec, log, state, resume=True),
    ]
    found = r.compare_layer(golden, "resume", {"runs": runs})
    assert found is None, found


# -- the declared divergence -------------------------------------------------------------------


def exact_resume_expectation(run: dict[str, Any], n_batches: int) -> dict[str, Any]:
    """The reference's run record, rewritten by the declared divergence (DIVERGENCES.md #1):
    each periodic save (save_state + save_weights_for_sampler, named after its step ``s``)
    moves to right after step ``s``'s optim_step, and its record names the batch after ``s``.
    Nothing else changes: same calls otherwise, same metrics, same paths and token counts."""
    calls = [dict(c) for c in run["calls"]]
    periodic = {"save_state", "save_weights_for_sampler"}
    saves: dict[int, list[dict]] = {}
    kept = []
    for call in calls:
        if call["call"] in periodic and call.get("name") != "final":
            saves.setdefault(int(call["name"]), []).append(call)
        else:
            kept.append(call)
    reordered, optim_steps = [], 0
    for call in kept:
        reordered.append(call)
        if call["call"] == "optim_step":
            reordered.extend(saves.pop(optim_steps, []))
            optim_steps += 1
    assert not saves, f"saves left unplaced: {sorted(saves)}"
    checkpoints = copy.deepcopy(run["checkpoints"])
    for row in checkpoints:
        if row["name"] != "final":
            row["epoch"], row["batch"] = divmod(
                row["epoch"] * n_batches + row["batch"] + 1, n_batches
            )
    return {"calls": reordered, "metrics": run["metrics"], "checkpoints": checkpoints}


def test_exact_resume_differs_only_as_declared(golden: dict[str, Any], tmp_path: Path) -> None:
    spec = spec_for(golden, CheckpointSemantics.EXACT_RESUME)
    actual = _run(spec, tmp_path / "log", tmp_path / "state")
    n_batches = golden["layers"]["dataset_order"]["n_batches"]
    expected = {"layers": {"run": exact_resume_expectation(golden["layers"]["run"], n_batches)}}
    found = r.compare_layer({**golden, **expected}, "run", actual)
    assert found is None, found
    # ...and wherever a periodic checkpoint is taken, the declaration is not vacuous: the
    # reference's own record does not match.
    if any(row["name"] != "final" for row in golden["layers"]["run"]["checkpoints"]):
        assert r.compare_layer(golden, "run", actual) is not None


def test_sl_basic_spec_is_the_configuration_of_its_golden() -> None:
    """`cookbook-run specs/sl_basic.yaml` offline (the declared fallback dataset) is exactly the
    configuration golden/recipes/sl_basic_offline.json was recorded with, so the layer tests
    above cover the shipped spec itself, not just a look-alike."""
    from cookbook.specs import load_spec

    # On the fake backend, as the golden was recorded: the local profile's overlay is off.
    shipped = load_spec(ROOT / "specs" / "sl_basic.yaml", ["backend=fake"])
    golden = r.load_recipe_golden(ROOT / "golden" / "recipes" / "sl_basic_offline.json")
    recorded = spec_for(golden, shipped.checkpoint_semantics)
    fallback = shipped.dataset.offline_fallback
    assert fallback is not None and fallback.package_file is not None
    offline = shipped.model_copy(
        update={
            "dataset": shipped.dataset.model_copy(
                update={
                    "builder": DatasetBuilder.CONVERSATIONS_FILE,
                    "package_file": fallback.package_file,
                    "test_size": fallback.test_size,
                    "shuffle_seed": fallback.shuffle_seed,
                    "offline_fallback": None,
                }
            ),
            "backend": Backend.FAKE,
        }
    )
    # Not part of the reference's configuration: naming, and what only our runner uses.
    ignore = {"name", "log_path", "seed", "local", "final_sample", "tinker", "evals"}
    assert offline.model_dump(exclude=ignore) == recorded.model_dump(exclude=ignore)
