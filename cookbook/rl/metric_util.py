"""Rollout metrics and the test-set evaluator (``tinker_cookbook.rl.metric_util``).

Metric names are the reference's: ``env/all/<name>`` over every group and ``env/<tag>/<name>``
per logging tag when a tag selects a strict subset of the groups; ``test/...`` for the
evaluator.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict

import numpy as np
import tinker

from cookbook.completers import TinkerTokenCompleter
from cookbook.rl.data_processing import all_same
from cookbook.rl.rollouts import do_group_rollout
from cookbook.rl.types import EnvGroupBuilder, RLDataset, TrajectoryGroup


def dict_mean(list_of_dicts: list[dict[str, float | int]]) -> dict[str, float]:
    """Per key, the mean over the dicts that have it (a missing key is not a zero)."""
    key2values: dict[str, list[float | int]] = {}
    for d in list_of_dicts:
        for k, v in d.items():
            key2values.setdefault(k, []).append(v)
    return {k: float(np.mean(values)) for k, values in key2values.items()}


def _compute_by_group_metrics(
    trajectory_groups_P: list[TrajectoryGroup], good_thresh: float = 0.5
) -> dict[str, float]:
    n_groups = len(trajectory_groups_P)
    if n_groups == 0:
        return {
            "by_group/frac_mixed": 0.0,
            "by_group/frac_all_good": 0.0,
            "by_group/frac_all_bad": 0.0,
        }
    n_mixed = n_good = n_bad = 0
    for tg in trajectory_groups_P:
        rewards = tg.get_total_rewards()
        if not all_same(rewards):
            n_mixed += 1
        elif rewards[0] >= good_thresh:
            n_good += 1
        else:
            n_bad += 1
    return {
        "by_group/frac_mixed": n_mixed / n_groups,
        "by_group/frac_all_good": n_good / n_groups,
        "by_group/frac_all_bad": n_bad / n_groups,
    }


def _compute_trajectory_metrics(trajectory_groups_P: list[TrajectoryGroup]) -> dict[str, float]:
    trajs = [traj for tg in trajectory_groups_P for traj in tg.trajectories_G]
    transitions = [t for traj in trajs for t in traj.transitions]
    total_turns = len(transitions)
    total_episodes = len(trajs)
    total_ac_tokens = sum(len(t.ac.tokens) for t in transitions)
    total_ob_tokens = sum(t.ob.length for t in transitions)
    metrics: dict[str, float] = {
        "ac_tokens_per_turn": total_ac_tokens / total_turns if total_turns > 0 else 0.0,
        "ob_tokens_per_turn": total_ob_tokens / total_turns if total_turns > 0 else 0.0,
        "turns_per_episode": total_turns / total_episodes if total_episodes > 0 else 0.0,
        "total_episodes": total_episodes,
        "total_turns": total_turns,
        "total_ac_tokens": total_ac_tokens,
        "total_ob_tokens": total_ob_tokens,
    }
    rewards = [r for tg in trajectory_groups_P for r in tg.get_total_rewards()]
    metrics["reward/total"] = np.mean(rewards).item() if rewards else 0.0
    # Per-transition and per-trajectory (group reward) metrics share keys in some envs.
    traj_metrics = [m for tg in trajectory_groups_P for m in tg.metrics_G]
    metrics.update(dict_mean([t.metrics for t in transitions] + traj_metrics))
    metrics.update(_compute_by_group_metrics(trajectory_groups_P))
    return metrics


def compute_trajectory_metrics(
    trajectory_groups_P: list[TrajectoryGroup], taglist_P: list[list[str]]
) -> dict[str, float]:
    tag2groups: dict[str, list[TrajectoryGroup]] = defaultdict(list)
    for taglist, group in zip(taglist_P, trajectory_groups_P, strict=False):
        for tag in taglist:
            tag2groups[tag].append(group)
    out: dict[str, float] = {}
    if any(len(groups) < len(trajectory_groups_P) for groups in tag2groups.values()):
        for tag, groups in tag2groups.items():
            out.update(
                {f"env/{tag}/{k}": v for k, v in _compute_trajectory_metrics(groups).items()}
            )
    out.update(
        {f"env/all/{k}": v for k, v in _compute_trajectory_metrics(trajectory_groups_P).items()}
    )
    return out


def dataset_to_env_group_builders(dataset: RLDataset) -> list[EnvGroupBuilder]:
    return list(itertools.chain(*[dataset.get_batch(i) for i in range(len(dataset))]))


class RLTestSetEvaluator:
    """Rolls out every group of a held-out dataset with the current weights (temperature 1).

    Metrics are prefixed with ``name`` (``test/env/all/reward/total``, ...). The reference also
    records a ``BenchmarkResult`` and rollout summaries; those are not ported.
    """

    def __init__(self, dataset: RLDataset, max_tokens: int, name: str = "test"):
        self.env_group_builders_P = dataset_to_env_group_builders(dataset)
        self.max_tokens = max_tokens
        self.name = name

    async def __call__(self, sampling_client: tinker.SamplingClient) -> dict[str, float]:
        policy = TinkerTokenCompleter(sampling_client, max_tokens=self.max_tokens)
        groups = await asyncio.gather(
            *[do_group_rollout(b, policy) for b in self.env_group_builders_P]
        )
        taglist_P = [b.logging_tags() for b in self.env_group_builders_P]
        metrics = compute_trajectory_metrics(list(groups), taglist_P)
        return {f"{self.name}/{k}": v for k, v in metrics.items()}
