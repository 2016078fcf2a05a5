"""Layered RL parity: our RL loops against what the reference's did on the same fake backend.

Each golden (golden/recipes/rl_*.json, tools/generate_rl_goldens.py) records one small run of
the reference's ``rl.train.main`` on the arithmetic env (or ``recipes/rl_loop.main`` on the GSM8K
stand-in). Here ours runs from the same case settings (its own defaults for the rest) on a fresh
:class:`~cookbook.backends.fake.FakeServiceClient`, observed the same way
(:mod:`cookbook.parity.rl_observe`), and every layer is compared in data order; a failure names
the first divergent layer and item. Negative controls plant a change in our advantages and in
our grading and check that the diff names those layers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

import cookbook.rl.train as our_train
from cookbook.backends.fake import CallRecorder, FakeServiceClient
from cookbook.cli import main as cli_main
from cookbook.exceptions import GoldenError
from cookbook.logging.ml_log import RunLog
from cookbook.model_info import get_recommended_renderer_name
from cookbook.parity import recipe as r
from cookbook.parity import rl_golden as rg
from cookbook.parity.rl_observe import observing_rl, rl_step_layers
from cookbook.parity.rl_runs import recording_rl_steps, response_parser, write_rl_steps
from cookbook.parity.runs import compare_runs
from cookbook.recipes import rl_loop as our_rl_loop
from cookbook.recipes.math_rl import arithmetic_env
from cookbook.recipes.math_rl.gsm8k_data import stand_in_rows
from cookbook.renderers import get_renderer
from cookbook.tokenizers import get_tokenizer

pytestmark = pytest.mark.parity

ROOT = Path(__file__).resolve().parents[1]
GOLDENS = {p.stem: p for p in sorted((ROOT / "golden" / "recipes").glob(f"{rg.RL_PREFIX}*.json"))}
TRAIN_CASES = [name for name in GOLDENS if not name.startswith("rl_loop")]
SCALARS = (str, int, float, bool, type(None))
MODEL = "meta-llama/Llama-3.1-8B"
"""Every golden's model; the fake decodes samples with its tokenizer, as the generator's did."""


def golden(name: str) -> dict[str, Any]:
    return rg.load_rl_golden(GOLDENS[name])


def _renderer(case_golden: dict) -> Any:
    config = case_golden["config"]
    name = config.get("renderer_name") or config["dataset"]["renderer_name"]
    return get_renderer(name, get_tokenizer(config["model_name"], "offline"))


def _config_record(config: Any) -> dict[str, Any]:
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    record = {k: v for k, v in values.items() if k != "log_path" and isinstance(v, SCALARS)}
    builder = values.get("dataset_builder")
    if builder is not None:
        record["dataset"] = dataclasses.asdict(builder)
    if values.get("kl_reference_config") is not None:
        record["kl_reference_config"] = dataclasses.asdict(values["kl_reference_config"])
    return record


def train_config(case_golden: dict, log_dir: Path) -> our_train.Config:
    """Ours, from the case's settings only: everything else is our own default."""
    case, ref = case_golden["provenance"]["case"], case_golden["config"]
    kl: dict[str, Any] = {}
    if case["kl_penalty_coef"] > 0:
        kl = {
            "kl_penalty_coef": case["kl_penalty_coef"],
            "kl_reference_config": our_train.KLReferenceConfig(**ref["kl_reference_config"]),
        }
    builder = arithmetic_env.ArithmeticDatasetBuilder(
        batch_size=case["batch_size"],
        model_name_for_tokenizer=ref["model_name"],
        renderer_name=ref["renderer_name"],
        n_batches=case["n_batches"],
        group_size=case["group_size"],
    )
    return our_train.Config(
        learning_rate=case["learning_rate"],
        dataset_builder=builder,
        model_name=ref["model_name"],
        max_tokens=case["max_tokens"],
        log_path=str(log_dir),
        renderer_name=ref["renderer_name"],
        recipe_name="rl_arithmetic",
        eval_every=case["eval_every"],
        save_every=case["save_every"],
        loss_fn=case["loss_fn"],
        remove_constant_reward_groups=case["remove_constant_reward_groups"],
        **kl,
    )


