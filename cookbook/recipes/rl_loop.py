"""The reference's minimal RL loop (``tinker_cookbook/recipes/rl_loop.py``, 0.5.8).

GSM8K train rows in dataset order, ``batch_size`` questions per batch, one
``sample(num_samples=group_size)`` call per question (all submitted before any is awaited),
reward 1 when the ``\\boxed{}`` answer grades equal to the ``#### N`` answer, advantages
centred per question, questions whose advantages are all zero skipped, one
``forward_backward(importance_sampling)`` + ``optim_step`` per batch. Call order per batch:
``[save_every > 0, batch % save_every == 0, batch > 0] save_state(f"{batch:06d}")`` (a
state-only row ``{"name", "batch", "state_path"}``), ``save_weights_and_get_sampling_client``,
the samples, ``forward_backward``, ``optim_step``; at the end ``save_state("final")`` and
``save_weights_for_sampler("final")`` with the row's batch = the number of train batches (even
when ``max_steps`` stopped earlier: the reference's record). The training client carries no
user metadata, as in the reference.

Metrics per batch: ``progress/batch``, ``optim/lr``, ``progress/done_frac``, the optimizer's
metrics and ``reward/total`` (mean over questions); ``time/total`` goes to timing.jsonl.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tinker import types
from tinker.types.tensor_data import TensorData

from cookbook.recipes.math_rl.gsm8k_data import Gsm8kRows
from cookbook.recipes.math_rl.math_env import extract_gsm8k_final_answer
from cookbook.recipes.math_rl.math_grading import extract_boxed, grade_answer
from cookbook.rl.problem_env import get_text_content
from cookbook.supervised.checkpoints import append_checkpoint, last_checkpoint

QUESTION_SUFFIX = " Provide a numerical answer without units, written inside \\boxed{}."
CONVO_PREFIX = [
    {"role": "user", "content": "How many r's are in strawberry?" + QUESTION_SUFFIX},
    {
        "role": "assistant",
        "content": "Let's spell the word out and number all the letters: 1) s 2) t 3) r 4) a "
        "5) w 6) b 7) e 8) r 9) r 10) y. We have r's at positions 3, 8, and 9. \\boxed{3}",
    },
]


@dataclass
class Config:
    """The reference's ``rl_loop.Config`` (base_url and wandb belong to the spec/backend)."""

    log_path: str
    model_name: str = "Qwen/Qwen3.5-9B-Base"
    batch_size: int = 128
    group_size: int = 16
    learning_rate: float = 4e-5
    lora_rank: int = 32
    save_every: int = 20
    max_tokens: int = 256
    ttl_seconds: int | None = 604800
    max_steps: int | None = None


def get_reward(response: str, answer: str) -> float:
    try:
        return (
            1.0
            if grade_answer(extract_boxed(response), extract_gsm8k_final_answer(answer))
            else 0.0
        )
    except ValueError:
        return 0.0


def total_steps(config: Config, n_rows: int) -> int:
    n_batches = n_rows // config.batch_size
    return n_batches if config.max_steps is None else min(n_batches, config.max_steps)


def _datum(prompt: types.ModelInput, tokens: list[int], logprobs: list[float], adv: float):
    ob_len = prompt.length - 1
    model_input = prompt.append(types.EncodedTextChunk(tokens=tokens[:-1]))
    columns = {
        "target_tokens": [0] * ob_len + tokens,
        "logprobs": [0.0] * ob_len + logprobs,
        "advantages": [0.0] * ob_len + [adv] * (model_input.length - ob_len),
    }
    return types.Datum(
        model_input=model_input,
        loss_fn_inputs={k: TensorData.from_torch(torch.tensor(v)) for k, v in columns.items()},
    )


