"""Layered RL parity: what the reference's RL loops did on the fake backend, layer by layer.

An RL golden (``golden/recipes/rl_<case>.json``, made by ``tools/generate_rl_goldens.py``) holds
one small run of ``tinker_cookbook.rl.train.main`` (arithmetic env) or ``recipes/rl_loop.main``
(GSM8K stand-in). Its layers, in the order data flows, each compared by :func:`compare_layer`:

- ``config``: the reference config's scalar settings (ours must agree on every one it has);
- ``env_groups``: per step, each group's problem (``[x, y]`` for arithmetic);
- ``prompts``: per step, group and trajectory, the prompt tokens;
- ``samples``: per step/group/traj/turn, the sampled ``tokens`` and ``logprobs``;
- ``responses``: the renderer's parse of each sample (its text content);
- ``rewards``: per group, ``total`` rewards and per-turn ``reward`` and env ``metrics``;
- ``kept_groups``: per step, indices of the groups left after ``remove_constant_reward_groups``;
- ``advantages``: per step and kept group, each trajectory's advantage;
- ``datums``: per step, :func:`~cookbook.digests.datum_to_json` of every datum (with mask);
- ``run``: client calls, metrics rows (``time/*`` dropped), checkpoint rows
  (:func:`cookbook.parity.recipe.compare_run`);
- ``resume``: a run crashed at a step's forward_backward and its resume.

A diff names the layer and the item, e.g. ``layer advantages: step 1 kept group 3 traj 2:
expected 0.5, got -0.5``. ``rl_loop`` goldens have ``config``, ``run`` and ``resume`` only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cookbook.exceptions import ConfigurationError
from cookbook.parity.layers import EXACT, at, first_diff, first_layer_difference
from cookbook.parity.recipe import compare_resume, compare_run, load_layered_golden

RL_SCHEMA_VERSION = 1
RL_PREFIX = "rl_"
RL_REGENERATE = "nox -s golden (tools/generate_rl_goldens.py)"
RL_MANIFEST_REGENERATE = "nox -s golden (tools/generate_recipe_goldens.py, generate_rl_goldens.py)"
_LEVELS: dict[str, tuple[str, ...]] = {
    "env_groups": ("step", "group"),
    "prompts": ("step", "group", "traj"),
    "samples": ("step", "group", "traj", "turn"),
    "responses": ("step", "group", "traj", "turn"),
    "rewards": ("step", "group"),
    "kept_groups": ("step",),
    "advantages": ("step", "kept group", "traj"),
    "datums": ("step", "datum"),
}
LAYERS: tuple[str, ...] = ("config", *_LEVELS, "run", "resume")


def load_rl_golden(path: Path) -> dict[str, Any]:
    """An RL golden (:data:`LAYERS`), checked by
    :func:`~cookbook.parity.recipe.load_layered_golden`."""
    return load_layered_golden(
        path, kind="RL", schema_version=RL_SCHEMA_VERSION, layers=LAYERS, regenerate=RL_REGENERATE
    )


def nested_diff(
    expected: Any, actual: Any, levels: Sequence[str], rel_tol: float = EXACT
) -> str | None:
    """:func:`~cookbook.parity.layers.first_diff` with the outer list levels named
    (``step 1 group 3 traj 2: ...``)."""
    if not levels or not (isinstance(expected, list) and isinstance(actual, list)):
        return first_diff(expected, actual, rel_tol)
    name = levels[0]
    for index, (exp, act) in enumerate(zip(expected, actual, strict=False)):
        found = nested_diff(exp, act, levels[1:], rel_tol)
        if found:
            return at(f"{name} {index}", found)
    if len(expected) != len(actual):
        return f"expected {len(expected)} {name}s, got {len(actual)}"
    return None


def _compare_config(expected: Mapping, actual: Mapping) -> str | None:
    """Every setting ours has must match the reference's; settings only one side has are
    left out (ours refuses the reference's unported options at spec load)."""
    shared = [k for k in expected if k in actual]
    return first_diff({k: expected[k] for k in shared}, {k: actual[k] for k in shared})


def _comparer(layer: str) -> Callable[[Any, Any], str | None]:
    if layer == "config":
        return _compare_config
    if layer == "run":
        return compare_run
    if layer == "resume":
        return compare_resume
    return lambda expected, actual: nested_diff(expected, actual, _LEVELS[layer])


def compare_layer(golden: Mapping[str, Any], layer: str, actual: Any) -> str | None:
    """One layer of ours against the golden: ``layer NAME: where: expected .., got ..``."""
    if layer not in LAYERS:
        raise ConfigurationError(f"unknown RL layer {layer!r}; known: {', '.join(LAYERS)}")
    expected = golden["config"] if layer == "config" else golden["layers"].get(layer)
    if expected is None:
        return f"layer {layer}: not in golden {golden['name']!r}"
    found = _comparer(layer)(expected, actual)
    return f"layer {layer}: {found}" if found else None


def first_difference(golden: Mapping[str, Any], actual: Mapping[str, Any]) -> str | None:
    """The first differing layer, in data order, among the layers ``actual`` provides."""
    return first_layer_difference(LAYERS, compare_layer, golden, actual)
