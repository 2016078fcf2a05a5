"""What an RL training loop did, step by step, observed from outside: the RL parity layers.

The same observer watches the reference's ``tinker_cookbook.rl.train`` (in
``tools/generate_rl_goldens.py``) and ours (``cookbook.rl.train``, in tests/test_rl_parity.py):
both loops look up the same four names in their module at call time, so wrapping them there
sees each loop's own values without changing what it does:

- ``do_group_rollout_and_filter_constant_reward(sampling_client, builder, ...)``: per group,
  the builder (its problem) and the ``TrajectoryGroup`` (prompts, samples, rewards);
- ``remove_constant_reward_groups(groups)``: which groups were kept;
- ``compute_advantages(groups)`` and ``assemble_training_data(groups, advantages)``: the
  advantages and the datums (with their ``mask``). The reference's ``print_group`` also calls
  both, on single groups, before the real call: the last call of a step is the one kept. The
  next rollout after an ``assemble_training_data`` opens the next step.

:func:`rl_step_layers` turns what was seen into the layers :mod:`cookbook.parity.rl_golden`
compares, in data order: env_groups -> prompts -> samples -> responses -> rewards ->
kept_groups -> advantages -> datums.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from cookbook.digests import datum_to_json

ROLLOUT = "do_group_rollout_and_filter_constant_reward"
REMOVE = "remove_constant_reward_groups"
ADVANTAGES = "compute_advantages"
ASSEMBLE = "assemble_training_data"


@dataclass
class ObservedStep:
    groups: list[tuple[Any, Any]] = field(default_factory=list)
    """(builder, trajectory group or None) in rollout order."""
    kept: list[Any] | None = None
    advantages: list[Any] | None = None
    datums: list[Any] | None = None


@dataclass
class RLObservation:
    steps: list[ObservedStep] = field(default_factory=lambda: [ObservedStep()])

    @property
    def current(self) -> ObservedStep:
        return self.steps[-1]

    def rollout_step(self) -> ObservedStep:
        """The step a rollout belongs to: a new one once the current one has trained."""
        if self.steps[-1].datums is not None:
            self.steps.append(ObservedStep())
        return self.steps[-1]

    def finished_steps(self) -> list[ObservedStep]:
        return [s for s in self.steps if s.datums is not None]


@contextlib.contextmanager
def observing_rl(module: ModuleType) -> Iterator[RLObservation]:
    """Wrap the four names in ``module`` (a loop's module) for the duration."""
    seen = RLObservation()
    originals = {name: getattr(module, name) for name in (ROLLOUT, REMOVE, ADVANTAGES, ASSEMBLE)}

    @functools.wraps(originals[ROLLOUT])
    async def rollout(*args: Any, **kwargs: Any) -> Any:
        builder = args[1] if len(args) > 1 else kwargs["env_group_builder"]
        step = seen.rollout_step()
        slot = len(step.groups)
        step.groups.append((builder, None))
        group = await originals[ROLLOUT](*args, **kwargs)
        step.groups[slot] = (builder, group)
        return group

    def remove(groups: Any) -> Any:
        kept = originals[REMOVE](groups)
        seen.current.kept = list(kept)
        return kept

    def advantages(groups: Any) -> Any:
        values = originals[ADVANTAGES](groups)
        seen.current.advantages = list(values)
        return values

    def assemble(groups: Any, advantages_P: Any) -> Any:
        data, metadata = originals[ASSEMBLE](groups, advantages_P)
        seen.current.datums = list(data)
        return data, metadata

    wrappers = {ROLLOUT: rollout, REMOVE: remove, ADVANTAGES: advantages, ASSEMBLE: assemble}
    for name, wrapper in wrappers.items():
        setattr(module, name, wrapper)
    try:
        yield seen
    finally:
        for name, original in originals.items():
            setattr(module, name, original)


def problem_of(builder: Any) -> list[Any]:
    """A group's problem: the JSON scalars its env factory was bound to (x and y for the
    arithmetic env; question and answer for GSM8K)."""
    thunk = getattr(builder, "env_thunk", None)
    args = getattr(thunk, "args", ())
    return [a for a in args if isinstance(a, str | int | float | bool)]


def _floats(values: Any) -> list[float]:
    return np.asarray(values, dtype=np.float32).astype(np.float64).tolist()


def rl_step_layers(
    observation: RLObservation, parse: Callable[[list[int]], str]
) -> dict[str, list[Any]]:
    """Each finished step's layers (lists over steps; ``parse`` decodes a response's text)."""
    layers: dict[str, list[Any]] = {
        "env_groups": [],
        "prompts": [],
        "samples": [],
        "responses": [],
        "rewards": [],
        "kept_groups": [],
        "advantages": [],
        "datums": [],
    }
    for step in observation.finished_steps():
        groups = [g for _, g in step.groups]
        layers["env_groups"].append([problem_of(b) for b, _ in step.groups])
        trajs = [list(g.trajectories_G) if g is not None else [] for g in groups]
        layers["prompts"].append(
            [[[int(t) for t in tr.transitions[0].ob.to_ints()] for tr in ts] for ts in trajs]
        )
        layers["samples"].append(
            [
                [
                    [
                        {
                            "tokens": [int(t) for t in tn.ac.tokens],
                            "logprobs": _floats(tn.ac.maybe_logprobs or []),
                        }
                        for tn in tr.transitions
                    ]
                    for tr in ts
                ]
                for ts in trajs
            ]
        )
        layers["responses"].append(
            [[[parse(list(tn.ac.tokens)) for tn in tr.transitions] for tr in ts] for ts in trajs]
        )
        layers["rewards"].append(
            [
                {
                    "total": _floats(g.get_total_rewards()),
                    "steps": [
                        [
                            {"reward": float(tn.reward), "metrics": tn.metrics}
                            for tn in tr.transitions
                        ]
                        for tr in g.trajectories_G
                    ],
                }
                if g is not None
                else None
                for g in groups
            ]
        )
        index = {id(g): i for i, g in enumerate(groups)}
        kept = step.kept if step.kept is not None else [g for g in groups if g is not None]
        layers["kept_groups"].append([index.get(id(g), -1) for g in kept])
        layers["advantages"].append([_floats(a) for a in step.advantages or []])
        layers["datums"].append([datum_to_json(d) for d in step.datums or []])
    return layers
