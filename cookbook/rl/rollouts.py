"""Episodes and groups of episodes (``tinker_cookbook.rl.rollouts``, default path).

The reference's defaults only: the ``FailFast`` strategy (any error fails the group), no
rollout limits, hooks or termination-reward policy, no rollout executor.

Call order matters for the layered parity: a group's environments are rolled out with
``asyncio.gather`` inside a batch-level ``asyncio.gather``, as the reference nests them, so on a
backend whose futures resolve at once (the fake) every ``sample`` call is issued in
(group, environment) order, and on a real service they run concurrently.
"""

from __future__ import annotations

import asyncio
import logging

import tinker

from cookbook.completers import TinkerTokenCompleter, TokenCompleter, TokensWithLogprobs
from cookbook.rl.data_processing import all_same
from cookbook.rl.types import (
    STOP_METRIC_PREFIX,
    ActionExtra,
    Env,
    EnvGroupBuilder,
    InitialObservationOverflow,
    Metrics,
    Trajectory,
    TrajectoryGroup,
    Transition,
)

logger = logging.getLogger(__name__)


def stop_reason_from_metrics(metrics: Metrics) -> str | None:
    """The ``<reason>`` of a one-hot ``stop/<reason>`` metric, if the environment set one."""
    return next(
        (k.removeprefix(STOP_METRIC_PREFIX) for k in metrics if k.startswith(STOP_METRIC_PREFIX)),
        None,
    )


async def do_single_rollout(policy: TokenCompleter, env: Env) -> Trajectory:
    """Sample and step until the environment ends the episode."""
    initial = await env.initial_observation()
    if isinstance(initial, InitialObservationOverflow):
        # The prompt alone is over budget: one empty transition carries the reward, so the
        # group's mean still counts this member, and no sample is drawn.
        transition = Transition(
            ob=tinker.ModelInput.empty(),
            ac=TokensWithLogprobs(tokens=[], maybe_logprobs=[]),
            reward=initial.reward,
            episode_done=True,
            metrics=initial.metrics,
            logs=initial.logs,
        )
        return Trajectory(
            [transition], tinker.ModelInput.empty(), stop_reason_from_metrics(initial.metrics)
        )
    ob, stop_condition = initial
    transitions: list[Transition] = []
    while True:
        ac = await policy(ob, stop_condition)
        step = await env.step(ac.tokens, extra=ActionExtra(stop_reason=ac.stop_reason))
        transition = Transition(
            ob=ob,
            ac=ac,
            reward=step.reward,
            episode_done=step.episode_done,
            metrics=step.metrics,
            logs=step.logs,
        )
        transitions.append(transition)
        ob, stop_condition = step.next_observation, step.next_stop_condition
        if step.episode_done:
            return Trajectory(transitions, ob, stop_reason_from_metrics(transition.metrics))


async def do_group_rollout(
    env_group_builder: EnvGroupBuilder, policy: TokenCompleter
) -> TrajectoryGroup:
    """Roll out every environment of the group, then ask the builder for group rewards."""
    try:
        envs = await env_group_builder.make_envs()
        trajectories = list(await asyncio.gather(*[do_single_rollout(policy, e) for e in envs]))
        rewards_and_metrics = await env_group_builder.compute_group_rewards(trajectories, envs)
        rewards_G = [reward for reward, _ in rewards_and_metrics]
        metrics_G = [metrics for _, metrics in rewards_and_metrics]
        if len(rewards_G) != len(trajectories):
            raise ValueError(
                f"compute_group_rewards returned {len(rewards_G)} rewards for "
                f"{len(trajectories)} trajectories"
            )
        return TrajectoryGroup(trajectories, rewards_G, metrics_G)
    finally:
        await env_group_builder.cleanup()


async def do_group_rollout_and_filter_constant_reward(
    sampling_client: tinker.SamplingClient,
    env_group_builder: EnvGroupBuilder,
    max_tokens: int,
    temperature: float,
    do_remove_constant_reward_groups: bool,
) -> TrajectoryGroup | None:
    """A group rollout through a sampling client; None when asked to drop constant groups."""
    policy = TinkerTokenCompleter(sampling_client, max_tokens=max_tokens, temperature=temperature)
    trajectory_group = await do_group_rollout(env_group_builder, policy)
    if do_remove_constant_reward_groups and all_same(trajectory_group.get_total_rewards()):
        return None
    return trajectory_group