def _run(log_dir: Path, run: Any, state_dir: Path, faults: dict | None) -> dict[str, Any]:
    """One run of ours on a fresh fake client: its new calls, metrics and checkpoint rows."""
    recorder = CallRecorder()
    tokenizer = get_tokenizer(MODEL, "offline")
    service = FakeServiceClient(state_dir, recorder, faults, tokenizer=tokenizer)
    names = ("metrics.jsonl", "checkpoints.jsonl")
    before = {name: len(r.read_jsonl(log_dir / name)) for name in names}
    crashed = None
    try:
        run(service)
    except RuntimeError as exc:
        if faults is None:
            raise
        crashed = repr(exc)
    rows = {name: r.read_jsonl(log_dir / name)[before[name] :] for name in names}
    return {
        "calls": recorder.calls,
        "metrics": [r.without_wall_clock(row) for row in rows["metrics.jsonl"]],
        "checkpoints": rows["checkpoints.jsonl"],
        **({"crashed_with": crashed} if faults is not None else {}),
    }


def run_train(case_golden: dict, tmp: Path, faults: dict | None = None, state: str = "state"):
    log_dir = tmp / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    config = train_config(case_golden, log_dir)

    def run(service: FakeServiceClient) -> None:
        asyncio.run(our_train.main(config, service, RunLog(log_dir)))

    with observing_rl(our_train) as seen:
        run_layers = _run(log_dir, run, tmp / state, faults)
    layers = rl_step_layers(seen, response_parser(_renderer(case_golden)))
    return {"config": _config_record(config), **layers, "run": run_layers}


@pytest.mark.parametrize("name", TRAIN_CASES)
def test_every_layer_of_rl_train_matches_the_reference(tmp_path: Path, name: str) -> None:
    expected = golden(name)
    actual = run_train(expected, tmp_path)
    assert rg.first_difference(expected, actual) is None, rg.first_difference(expected, actual)


@pytest.mark.parametrize("name", [n for n in TRAIN_CASES if "resume" in golden(n)["layers"]])
def test_a_crashed_rl_run_resumes_like_the_reference(tmp_path: Path, name: str) -> None:
    expected = golden(name)
    faults = r.resume_faults(expected)
    first = run_train(expected, tmp_path, faults, state="resume_state")["run"]
    second = run_train(expected, tmp_path, state="resume_state")["run"]
    actual = {"runs": [{"label": "crashes", **first}, {"label": "resumes", **second}]}
    found = rg.compare_layer(expected, "resume", actual)
    assert found is None, found


def test_a_planted_advantage_change_is_named_in_the_advantages_layer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = our_train.compute_advantages

    def flipped(groups: Any) -> Any:
        return [-a for a in original(groups)]

    monkeypatch.setattr(our_train, "compute_advantages", flipped)
    expected = golden("rl_arithmetic_is")
    found = rg.first_difference(expected, run_train(expected, tmp_path))
    assert found is not None and found.startswith("layer advantages: step 0 kept group 0 traj 0: ")
    assert "expected -0.05" in found and "got 0.05" in found


def test_a_planted_grading_change_is_named_in_the_rewards_layer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = arithmetic_env.ArithmeticEnv.check_answer
    monkeypatch.setattr(
        arithmetic_env.ArithmeticEnv, "check_answer", lambda self, s: not original(self, s)
    )
    expected = golden("rl_arithmetic_is")
    found = rg.first_difference(expected, run_train(expected, tmp_path))
    assert found is not None and found.startswith("layer rewards: step 0 group 0 total[0]: ")


def run_rl_loop(case_golden: dict, tmp: Path, faults: dict | None = None) -> dict[str, Any]:
    case, ref = case_golden["provenance"]["case"], case_golden["config"]
    log_dir = tmp / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    config = our_rl_loop.Config(
        log_path=str(log_dir),
        model_name=ref["model_name"],
        batch_size=case["batch_size"],
        group_size=case["group_size"],
        learning_rate=case["learning_rate"],
        save_every=case["save_every"],
        max_tokens=case["max_tokens"],
        max_steps=case["n_batches"],
    )
    renderer_name = get_recommended_renderer_name(ref["model_name"])
    renderer = get_renderer(renderer_name, get_tokenizer(ref["model_name"], "offline"))

    def run(service: FakeServiceClient) -> None:
        our_rl_loop.main(config, service, renderer, stand_in_rows(), RunLog(log_dir))

    return {"config": _config_record(config), "run": _run(log_dir, run, tmp / "state", faults)}


@pytest.mark.parametrize("name", [n for n in GOLDENS if n.startswith("rl_loop")])
def test_rl_loop_matches_the_reference(tmp_path: Path, name: str) -> None:
    expected = golden(name)
    found = rg.first_difference(expected, run_rl_loop(expected, tmp_path))
    assert found is None, found


# -- cookbook-run compare on RL runs -----------------------------------------------------------


