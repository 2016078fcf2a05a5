"""golden/rl/envs.json: what the reference's math environments show a model and how they score it.

Used by tools/generate_grading_goldens.py, in the reference's virtualenv. For the arithmetic
dataset (batches 0 and 1, seeded by batch index) and for GSM8K (``Gsm8kDataset`` reading the
declared stand-in rows through a patched ``datasets.load_dataset``, so the reference's own
shuffle and batching run), each env's prompt tokens and stop condition are recorded, then every
sample response of :data:`RESPONSES` is stepped: its action tokens, reward, metrics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import datasets
from tinker_cookbook import renderers, tokenizer_utils
from tinker_cookbook.recipes.math_rl import math_env as ref_math_env
from tinker_cookbook.recipes.math_rl.arithmetic_env import ArithmeticDataset

from cookbook.recipes.math_rl.gsm8k_data import stand_in_rows
from cookbook.tokenizers import TokenizerSource, get_tokenizer, offline_directory, provenance

MODEL = "meta-llama/Llama-3.1-8B"
RENDERERS = ("llama3", "role_colon")
BATCH_SIZE = 4
GROUP_SIZE = 2
ARITHMETIC_BATCHES = (0, 1)
GSM8K_SEED = 0
GSM8K_BATCHES = (0, 5)

# (text, terminated): terminated responses end with the renderer's stop sequence.
RESPONSES: dict[str, list[tuple[str, bool]]] = {
    "arithmetic": [
        ("{answer}", True),
        ("{answer}", False),
        ("The sum is **{answer}**.", True),
        ("{wrong}", True),
        ("{answer} or maybe {wrong}", True),
        ("", True),
        ("-{answer}", True),
    ],
    "math": [
        ("So the answer is \\boxed{{{answer}}}.", True),
        ("So the answer is \\boxed{{{answer}}}.", False),
        ("\\boxed{{{wrong}}}", True),
        ("The answer is {answer}.", True),
        ("\\boxed{{{answer}.0}}", True),
        ("\\boxed{{\\${answer}}}", True),
        ("\\boxed{{{answer}}} }}", True),
        ("", True),
    ],
}


def _wrong(answer: str) -> str:
    try:
        return str(int(answer) + 1)
    except ValueError:
        return answer + "1"


def _stop_tokens(renderer: Any, tokenizer: Any) -> list[int]:
    stops = renderer.get_stop_sequences()
    if all(isinstance(s, int) for s in stops):
        return [stops[0]]
    return tokenizer.encode(stops[0], add_special_tokens=False)


def env_record(env: Any, kind: str, renderer: Any, tokenizer: Any) -> dict[str, Any]:
    observation, stop = asyncio.run(env.initial_observation())
    answer = env.get_reference_answer()
    steps = []
    for text, terminated in RESPONSES[kind]:
        content = text.format(answer=answer, wrong=_wrong(answer))
        action = tokenizer.encode(content, add_special_tokens=False)
        if terminated:
            action += _stop_tokens(renderer, tokenizer)
        result = asyncio.run(env.step(action))
        steps.append(
            {
                "response": content,
                "terminated": terminated,
                "action": action,
                "reward": result.reward,
                "episode_done": result.episode_done,
                "metrics": result.metrics,
            }
        )
    return {
        "question": env.get_question(),
        "reference_answer": answer,
        "prompt_tokens": observation.to_ints(),
        "stop_condition": list(stop),
        "steps": steps,
    }


def group_records(builders: list[Any], kind: str, renderer: Any, tokenizer: Any) -> list[Any]:
    records = []
    for builder in builders:
        envs = asyncio.run(builder.make_envs())
        records.append(
            {
                "num_envs": len(envs),
                "tags": builder.logging_tags(),
                "envs": [env_record(env, kind, renderer, tokenizer) for env in envs[:1]],
            }
        )
    return records


@contextmanager
def stand_in_gsm8k() -> Iterator[None]:
    rows = stand_in_rows()
    original = datasets.load_dataset

    def load_dataset(path: str, name: str | None = None, split: str | None = None, **_: Any):
        if path != "openai/gsm8k" or name != "main" or split not in ("train", "test"):
            raise AssertionError(f"unexpected load_dataset({path!r}, {name!r}, {split!r})")
        return datasets.Dataset.from_list(getattr(rows, split))

    ref_math_env.load_dataset = load_dataset
    try:
        yield
    finally:
        ref_math_env.load_dataset = original


def generate() -> dict[str, Any]:
    directory = offline_directory(MODEL)
    tokenizer = tokenizer_utils.get_tokenizer(str(directory))
    cases = []
    for renderer_name in RENDERERS:
        renderer = renderers.get_renderer(renderer_name, tokenizer)
        for include_fewshot in (True, False):
            dataset = ArithmeticDataset(
                BATCH_SIZE, renderer, GROUP_SIZE, n_batches=2, include_fewshot=include_fewshot
            )
            cases.append(
                {
                    "id": f"arithmetic-{renderer_name}-fewshot{int(include_fewshot)}",
                    "dataset": "arithmetic",
                    "renderer": renderer_name,
                    "include_fewshot": include_fewshot,
                    "batches": {
                        str(i): group_records(
                            list(dataset.get_batch(i)), "arithmetic", renderer, tokenizer
                        )
                        for i in ARITHMETIC_BATCHES
                    },
                }
            )
        with stand_in_gsm8k():
            for split in ("train", "test"):
                dataset = ref_math_env.Gsm8kDataset(
                    BATCH_SIZE,
                    GROUP_SIZE,
                    renderer,
                    convo_prefix=ref_math_env.MathEnv.standard_fewshot_prefix(),
                    split=split,
                    seed=GSM8K_SEED,
                )
                cases.append(
                    {
                        "id": f"gsm8k_stand_in-{split}-{renderer_name}",
                        "dataset": "gsm8k_stand_in",
                        "split": split,
                        "seed": GSM8K_SEED,
                        "renderer": renderer_name,
                        "len": len(dataset),
                        "batches": {
                            str(i): group_records(
                                list(dataset.get_batch(i)), "math", renderer, tokenizer
                            )
                            for i in GSM8K_BATCHES
                        },
                    }
                )
    return {
        "model_name": MODEL,
        "tokenizer": provenance(get_tokenizer(MODEL, TokenizerSource.OFFLINE)).to_json(),
        "batch_size": BATCH_SIZE,
        "group_size": GROUP_SIZE,
        "responses": RESPONSES,
        "cases": cases,
    }
