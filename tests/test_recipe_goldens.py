"""Recipe goldens (golden/recipes/): intact, consistent with first principles, and comparable.

The goldens record what the reference's sl_basic loop did on the fake backend. Here they are
checked against things derived independently: HF ``Dataset.shuffle(seed)`` is
``np.random.default_rng(seed).permutation`` (so the dataset order can be recomputed), the linear
schedule is ``lr * (1 - step / total)``, and the first steps' ``train_mean_nll`` follows from the
recorded datums and the fake's documented formula. And the comparator must name the first
differing layer and item.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from tinker import types

from cookbook.backends.fake import fake_logprobs
from cookbook.data.sources import example_conversations_path, file_digest
from cookbook.digests import datum_digest
from cookbook.exceptions import GoldenError
from cookbook.parity import recipe as r
from cookbook.parity.rl_golden import RL_PREFIX

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "golden" / "recipes"
NAMES = [
    "conversations_len256",
    "conversations_len48",
    "no_robots_len256",
    "no_robots_len48",
    "sl_basic_offline",
]


@pytest.fixture(scope="module", params=NAMES)
def golden(request) -> dict:
    return r.load_recipe_golden(RECIPES / f"{request.param}.json")


def _batches(order: list[int], size: int) -> list[list[int]]:
    return [order[i : i + size] for i in range(0, len(order) - size + 1, size)]


def _datum(record: dict) -> types.Datum:
    return types.Datum(
        model_input=types.ModelInput(
            chunks=[types.EncodedTextChunk(tokens=c) for c in record["model_input"]]
        ),
        loss_fn_inputs={
            "target_tokens": types.TensorData(data=record["target_tokens"], dtype="int64"),
            "weights": types.TensorData(data=record["weights"], dtype="float32"),
        },
    )


def test_the_manifest_lists_every_recipe_golden_with_its_hash() -> None:
    manifest = json.loads((RECIPES / "manifest.json").read_text("utf-8"))
    on_disk = {p.name: file_digest(p) for p in RECIPES.glob("*.json") if p.name != "manifest.json"}
    assert manifest["files"] == on_disk
    supervised = [name for name in on_disk if not name.startswith(RL_PREFIX)]  # RL: rl_golden
    assert sorted(supervised) == sorted(f"{name}.json" for name in NAMES)


def test_the_dataset_order_is_the_hf_shuffle_of_the_source(golden: dict) -> None:
    batch = golden["config"]["dataset"]["batch_size"]
    provenance = golden["provenance"]["dataset"]
    if provenance["builder"] == "conversations_file":
        # shuffle(seed=0) -> take(test_size) / skip(test_size); one test batch of all of it.
        assert provenance["sha256"] == file_digest(example_conversations_path())
        shuffled = np.random.default_rng(0).permutation(128)
        # No test split at all when test_size is 0 (the reference checks test_size > 0).
        test = [shuffled[: provenance["test_size"]].tolist()] if provenance["test_size"] else []
        train = shuffled[provenance["test_size"] :]
    else:
        # NoRobotsBuilder: train.shuffle(seed=0); test kept in order, batched like train.
        for name, digest in provenance["files"].items():
            assert file_digest(ROOT / provenance["local_copy"] / name) == digest
        train = np.random.default_rng(0).permutation(40)
        test = _batches(list(range(12)), batch)
    # The loop calls set_epoch(seed=epoch) before every epoch, epoch 0 included.
    epochs = [
        _batches(train[np.random.default_rng(e).permutation(len(train))].tolist(), batch)
        for e in range(golden["config"]["num_epochs"])
    ]
    order = golden["layers"]["dataset_order"]
    assert order["epochs"] == epochs
    assert order["test"] == test


def test_the_lr_schedule_is_linear_decay_without_warmup(golden: dict) -> None:
    rows = golden["layers"]["lr_schedule"]
    total = len(rows)
    config = golden["config"]
    assert total == golden["layers"]["dataset_order"]["n_batches"] * config["num_epochs"]
    lr = config["learning_rate"]
    for row in rows:
        assert row["learning_rate"] == pytest.approx(lr * (1 - row["step"] / total), rel=1e-12)


def test_the_first_steps_nll_follows_from_the_datums_and_the_fake_model(golden: dict) -> None:
    """Ties layers (b), (c) and (d) together, and the goldens to today's fake formula."""
    layers = golden["layers"]
    applied = 0.0
    for step, batch in enumerate(layers["datums"]["batches"]):
        weighted = total_weight = 0.0
        for record in batch:
            logprobs = fake_logprobs(record["target_tokens"], 0, applied).astype(np.float64)
            weights = np.asarray(record["weights"], dtype=np.float32).astype(np.float64)
            weighted -= float(logprobs @ weights)
            total_weight += float(weights.sum())
        metrics = layers["run"]["metrics"][step]
        assert metrics["train_mean_nll"] == pytest.approx(weighted / total_weight, rel=1e-6)
        applied += layers["lr_schedule"][step]["learning_rate"]


