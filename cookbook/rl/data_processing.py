"""Trajectories -> advantages -> training datums (``tinker_cookbook.rl.data_processing``).

These functions decide what the policy is trained on, so they follow the reference line by
line in their arithmetic: advantages are ``reward - mean(group rewards)`` in float32 torch, a
datum holds ``target_tokens``, ``logprobs``, ``advantages`` and ``mask`` shifted by one token
exactly like a supervised example, and observation tokens get logprob 0, advantage 0, mask 0.
"""

from __future__ import annotations

import logging

import tinker
import torch
from tinker import TensorData

from cookbook.rl.types import PARSE_ERROR_MASKED_METRIC_KEY, Trajectory, TrajectoryGroup
from cookbook.supervised.common import _shift

logger = logging.getLogger(__name__)

FlatObElem = int | tinker.ModelInputChunk
FlatOb = list[FlatObElem]


def compute_advantages(trajectory_groups_P: list[TrajectoryGroup]) -> list[torch.Tensor]:
    """Per group, each trajectory's total reward minus the group's mean (GRPO centring)."""
    advantages_P: list[torch.Tensor] = []
    for traj_group in trajectory_groups_P:
        rewards_G = torch.tensor(traj_group.get_total_rewards())
        advantages_P.append(rewards_G - rewards_G.mean())
    return advantages_P


def _flat_ob_token_len(flat_ob: FlatOb) -> int:
    return sum(1 if isinstance(elem, int) else elem.length for elem in flat_ob)


def _flat_ob_to_model_input(flat_ob: FlatOb) -> tinker.ModelInput:
    """Runs of token ids become one text chunk each; other chunks (images) stay as they are."""
    chunks: list[tinker.ModelInputChunk] = []
    text: list[int] = []
    for elem in flat_ob:
        if isinstance(elem, int):
            text.append(elem)
            continue
        if text:
            chunks.append(tinker.EncodedTextChunk(tokens=text))
            text = []
        chunks.append(elem)
    if text:
        chunks.append(tinker.EncodedTextChunk(tokens=text))
    return tinker.ModelInput(chunks=chunks)


def _flatten_chunks(chunks: list[tinker.ModelInputChunk]) -> FlatOb:
    out: FlatOb = []
    for chunk in chunks:
        if isinstance(chunk, tinker.EncodedTextChunk):
            out.extend(chunk.tokens)
        else:
            out.append(chunk)
    return out


class _Sequence:
    """One datum being accumulated: the full token sequence and its per-token columns."""

    def __init__(self) -> None:
        self.tokens: FlatOb = []
        self.logprobs: list[float] = []
        self.advantages: list[float] = []
        self.mask: list[float] = []

    def extend(
        self, delta_ob: FlatOb, action: list[int], logprobs: list[float], adv: float, mask: float
    ) -> None:
        n_ob = _flat_ob_token_len(delta_ob)
        self.tokens.extend(delta_ob)
        self.tokens.extend(action)
        self.logprobs.extend([0.0] * n_ob + logprobs)
        self.advantages.extend([0] * n_ob + [adv] * len(action))
        self.mask.extend([0.0] * n_ob + [mask] * len(action))

    def to_datum(self) -> tinker.Datum:
        model_input, targets = _shift(list(_flat_ob_to_model_input(self.tokens).chunks))
        columns = {
            "target_tokens": targets,
            "logprobs": self.logprobs[1:],
            "advantages": self.advantages[1:],
            "mask": self.mask[1:],
        }
        lengths = {len(v) for v in columns.values()}
        if lengths != {model_input.length}:
            raise ValueError(f"datum columns of lengths {lengths} for {model_input.length} inputs")
        return tinker.Datum(
            model_input=model_input,
            loss_fn_inputs={k: TensorData.from_torch(torch.tensor(v)) for k, v in columns.items()},
        )


def trajectory_to_data(traj: Trajectory, traj_advantage: float) -> list[tinker.Datum]:
    """One datum while each observation extends the previous observation + action; a new one
    whenever it does not (e.g. a context reset). Parse-error turns flagged with
    ``parse_error_masked`` train on nothing (mask 0, advantage 0)."""
    data: list[tinker.Datum] = []
    seq = _Sequence()
    for transition in traj.transitions:
        ob_flat = _flatten_chunks(transition.ob.chunks)
        n = len(seq.tokens)
        if n == 0:
            delta = ob_flat
        elif len(ob_flat) >= n and ob_flat[:n] == seq.tokens:
            delta = ob_flat[n:]
        else:
            data.append(seq.to_datum())
            seq = _Sequence()
            delta = ob_flat
        masked = float(transition.metrics.get(PARSE_ERROR_MASKED_METRIC_KEY, 0.0)) >= 1.0
        seq.extend(
            delta,
            transition.ac.tokens,
            transition.ac.logprobs,
            0.0 if masked else traj_advantage,
            0.0 if masked else 1.0,
        )
    if seq.tokens:
        data.append(seq.to_datum())
    return data


def assemble_training_data(
    trajectory_groups_P: list[TrajectoryGroup],
    advantages_P: list[torch.Tensor],
) -> tuple[list[tinker.Datum], list[dict[str, int]]]:
    """Every trajectory's datums in group order, with ``{"group_idx", "traj_idx"}`` for each."""
    data_D: list[tinker.Datum] = []
    metadata_D: list[dict[str, int]] = []
    for i_group, (traj_group, advantages_G) in enumerate(
        zip(trajectory_groups_P, advantages_P, strict=True)
    ):
        for i_traj, (traj, traj_advantage) in enumerate(
            zip(traj_group.trajectories_G, advantages_G, strict=True)
        ):
            new_data = trajectory_to_data(traj, float(traj_advantage))
            data_D.extend(new_data)
            metadata_D.extend({"group_idx": i_group, "traj_idx": i_traj} for _ in new_data)
    return data_D, metadata_D


def all_same(xs: list[float]) -> bool:
    return all(x == xs[0] for x in xs)


def remove_constant_reward_groups(
    trajectory_groups_P: list[TrajectoryGroup],
) -> list[TrajectoryGroup]:
    """Drop groups whose rewards are all equal (zero advantage, no gradient); if every group is
    constant, keep the first so the step still has data, as the reference does."""
    kept = [g for g in trajectory_groups_P if not all_same(g.get_total_rewards())]
    if not kept:
        logger.warning("All rewards are uniform. There will be no gradient")
        return trajectory_groups_P[0:1]
    return kept
