"""Layered comparison (recipe goldens, RL goldens, run-to-run compare): the first difference
between two runs, labelled for humans, on :func:`cookbook.json_diff.first_diff` (re-exported
here with ``at`` and ``EXACT``).

A layer comparison walks expected and actual in data order and stops at the first difference,
so its message points at the earliest place two runs part: ``step 1 group 3 traj 2: expected
0.5, got -0.5``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cookbook.json_diff import EXACT, at, first_diff


def diff_items(
    expected: Sequence[Any],
    actual: Sequence[Any],
    label: Callable[[int, Any], str],
    noun: str,
    rel_tol: float,
) -> str | None:
    """First differing item of two sequences, labelled for humans (``batch 0 datum 2 ...``)."""
    for index, (exp, act) in enumerate(zip(expected, actual, strict=False)):
        found = first_diff(exp, act, rel_tol)
        if found:
            return at(label(index, exp), found)
    if len(expected) != len(actual):
        return f"expected {len(expected)} {noun}, got {len(actual)}"
    return None


def first_layer_difference(
    layers: Sequence[str],
    compare_layer: Callable[[Mapping[str, Any], str, Any], str | None],
    golden: Mapping[str, Any],
    actual: Mapping[str, Any],
) -> str | None:
    """The first of ``layers`` (in data order) that ``actual`` provides and that differs."""
    for layer in layers:
        if layer in actual:
            found = compare_layer(golden, layer, actual[layer])
            if found:
                return found
    return None


__all__ = ["EXACT", "at", "diff_items", "first_diff", "first_layer_difference"]
