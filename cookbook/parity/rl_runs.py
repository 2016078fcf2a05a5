"""Run-to-run comparison of RL runs (``cookbook-run compare RUN_A RUN_B``), layer by layer.

An RL run records, beside config.json and metrics.jsonl, ``rl_steps.jsonl``: one row per
training step with that step's layers as :mod:`cookbook.parity.rl_observe` sees them
(env groups, prompts, samples, responses, rewards, kept groups, advantages, datums). Bulky items
(prompt tokens, samples, response texts, datums) are stored as short digests, so a long run's
file stays small while the comparison still names the first differing step, group and
trajectory. :func:`cookbook.parity.runs.compare_runs` uses :data:`RL_RUN_LAYERS` when either
run has the file.

Recording (the RL recipe runner)::

    with recording_rl_steps(run.log_dir, first_step=start_batch, renderer=renderer):
        asyncio.run(cookbook.rl.train.main(config, service_client, run_log))

A resumed run rewrites the rows from its first step on, as metrics.jsonl does.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cookbook.digests import content_digest
from cookbook.parity.golden import write_atomic
from cookbook.parity.layers import at
from cookbook.parity.recipe import read_jsonl
from cookbook.parity.rl_golden import nested_diff
from cookbook.parity.rl_observe import observing_rl, rl_step_layers

RL_STEPS_FILE = "rl_steps.jsonl"
_DIGESTED = {"prompts": 2, "samples": 2, "responses": 2, "datums": 1}
"""Layer -> how many list levels under the step lead to the items replaced by digests (a
trajectory's prompt, samples and responses; a datum)."""
_LEVELS = {
    "env_groups": ("group",),
    "prompts": ("group", "traj"),
    "samples": ("group", "traj"),
    "responses": ("group", "traj"),
    "rewards": ("group",),
    "kept_groups": (),
    "advantages": ("kept group", "traj"),
    "datums": ("datum",),
}
_TITLES = {
    "env_groups": "env groups",
    "kept_groups": "kept groups",
}


def _digest(value: Any) -> str:
    return content_digest(value)[:16]


def _compact(value: Any, depth: int) -> Any:
    """Digest the items ``depth`` list levels down (depth 1: each item of ``value``)."""
    if depth <= 1:
        return [_digest(item) for item in value]
    return [_compact(item, depth - 1) for item in value]


def step_rows(layers: dict[str, list[Any]], first_step: int) -> list[dict[str, Any]]:
    """One ``rl_steps.jsonl`` row per observed step, bulky layers digested."""
    rows = []
    for index in range(len(layers["env_groups"])):
        row: dict[str, Any] = {"step": first_step + index}
        for name in _LEVELS:
            value = layers[name][index]
            row[name] = _compact(value, _DIGESTED[name]) if name in _DIGESTED else value
        rows.append(row)
    return rows


def write_rl_steps(log_dir: Path, rows: list[dict[str, Any]], first_step: int) -> None:
    """Keep earlier rows (before ``first_step``: a resumed run's predecessor), add ``rows``."""
    kept = [r for r in read_jsonl(log_dir / RL_STEPS_FILE) if r.get("step", 0) < first_step]
    text = "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in [*kept, *rows])
    write_atomic(log_dir / RL_STEPS_FILE, text)


def response_parser(renderer: Any) -> Callable[[list[int]], str]:
    """A response's text as our ProblemEnv reads it (the responses layer)."""
    from cookbook.rl.problem_env import get_text_content

    def parse(tokens: list[int]) -> str:
        message, _ = renderer.parse_response(tokens)
        return get_text_content(message)

    return parse


@contextlib.contextmanager
def recording_rl_steps(log_dir: Path, first_step: int, renderer: Any) -> Iterator[None]:
    """Observe ``cookbook.rl.train`` while the block runs; write its steps when it ends (also
    when it fails: a crashed run keeps the steps it finished)."""
    from cookbook.rl import train

    with observing_rl(train) as seen:
        try:
            yield
        finally:
            layers = rl_step_layers(seen, response_parser(renderer))
            write_rl_steps(log_dir, step_rows(layers, first_step), first_step)


def _compare_steps(name: str) -> Callable[[Any, Any, float], str | None]:
    def compare(a: list[dict], b: list[dict], _rtol: float) -> str | None:
        for row_a, row_b in zip(a, b, strict=False):
            if row_a["step"] != row_b["step"]:
                return f"run A has step {row_a['step']} where run B has step {row_b['step']}"
            found = nested_diff(row_a.get(name), row_b.get(name), _LEVELS[name])
            if found:
                return at(f"step {row_a['step']}", found)
        if len(a) != len(b):
            return f"run A has {len(a)} steps, run B {len(b)}"
        return None

    return compare


RL_RUN_LAYERS: list[tuple[str, str, str, Callable[[Any, Any, float], str | None]]] = [
    (name, f"({i + 2}) {_TITLES.get(name, name)}", RL_STEPS_FILE, _compare_steps(name))
    for i, name in enumerate(_LEVELS)
]
"""Between the config and the metrics layers of :mod:`cookbook.parity.runs`."""


def is_rl_run(run: Path) -> bool:
    """Has step layers, or is an ``rl_recipe`` run (whose missing layers are then reported)."""
    if (run / RL_STEPS_FILE).is_file():
        return True
    try:
        config = json.loads((run / "config.json").read_text("utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    spec = config.get("spec") if isinstance(config, dict) else None
    return isinstance(spec, dict) and spec.get("kind") == "rl_recipe"
