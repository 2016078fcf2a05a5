"""Reinforcement learning: environment protocol, types and training loops.

Mirrors ``tinker_cookbook.rl``; the interleaved datasets and rollout strategies of the reference
are not implemented (the default training path uses neither).
"""

from cookbook.rl.types import (
    Action,
    ActionExtra,
    Env,
    EnvGroupBuilder,
    Logs,
    Metrics,
    Observation,
    RLDataset,
    RLDatasetBuilder,
    RolloutError,
    StepResult,
    StopReason,
    Trajectory,
    TrajectoryGroup,
    Transition,
)

__all__ = [
    "Action",
    "ActionExtra",
    "Env",
    "EnvGroupBuilder",
    "Logs",
    "Metrics",
    "Observation",
    "RLDataset",
    "RLDatasetBuilder",
    "RolloutError",
    "StepResult",
    "StopReason",
    "Trajectory",
    "TrajectoryGroup",
    "Transition",
]