def test_the_recorded_datum_digests_are_those_of_the_recorded_datums(golden: dict) -> None:
    layers = golden["layers"]
    sent = [c["datums"] for c in layers["run"]["calls"] if c["call"] == "forward_backward"]
    for batch, digests in zip(layers["datums"]["batches"], sent, strict=False):
        canonical = [
            json.dumps(record, sort_keys=True, separators=(",", ":")).encode() for record in batch
        ]
        assert digests == [hashlib.sha256(text).hexdigest() for text in canonical]
        assert digests == [datum_digest(_datum(record)) for record in batch]


def test_truncation_caps_every_datum_below_max_length(golden: dict) -> None:
    max_length = golden["config"]["dataset"]["max_length"]
    for batch in golden["layers"]["datums"]["batches"]:
        for record in batch:
            length = sum(len(chunk) for chunk in record["model_input"])
            assert length == len(record["target_tokens"]) == len(record["weights"])
            assert length <= max_length - 1


def test_the_resume_layer_restarts_from_the_last_saved_state() -> None:
    resume = r.load_recipe_golden(RECIPES / "conversations_len256.json")["layers"]["resume"]
    crashed, resumed = resume["runs"]
    assert (
        crashed["calls"][-1]["fault"] and len(crashed["calls"]) == resume["fault"]["call_index"] + 1
    )
    last_state = crashed["checkpoints"][-1]["state_path"]
    assert [c["call"] for c in resumed["calls"][:2]] == [
        "get_training_run_by_tinker_path",
        "create_training_client_from_state_with_optimizer",
    ]
    assert resumed["calls"][1]["path"] == last_state
    assert resumed["metrics"][0]["step"] == crashed["checkpoints"][-1]["batch"]


