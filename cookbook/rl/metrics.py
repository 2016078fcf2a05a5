"""Training-side RL metrics (``tinker_cookbook.rl.metrics``): how far the trained policy moved
from the one that sampled, on the action tokens only, and the KL penalty against a reference
model that reshapes the advantages."""

from __future__ import annotations

import asyncio
from typing import Any

import tinker
import torch


def compute_kl_sample_train(
    data_D: list[tinker.Datum], training_logprobs_D: list[torch.Tensor]
) -> dict[str, float]:
    """``optim/kl_sample_train_v1`` (mean of sampled - trained logprobs), ``..._v2`` (half the
    mean square) and ``optim/entropy`` (minus the mean sampled logprob)."""
    diffs: list[torch.Tensor] = []
    sampled: list[torch.Tensor] = []
    for datum, training_logprobs in zip(data_D, training_logprobs_D, strict=True):
        sampling_logprobs = datum.loss_fn_inputs["logprobs"].to_torch()
        action_mask = datum.loss_fn_inputs["mask"].to_torch() > 0
        sampling_actions = sampling_logprobs[action_mask]
        if len(sampling_actions) > 0:
            diffs.append(sampling_actions - training_logprobs[action_mask])
            sampled.append(sampling_actions)
    if not diffs:
        raise ValueError("no action tokens in the batch: nothing to compare")
    flat_diffs = torch.cat(diffs)
    return {
        "optim/kl_sample_train_v1": flat_diffs.mean().item(),
        "optim/kl_sample_train_v2": 0.5 * (flat_diffs**2).mean().item(),
        "optim/entropy": -torch.cat(sampled).mean().item(),
    }


def discounted_future_sum_vectorized(x: torch.Tensor, gamma: float) -> torch.Tensor:
    """``out[i] = sum_k gamma**k * x[i + k]``, one backward pass."""
    result = torch.empty_like(x)
    running = torch.zeros(1, dtype=x.dtype, device=x.device)
    for t in range(len(x) - 1, -1, -1):
        running = x[t] + gamma * running
        result[t] = running
    return result


async def incorporate_kl_penalty(
    data_D: list[tinker.Datum],
    base_sampling_client: Any,
    kl_penalty_coef: float,
    kl_discount_factor: float,
) -> dict[str, float]:
    """Add ``coef * mask * (mean_diff - diff)`` to each datum's advantages in place, where
    ``diff`` is sampled minus reference logprob per action token (scored with one
    ``compute_logprobs`` call per datum, on the datum's full sequence); returns
    ``kl_policy_base`` (the mean diff)."""
    full_sequences_D = [
        d.model_input.append_int(int(d.loss_fn_inputs["target_tokens"].data[-1])) for d in data_D
    ]
    base_logprobs_D = await asyncio.gather(
        *[base_sampling_client.compute_logprobs(seq) for seq in full_sequences_D]
    )
    sampled_D = [d.loss_fn_inputs["logprobs"].to_torch() for d in data_D]
    masks_D = [d.loss_fn_inputs["mask"].to_torch().float() for d in data_D]
    diffs_D = [
        (sampled - torch.tensor(base[1:])) * mask
        for base, sampled, mask in zip(base_logprobs_D, sampled_D, masks_D, strict=True)
    ]
    avg_diff = sum(diff.sum() for diff in diffs_D) / sum(mask.sum() for mask in masks_D)
    for datum, mask, diff in zip(data_D, masks_D, diffs_D, strict=True):
        kl_advantages = kl_penalty_coef * mask * (avg_diff - diff)
        if kl_discount_factor > 0:
            kl_advantages = discounted_future_sum_vectorized(kl_advantages, kl_discount_factor)
        datum.loss_fn_inputs["advantages"] = tinker.TensorData.from_torch(
            datum.loss_fn_inputs["advantages"].to_torch() + kl_advantages
        )
    return {"kl_policy_base": float(avg_diff)}