def rl_run_dir(run_dir: Path) -> Path:
    """An RL run directory as the recipe runner leaves it: config.json, metrics.jsonl and the
    step layers (rl_steps.jsonl)."""
    expected = golden("rl_arithmetic_is")
    run_dir.mkdir(parents=True)
    config = train_config(expected, run_dir)
    RunLog(run_dir).write_config(_config_record(config))
    service = FakeServiceClient(run_dir / "fake_state", tokenizer=get_tokenizer(MODEL, "offline"))
    with recording_rl_steps(run_dir, first_step=0, renderer=_renderer(expected)):
        asyncio.run(our_train.main(config, service, RunLog(run_dir)))
    return run_dir


def test_compare_finds_two_rl_runs_equal_in_every_layer(tmp_path: Path) -> None:
    comparison = compare_runs(rl_run_dir(tmp_path / "a"), rl_run_dir(tmp_path / "b"))
    assert [layer.status for layer in comparison.layers] == ["match"] * 10
    assert [layer.name for layer in comparison.layers][1:-1] == list(rg.LAYERS[1:9])


def test_compare_names_the_first_layer_where_two_rl_runs_differ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    run_a = rl_run_dir(tmp_path / "a")
    original = our_train.compute_advantages
    monkeypatch.setattr(our_train, "compute_advantages", lambda g: [-a for a in original(g)])
    run_b = rl_run_dir(tmp_path / "b")
    html = tmp_path / "compare.html"
    assert cli_main(["compare", str(run_a), str(run_b), "--html", str(html)]) == 1
    out = capsys.readouterr().out
    assert "first difference: layer (8) advantages: step 0 kept group 0 traj 0: expected" in out
    statuses = {layer.name: layer.status for layer in compare_runs(run_a, run_b).layers}
    assert statuses["rewards"] == "match" and statuses["datums"] == "differs"


def test_a_resumed_rl_run_rewrites_its_steps_from_where_it_resumed(tmp_path: Path) -> None:
    rows = [{"step": s, "env_groups": [s]} for s in range(3)]
    write_rl_steps(tmp_path, rows, first_step=0)
    write_rl_steps(tmp_path, [{"step": 1, "env_groups": ["again"]}], first_step=1)
    assert r.read_jsonl(tmp_path / "rl_steps.jsonl") == [
        rows[0],
        {"step": 1, "env_groups": ["again"]},
    ]


def test_the_rl_goldens_are_the_generators_cases() -> None:
    assert sorted(GOLDENS) == [
        "rl_arithmetic_is",
        "rl_arithmetic_kl",
        "rl_arithmetic_ppo_filtered",
        "rl_arithmetic_resume",
        "rl_loop_gsm8k",
    ]
    for name in GOLDENS:
        data = golden(name)
        assert data["provenance"]["reference"]["tinker-cookbook"] == "0.5.8"
        steps = data["layers"].get("advantages")
        # every arithmetic golden has a non-zero advantage: the parity is not vacuous
        assert steps is None or any(a != 0 for step in steps for g in step for a in g)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "corrupted RL golden"),
        ('{"name": "x"}', "schema_version: missing field, not a complete RL golden"),
        (
            '{"schema_version": 9, "name": "x", "provenance": {}, "config": {}, "layers": {}}',
            "schema_version: 9 is not 1",
        ),
        (
            '{"schema_version": 1, "name": "x", "provenance": {}, "config": {}, '
            '"layers": {"mystery": []}}',
            "unknown layer(s) ['mystery']",
        ),
    ],
)
def test_a_broken_rl_golden_is_a_one_line_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rl_x.json"
    path.write_text(text)
    with pytest.raises(GoldenError) as info:
        rg.load_rl_golden(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_cookbook_run_rl_runs_are_compared_layer_by_layer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The RL recipe runner records rl_steps.jsonl; compare names where two runs part."""
    short = ["--set", "backend=fake", "--set", "max_steps=2", "--set", "dataset.batch_size=4"]
    spec = str(ROOT / "specs" / "rl_arithmetic.yaml")
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    assert cli_main([spec, *short, "--log-dir", str(run_a)]) == 0
    original = our_train.compute_advantages
    monkeypatch.setattr(our_train, "compute_advantages", lambda g: [-a for a in original(g)])
    assert cli_main([spec, *short, "--log-dir", str(run_b)]) == 0
    capsys.readouterr()
    html = tmp_path / "compare.html"
    assert cli_main(["compare", str(run_a), str(run_a), "--html", str(html)]) == 0
    assert cli_main(["compare", str(run_a), str(run_b), "--html", str(html)]) == 1
    out = capsys.readouterr().out
    assert "the runs match" in out
    found = (
        r"first difference: layer \(8\) advantages: step 0 kept group \d+ traj \d+: expected -?0"
    )
    assert re.search(found, out), out
