"""The RL environment protocol and the data that flows through rollouts and training.

Names, fields and defaults are the reference's (``tinker_cookbook.rl.types``), so an environment
written against the reference runs here by switching one import.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeAlias, TypedDict

import tinker

from cookbook.completers import StopCondition, TokensWithLogprobs

Action: TypeAlias = list[int]
Observation: TypeAlias = tinker.ModelInput
Logprobs: TypeAlias = list[float]
Metrics: TypeAlias = dict[str, float | int]
Logs: TypeAlias = dict[str, str | int | float]


class StopReason(StrEnum):
    """Why a trajectory ended; environments report it as the one-hot metric ``stop/<reason>``."""

    COMPLETED = "completed"
    TOOL_STOPPED = "tool_stopped"
    MAX_TURNS = "max_turns"
    MAX_TOKENS = "max_tokens"
    MAX_SAMPLED_TOKENS = "max_sampled_tokens"
    MAX_TOOL_CALLS = "max_tool_calls"
    CONTEXT_OVERFLOW = "context_overflow"
    PARSE_ERROR = "parse_error"
    ROLLOUT_TIMEOUT = "rollout_timeout"


STOP_METRIC_PREFIX = "stop/"
PARSE_ERROR_MASKED_METRIC_KEY = "parse_error_masked"
"""A transition carrying this metric trains on none of its action tokens."""


@dataclass(frozen=True)
class InitialObservationOverflow:
    """Returned by ``Env.initial_observation`` when the prompt alone exceeds the token budget;
    the rollout ends at once with one empty transition carrying ``reward``."""

    reward: float
    metrics: Metrics = field(default_factory=dict)
    logs: Logs = field(default_factory=dict)


@dataclass
class StepResult:
    reward: float
    episode_done: bool
    next_observation: Observation
    next_stop_condition: StopCondition
    metrics: Metrics = field(default_factory=dict)
    logs: Logs = field(default_factory=dict)


@dataclass
class Transition:
    ob: Observation
    ac: TokensWithLogprobs
    reward: float
    episode_done: bool
    metrics: Metrics = field(default_factory=dict)
    logs: Logs = field(default_factory=dict)


class ActionExtra(TypedDict, total=False):
    """Optional metadata passed with an action to ``Env.step``."""

    stop_reason: tinker.StopReason


class Env(ABC):
    """A single-use environment: one agent, one episode."""

    @abstractmethod
    async def initial_observation(
        self,
    ) -> tuple[Observation, StopCondition] | InitialObservationOverflow: ...

    @abstractmethod
    async def step(self, action: Action, *, extra: ActionExtra | None = None) -> StepResult: ...


@dataclass(frozen=True)
class Trajectory:
    transitions: list[Transition]
    final_ob: Observation
    stop_reason: str | None = None


@dataclass(frozen=True)
class RolloutError:
    """A failed rollout captured by an error-tolerant strategy (not used on the default path)."""

    error_type: str
    error_message: str


class EnvGroupBuilder(ABC):
    """Builds the environments of one group: GRPO centres rewards across it, and the group
    reward function sees every trajectory of it."""

    @abstractmethod
    async def make_envs(self) -> Sequence[Env]: ...

    async def compute_group_rewards(
        self, trajectory_group: list[Trajectory], env_group: Sequence[Env]
    ) -> list[tuple[float, Metrics]]:
        """Final reward added to each trajectory's per-step rewards; zero by default."""
        return [(0.0, {}) for _ in trajectory_group]

    async def cleanup(self) -> None:
        """Release what ``make_envs`` created; called after rewards, success or failure."""
        return None

    def logging_tags(self) -> list[str]:
        """Tags metrics are aggregated under (``env/<tag>/...``) besides ``env/all``."""
        return []


@dataclass
class TrajectoryGroup:
    trajectories_G: list[Trajectory]
    final_rewards_G: list[float]
    metrics_G: list[Metrics]
    rollout_errors: list[RolloutError] = field(default_factory=list)

    def get_total_rewards(self) -> list[float]:
        """Per-step rewards plus the group reward, per trajectory."""
        if len(self.trajectories_G) != len(self.final_rewards_G):
            raise ValueError(
                f"{len(self.trajectories_G)} trajectories but "
                f"{len(self.final_rewards_G)} final rewards"
            )
        return [
            sum(transition.reward for transition in trajectory.transitions) + final_reward
            for trajectory, final_reward in zip(
                self.trajectories_G, self.final_rewards_G, strict=True
            )
        ]


class RLDataset(ABC):
    """Batches of environment-group builders, indexed by step."""

    @abstractmethod
    def get_batch(self, index: int) -> Sequence[EnvGroupBuilder]: ...

    @abstractmethod
    def __len__(self) -> int: ...


@dataclass(frozen=True)
class RLDatasetBuilder(ABC):
    """Builds the training dataset and an optional test dataset, once, at the start of training.

    The reference's is a ``chz`` class; ours is a frozen dataclass (subclasses add fields).
    """

    @abstractmethod
    async def __call__(self) -> tuple[RLDataset, RLDataset | None]: ...
