"""Invariants of the RL core (cookbook.rl): advantages, datums, group filtering, metrics names,
rollout order. Value-for-value agreement with the reference is the layered parity's job
(tests/test_rl_parity.py); these check the structure any correct port must have."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
import tinker
import torch

from cookbook.backends.fake import CallRecorder, FakeServiceClient
from cookbook.completers import TokensWithLogprobs
from cookbook.digests import tokens_digest
from cookbook.rl.data_processing import (
    assemble_training_data,
    compute_advantages,
    remove_constant_reward_groups,
    trajectory_to_data,
)
from cookbook.rl.metric_util import compute_trajectory_metrics
from cookbook.rl.metrics import discounted_future_sum_vectorized, incorporate_kl_penalty
from cookbook.rl.rollouts import do_group_rollout_and_filter_constant_reward
from cookbook.rl.types import (
    PARSE_ERROR_MASKED_METRIC_KEY,
    Env,
    EnvGroupBuilder,
    StepResult,
    Trajectory,
    TrajectoryGroup,
    Transition,
)


def _transition(ob: list[int], ac: list[int], reward: float = 0.0, **metrics: float) -> Transition:
    logprobs = [-0.5 - 0.1 * i for i in range(len(ac))]
    return Transition(
        ob=tinker.ModelInput.from_ints(ob),
        ac=TokensWithLogprobs(tokens=ac, maybe_logprobs=logprobs),
        reward=reward,
        episode_done=True,
        metrics=dict(metrics),
    )


def _group(rewards: Sequence[float]) -> TrajectoryGroup:
    trajs = [
        Trajectory([_transition([1, 2, 3], [4, 5], r)], tinker.ModelInput.empty()) for r in rewards
    ]
    return TrajectoryGroup(trajs, [0.0] * len(rewards), [{} for _ in rewards])


@pytest.mark.parametrize("rewards", [[1.0, 0.0, 0.0, 1.0], [0.5], [2.0, -1.0, 0.25]])
def test_advantages_are_centred_within_each_group(rewards: list[float]) -> None:
    (adv,) = compute_advantages([_group(rewards)])
    assert abs(float(adv.sum())) < 1e-6
    assert [float(a) for a in adv] == pytest.approx(
        [r - sum(rewards) / len(rewards) for r in rewards]
    )


def test_single_turn_datum_shifts_by_one_and_trains_only_the_action() -> None:
    ob, ac = [10, 11, 12, 13], [20, 21, 22]
    (datum,) = trajectory_to_data(Trajectory([_transition(ob, ac)], tinker.ModelInput.empty()), 0.7)
    full = ob + ac
    inputs = datum.loss_fn_inputs
    assert datum.model_input.to_ints() == full[:-1]
    assert inputs["target_tokens"].tolist() == full[1:]
    n_ob = len(ob) - 1
    assert inputs["mask"].tolist() == [0.0] * n_ob + [1.0] * len(ac)
    assert inputs["advantages"].tolist() == pytest.approx([0.0] * n_ob + [0.7] * len(ac))
    assert inputs["logprobs"].tolist()[n_ob:] == pytest.approx([-0.5, -0.6, -0.7])
    assert inputs["logprobs"].tolist()[:n_ob] == [0.0] * n_ob


def test_an_extending_observation_continues_the_datum_and_a_reset_starts_a_new_one() -> None:
    first = _transition([1, 2], [3, 4])
    extended = _transition([1, 2, 3, 4, 5], [6])
    reset = _transition([7, 8], [9])
    traj = Trajectory([first, extended, reset], tinker.ModelInput.empty())
    data = trajectory_to_data(traj, 1.0)
    assert [d.model_input.to_ints() for d in data] == [[1, 2, 3, 4, 5], [7, 8]]
    assert data[0].loss_fn_inputs["mask"].tolist() == [0, 1, 1, 0, 1]


def test_a_masked_parse_error_turn_trains_on_nothing() -> None:
    masked = _transition([1, 2], [3, 4], **{PARSE_ERROR_MASKED_METRIC_KEY: 1.0})
    (datum,) = trajectory_to_data(Trajectory([masked], tinker.ModelInput.empty()), 1.0)
    assert set(datum.loss_fn_inputs["mask"].tolist()) == {0.0}
    assert set(datum.loss_fn_inputs["advantages"].tolist()) == {0.0}


def test_assembled_data_say_which_group_and_trajectory_they_come_from() -> None:
    groups = [_group([1.0, 0.0]), _group([0.0, 0.0, 1.0])]
    data, meta = assemble_training_data(groups, compute_advantages(groups))
    assert len(data) == 5
    assert meta == [{"group_idx": g, "traj_idx": t} for g, n in enumerate((2, 3)) for t in range(n)]


def test_constant_groups_are_removed_but_never_all_of_them() -> None:
    mixed, constant = _group([1.0, 0.0]), _group([1.0, 1.0])
    assert remove_constant_reward_groups([constant, mixed]) == [mixed]
    assert remove_constant_reward_groups([constant, _group([0.0, 0.0])]) == [constant]


def test_tag_metrics_appear_only_for_tags_that_select_a_strict_subset() -> None:
    groups = [_group([1.0, 0.0]), _group([0.0, 0.0])]
    same = compute_trajectory_metrics(groups, [["gsm8k"], ["gsm8k"]])
    assert {k.split("/")[1] for k in same} == {"all"}
    split = compute_trajectory_metrics(groups, [["a"], ["b"]])
    assert {k.split("/")[1] for k in split} == {"all", "a", "b"}
    assert split["env/all/reward/total"] == pytest.approx(0.25)
    assert split["env/all/by_group/frac_mixed"] == 0.5
    assert split["env/a/ac_tokens_per_turn"] == 2.0


class _EchoEnv(Env):
    def __init__(self, prompt: list[int]):
        self.prompt = prompt

    async def initial_observation(self):
        return tinker.ModelInput.from_ints(self.prompt), [0]

    async def step(self, action, *, extra=None):
        return StepResult(float(len(action) % 2), True, tinker.ModelInput.empty(), [0])


class _Builder(EnvGroupBuilder):
    def __init__(self, prompt: list[int], n: int):
        self.prompt, self.n = prompt, n

    async def make_envs(self):
        return [_EchoEnv(self.prompt) for _ in range(self.n)]


def test_samples_are_drawn_in_group_then_environment_order(tmp_path) -> None:
    """The order the reference's nested asyncio.gather issues them in on a resolved backend."""
    recorder = CallRecorder()
    service = FakeServiceClient(state_dir=tmp_path, recorder=recorder)
    training = service.create_lora_training_client(base_model="a/b", rank=4).result()
    sampler = training.save_weights_and_get_sampling_client().result()
    prompts = [[5, 6, 7], [8, 9], [10, 11, 12, 13]]

    async def batch():
        return await asyncio.gather(
            *[
                do_group_rollout_and_filter_constant_reward(sampler, _Builder(p, 2), 4, 1.0, False)
                for p in prompts
            ]
        )

    groups = asyncio.run(batch())
    sampled = [c["prompt"] for c in recorder.calls if c["call"] == "sample"]
    expected = [tokens_digest(tinker.ModelInput.from_ints(p)) for p in prompts for _ in range(2)]
    assert sampled == expected
    assert all(len(g.trajectories_G) == 2 for g in groups)


