"""The math environments show a model the reference's prompts and score it with its rewards.

golden/rl/envs.json holds, per renderer, the arithmetic dataset's first batches and the GSM8K
dataset over the declared stand-in rows (train shuffled, test in order), as the reference built
them: each group's size and tags, each env's prompt tokens and stop condition, and the reward
and metrics of a fixed set of responses (right, wrong, unterminated, unboxed, ...).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from cookbook.exceptions import ConfigurationError, DataFormatError, DatasetUnavailableError
from cookbook.recipes.math_rl.arithmetic_env import ArithmeticDataset, ArithmeticEnv
from cookbook.recipes.math_rl.gsm8k_data import (
    GSM8K_ROWS,
    STAND_IN,
    STAND_IN_NOTE,
    load_gsm8k,
    stand_in_rows,
)
from cookbook.recipes.math_rl.math_env import (
    Gsm8kDataset,
    Gsm8kDatasetBuilder,
    MathEnv,
    extract_gsm8k_final_answer,
    get_math_dataset_builder,
)
from cookbook.recipes.math_rl.math_grading import grade_answer
from cookbook.renderers import get_renderer
from cookbook.tokenizers import get_tokenizer

pytestmark = pytest.mark.parity

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "rl" / "envs.json"


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    return json.loads(GOLDEN.read_text("utf-8"))


@pytest.fixture(scope="module")
def stand_in():
    return stand_in_rows()


def _dataset(case: dict[str, Any], golden: dict[str, Any], stand_in) -> Any:
    tokenizer = get_tokenizer(golden["model_name"], "offline")
    renderer = get_renderer(case["renderer"], tokenizer)
    if case["dataset"] == "arithmetic":
        return ArithmeticDataset(
            golden["batch_size"],
            renderer,
            golden["group_size"],
            n_batches=2,
            include_fewshot=case["include_fewshot"],
        )
    return Gsm8kDataset(
        golden["batch_size"],
        golden["group_size"],
        renderer,
        convo_prefix=MathEnv.standard_fewshot_prefix(),
        split=case["split"],
        seed=case["seed"],
        rows=stand_in,
    )


def _env_record(env: Any, expected: dict[str, Any]) -> dict[str, Any]:
    """Ours in the golden's shape, stepping the golden's own action tokens."""
    observation, stop = asyncio.run(env.initial_observation())
    steps = []
    for step in expected["steps"]:
        result = asyncio.run(env.step(step["action"]))
        steps.append(
            {
                **step,
                "reward": result.reward,
                "episode_done": result.episode_done,
                "metrics": result.metrics,
            }
        )
    return {
        "question": env.get_question(),
        "reference_answer": env.get_reference_answer(),
        "prompt_tokens": observation.to_ints(),
        "stop_condition": list(stop),
        "steps": steps,
    }


def _first_difference(expected: Any, got: Any, where: str) -> str | None:
    if isinstance(expected, dict) and isinstance(got, dict):
        for key in [*expected, *(k for k in got if k not in expected)]:
            found = _first_difference(expected.get(key), got.get(key), f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(expected, list) and isinstance(got, list) and len(expected) == len(got):
        for i, (e, g) in enumerate(zip(expected, got, strict=True)):
            found = _first_difference(e, g, f"{where}[{i}]")
            if found:
                return found
        return None
    return None if expected == got else f"{where}: expected {expected!r}, got {got!r}"


def test_the_golden_covers_both_datasets_and_renderers(golden: dict[str, Any]) -> None:
    assert {c["dataset"] for c in golden["cases"]} == {"arithmetic", "gsm8k_stand_in"}
    assert {c["renderer"] for c in golden["cases"]} == {"llama3", "role_colon"}
    rewards = {
        step["reward"]
        for case in golden["cases"]
        for groups in case["batches"].values()
        for group in groups
        for env in group["envs"]
        for step in env["steps"]
    }
    assert {1.0, 0.9, 0.0, -0.1} <= rewards


def _check_case(case: dict[str, Any], golden: dict[str, Any], stand_in) -> None:
    dataset = _dataset(case, golden, stand_in)
    if "len" in case:
        assert len(dataset) == case["len"], case["id"]
    for batch, groups in case["batches"].items():
        builders = list(dataset.get_batch(int(batch)))
        assert len(builders) == len(groups), f"{case['id']} batch {batch}"
        for g_index, (builder, expected) in enumerate(zip(builders, groups, strict=True)):
            envs = asyncio.run(builder.make_envs())
            got = {
                "num_envs": len(envs),
                "tags": builder.logging_tags(),
                "envs": [
                    _env_record(env, e)
                    for env, e in zip(envs[: len(expected["envs"])], expected["envs"], strict=True)
                ],
            }
            where = f"{case['id']} batch {batch} group {g_index}"
            assert got == expected, _first_difference(expected, got, where)


@pytest.mark.parametrize("index", range(8))
def test_prompts_and_rewards_match_the_reference(
    golden: dict[str, Any], stand_in, index: int
) -> None:
    _check_case(golden["cases"][index], golden, stand_in)


def test_a_planted_change_in_the_reward_fails_naming_the_env_and_step(
    golden: dict[str, Any], stand_in, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Negative control: a format check that also demanded a box on arithmetic answers."""
    monkeypatch.setattr(ArithmeticEnv, "check_format", lambda self, s: "\\boxed" in s)
    with pytest.raises(AssertionError) as failure:
        _check_case(golden["cases"][0], golden, stand_in)
    assert (
        "arithmetic-llama3-fewshot1 batch 0 group 0.envs[0].steps[0].reward: expected 1.0, got 0.9"
    ) in str(failure.value)


