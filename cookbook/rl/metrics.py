"""Training-side RL metrics (``tinker_cookbook.rl.metrics``): how far the trained policy moved
from the one that sampled, on the action tokens only."""

from __future__ import annotations

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