def test_the_no_robots_sample_is_what_the_tool_makes() -> None:
    spec = importlib.util.spec_from_file_location(
        "make_no_robots_sample", ROOT / "tools" / "make_no_robots_sample.py"
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    from cookbook.data.sources import read_conversations_jsonl

    splits = tool.sample_splits(read_conversations_jsonl(example_conversations_path()))
    for split, rows in splits.items():
        path = ROOT / "tests" / "data" / "no_robots_sample" / f"{split}.jsonl"
        assert path.read_text("utf-8") == tool.jsonl(rows)
    assert (len(splits["train"]), len(splits["test"])) == (40, 12)


# -- the comparator ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base() -> dict:
    return r.load_recipe_golden(RECIPES / "conversations_len256.json")


def test_an_identical_run_has_no_difference(base: dict) -> None:
    assert r.first_difference(base, copy.deepcopy(base["layers"])) is None


def test_a_changed_target_token_names_batch_datum_and_position(base: dict) -> None:
    datums = copy.deepcopy(base["layers"]["datums"])
    expected = datums["batches"][0][2]["target_tokens"][17]
    datums["batches"][0][2]["target_tokens"][17] = expected + 1
    assert r.compare_layer(base, "datums", datums) == (
        f"layer (b) datums: batch 0 datum 2 target_tokens[17]: "
        f"expected {expected}, got {expected + 1}"
    )


def test_a_swapped_row_names_epoch_batch_and_row(base: dict) -> None:
    order = copy.deepcopy(base["layers"]["dataset_order"])
    batch = order["epochs"][1][3]
    batch[1], batch[2] = batch[2], batch[1]
    assert r.compare_layer(base, "dataset_order", order) == (
        f"layer (a) dataset_order: epoch 1 batch 3 row 1: expected {batch[2]}, got {batch[1]}"
    )
    order["epochs"][1] = order["epochs"][1][:-1]
    assert r.compare_layer(base, "dataset_order", order) == (
        "layer (a) dataset_order: epoch 1: expected 28 batches, got 27"
    )


def test_metrics_agree_to_float32_precision_only(base: dict) -> None:
    run = copy.deepcopy(base["layers"]["run"])
    nll = run["metrics"][4]["train_mean_nll"]
    run["metrics"][4]["train_mean_nll"] = nll * (1 + 1e-7)
    run["metrics"][4]["time/total"] = 1.5  # timings are never compared
    assert r.compare_layer(base, "run", run) is None
    run["metrics"][4]["train_mean_nll"] = nll * 1.001
    message = r.compare_layer(base, "run", run)
    assert message is not None
    assert message.startswith("layer (d) run: metrics step 4 train_mean_nll: expected ")


def test_a_missing_call_and_a_changed_learning_rate_are_named(base: dict) -> None:
    run = copy.deepcopy(base["layers"]["run"])
    steps = [i for i, c in enumerate(run["calls"]) if c["call"] == "optim_step"]
    run["calls"][steps[1]]["adam"]["learning_rate"] = 2e-4
    assert r.compare_layer(base, "run", run) == (
        f"layer (d) run: call {steps[1]} (optim_step) adam.learning_rate: "
        "expected 0.00019642857142857144, got 0.0002"
    )
    run = copy.deepcopy(base["layers"]["run"])
    del run["calls"][-1]
    total = len(base["layers"]["run"]["calls"])
    assert r.compare_layer(base, "run", run) == (
        f"layer (d) run: expected {total} client calls, got {total - 1}"
    )


def test_first_difference_reports_the_earliest_layer(base: dict) -> None:
    actual = copy.deepcopy(base["layers"])
    actual["run"]["checkpoints"][0]["name"] = "000003"
    actual["lr_schedule"][5]["learning_rate"] *= 2
    message = r.first_difference(base, actual)
    assert message is not None and message.startswith("layer (c) lr_schedule: step 5 ")
    del actual["lr_schedule"]
    assert r.first_difference(base, actual) == (
        'layer (d) run: checkpoint 0 (000002) name: expected "000002", got "000003"'
    )


def test_a_resumed_run_difference_names_the_run(base: dict) -> None:
    resume = copy.deepcopy(base["layers"]["resume"])
    resume["runs"][1]["checkpoints"][0]["elapsed_tokens"] += 1
    message = r.compare_layer(base, "resume", resume)
    assert message is not None
    assert message.startswith("layer (e) resume: run 2 (resumes): checkpoint 0 (000002) ")


def test_a_corrupted_recipe_golden_is_a_one_line_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"schema_version": 1,\n "name": ', "utf-8")
    with pytest.raises(GoldenError, match=r"broken.json:2: corrupted recipe golden"):
        r.load_recipe_golden(broken)
    broken.write_text(json.dumps({"schema_version": 99}), "utf-8")
    with pytest.raises(GoldenError, match="name: missing field"):
        r.load_recipe_golden(broken)