def main(
    config: Config,
    service_client: Any,
    renderer: Any,
    rows: Gsm8kRows,
    run_log: Any,
    on_step: Callable[[int, dict[str, Any]], None] | None = None,
) -> int:
    """Train; returns the number of batches run. ``rows.train`` is used in its own order."""
    log_dir = Path(config.log_path)
    train = rows.train
    n_train_batches = len(train) // config.batch_size
    resume = last_checkpoint(log_dir)
    if resume:
        training_client = service_client.create_training_client_from_state_with_optimizer(
            resume["state_path"]
        ).result()
        start_batch = int(resume["batch"])
    else:
        training_client = service_client.create_lora_training_client(
            base_model=config.model_name, rank=config.lora_rank
        ).result()
        start_batch = 0
    sampling_params = types.SamplingParams(
        max_tokens=config.max_tokens, stop=renderer.get_stop_sequences()
    )
    adam_params = types.AdamParams(
        learning_rate=config.learning_rate, beta1=0.9, beta2=0.95, eps=1e-8
    )
    steps = 0
    for batch_idx in range(start_batch, n_train_batches):
        if config.max_steps is not None and batch_idx >= config.max_steps:
            break
        started = time.time()
        metrics: dict[str, Any] = {
            "progress/batch": batch_idx,
            "optim/lr": config.learning_rate,
            "progress/done_frac": (batch_idx + 1) / n_train_batches,
        }
        if config.save_every > 0 and batch_idx % config.save_every == 0 and batch_idx > 0:
            name = f"{batch_idx:06d}"
            state = training_client.save_state(name, ttl_seconds=config.ttl_seconds).result()
            append_checkpoint(log_dir, {"name": name, "batch": batch_idx, "state_path": state.path})
        batch_rows = train[batch_idx * config.batch_size : (batch_idx + 1) * config.batch_size]
        sampling_client = training_client.save_weights_and_get_sampling_client().result()
        prompts_P = [
            renderer.build_generation_prompt(
                [*CONVO_PREFIX, {"role": "user", "content": row["question"] + QUESTION_SUFFIX}]
            )
            for row in batch_rows
        ]
        futures_P = [
            sampling_client.sample(
                prompt=prompt, num_samples=config.group_size, sampling_params=sampling_params
            )
            for prompt in prompts_P
        ]
        datums_D: list[types.Datum] = []
        rewards_P: list[float] = []
        for future, prompt, row in zip(futures_P, prompts_P, batch_rows, strict=True):
            sequences = future.result().sequences
            rewards_G = []
            for sequence in sequences:
                if sequence.logprobs is None:
                    raise ValueError("The sampler returned no logprobs; RL training needs them")
                message, _ = renderer.parse_response(sequence.tokens)
                rewards_G.append(get_reward(get_text_content(message), row["answer"]))
            mean_reward = sum(rewards_G) / len(rewards_G)
            advantages_G = [reward - mean_reward for reward in rewards_G]
            rewards_P.append(mean_reward)
            if all(advantage == 0.0 for advantage in advantages_G):
                continue  # no signal from this question
            for sequence, advantage in zip(sequences, advantages_G, strict=True):
                datums_D.append(_datum(prompt, sequence.tokens, sequence.logprobs, advantage))
        if datums_D:
            fwd_bwd = training_client.forward_backward(datums_D, loss_fn="importance_sampling")
            optim = training_client.optim_step(adam_params)
            fwd_bwd.result()
            optim_result = optim.result()
            if optim_result.metrics:
                metrics.update(optim_result.metrics)
        metrics["reward/total"] = sum(rewards_P) / len(rewards_P)
        run_log.log_metrics(metrics, step=batch_idx)
        run_log.log_timing({"time/total": time.time() - started}, batch_idx)
        steps += 1
        if on_step is not None:
            on_step(batch_idx, metrics)
    state = training_client.save_state("final", ttl_seconds=None)
    sampler = training_client.save_weights_for_sampler("final", ttl_seconds=None)
    append_checkpoint(
        log_dir,
        {
            "name": "final",
            "batch": n_train_batches,
            "state_path": state.result().path,
            "sampler_path": sampler.result().path,
        },
    )
    return steps