class _ScoresLikeTheSampler:
    """A KL reference that gives every token the logprob the policy sampled it with."""

    def __init__(self, data: list[tinker.Datum]):
        self.by_sequence = {
            tuple(d.model_input.to_ints()): d.loss_fn_inputs["logprobs"].tolist() for d in data
        }

    async def compute_logprobs(self, sequence: tinker.ModelInput) -> list[float | None]:
        return [None, *self.by_sequence[tuple(sequence.to_ints()[:-1])]]


def test_a_kl_reference_equal_to_the_policy_leaves_the_advantages_alone() -> None:
    groups = [_group([1.0, 0.0])]
    data, _ = assemble_training_data(groups, compute_advantages(groups))
    before = [d.loss_fn_inputs["advantages"].tolist() for d in data]
    metrics = asyncio.run(incorporate_kl_penalty(data, _ScoresLikeTheSampler(data), 0.5, 0.9))
    assert metrics == {"kl_policy_base": 0.0}
    assert [d.loss_fn_inputs["advantages"].tolist() for d in data] == before


def test_discounted_future_sum_matches_its_definition() -> None:
    x = torch.tensor([1.0, -2.0, 0.5, 3.0])
    gamma = 0.5
    expected = [sum(gamma**k * float(x[i + k]) for k in range(len(x) - i)) for i in range(len(x))]
    assert discounted_future_sum_vectorized(x, gamma).tolist() == pytest.approx(expected)