def test_the_stand_in_is_gsm8k_shaped_deterministic_and_self_consistent(stand_in) -> None:
    assert (len(stand_in.train), len(stand_in.test)) == (GSM8K_ROWS["train"], GSM8K_ROWS["test"])
    assert stand_in.is_stand_in and stand_in.describe()["stand_in"] == STAND_IN_NOTE
    assert "not GSM8K" in STAND_IN_NOTE
    assert stand_in_rows().describe() == stand_in.describe()
    for row in stand_in.train[:200] + stand_in.test[:50]:
        answer = extract_gsm8k_final_answer(row["answer"])
        assert answer.isdigit() and grade_answer(answer, answer), row


def test_gsm8k_offline_names_its_options_and_the_builder_falls_back_only_when_declared() -> None:
    with pytest.raises(DatasetUnavailableError, match=STAND_IN):
        load_gsm8k()
    common = {"batch_size": 4, "model_name_for_tokenizer": "x", "renderer_name": "llama3"}
    with pytest.raises(DatasetUnavailableError):
        Gsm8kDatasetBuilder(**common, group_size=2).rows()
    rows = Gsm8kDatasetBuilder(**common, group_size=2, offline_fallback=True).rows()
    assert rows.source == STAND_IN


def test_a_local_copy_is_read_in_order_with_its_hashes(tmp_path: Path) -> None:
    for split, n in (("train", 3), ("test", 2)):
        lines = [json.dumps({"question": f"{split} {i}?", "answer": f"#### {i}"}) for i in range(n)]
        (tmp_path / f"{split}.jsonl").write_text("\n".join(lines) + "\n", "utf-8")
    rows = load_gsm8k(tmp_path)
    assert [r["question"] for r in rows.test] == ["test 0?", "test 1?"]
    assert rows.describe()["source"] == "local_copy"
    assert set(rows.describe()["sha256"]) == {"train", "test"}


def test_a_local_copy_line_that_is_not_json_names_its_file_and_line(tmp_path: Path) -> None:
    row = json.dumps({"question": "q?", "answer": "#### 1"})
    (tmp_path / "train.jsonl").write_text(f"{row}\n\n{row[:-1]}\n", "utf-8")  # a blank line too
    (tmp_path / "test.jsonl").write_text(f"{row}\n", "utf-8")
    with pytest.raises(DataFormatError, match=rf"^{tmp_path / 'train.jsonl'}:3: json: column "):
        load_gsm8k(tmp_path)


def test_unported_math_datasets_are_refused_by_name() -> None:
    with pytest.raises(ConfigurationError, match="not implemented in cookbook"):
        get_math_dataset_builder("math", 4, "x", "llama3", 2)
    assert isinstance(get_math_dataset_builder("gsm8k", 4, "x", "llama3", 2), Gsm8kDatasetBuilder)
