"""The first difference between two JSON values, labelled for humans.

Shared by what sits on either side of the backend/parity line: the tinker backend's cassettes
name the first field where a replayed call leaves its recording, and the parity layers
(:mod:`cookbook.parity.layers`) the first where two runs part. Here, below both, so that
neither imports the other for it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

EXACT = 0.0
"""``rel_tol`` for values that must be equal."""


def _numbers_differ(expected: float, actual: float, rel_tol: float) -> bool:
    nans = [isinstance(x, float) and math.isnan(x) for x in (expected, actual)]
    if any(nans):
        return not all(nans)
    if rel_tol == EXACT:
        return expected != actual
    return not math.isclose(expected, actual, rel_tol=rel_tol, abs_tol=1e-12)


def is_number(value: Any) -> bool:
    """A JSON number: ``bool`` is an ``int`` to Python, not a number to JSON."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def first_diff(expected: Any, actual: Any, rel_tol: float = EXACT, path: str = "") -> str | None:
    """Where two JSON values first differ, as ``path: expected X, got Y``; None if equal.

    At the top level (empty path) the message is just ``expected X, got Y``.
    """
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        for key in expected:
            sub = f"{path}.{key}" if path else str(key)
            if key not in actual:
                return f"{sub}: missing (expected {_short(expected[key])})"
            found = first_diff(expected[key], actual[key], rel_tol, sub)
            if found:
                return found
        extra = [k for k in actual if k not in expected]
        if extra:
            sub = f"{path}.{extra[0]}" if path else str(extra[0])
            return f"{sub}: unexpected (got {_short(actual[extra[0]])})"
        return None
    if isinstance(expected, list) and isinstance(actual, list):
        for index, (exp, act) in enumerate(zip(expected, actual, strict=False)):
            found = first_diff(exp, act, rel_tol, f"{path}[{index}]")
            if found:
                return found
        if len(expected) != len(actual):
            return at(path, f"expected {len(expected)} items, got {len(actual)}")
        return None
    if is_number(expected) and is_number(actual):
        differ = _numbers_differ(expected, actual, rel_tol)
    else:
        differ = type(expected) is not type(actual) or expected != actual
    return at(path, f"expected {_short(expected)}, got {_short(actual)}") if differ else None


def at(where: str, message: str) -> str:
    """``where: message``, or ``where message`` when ``message`` starts with a path."""
    if not where:
        return message
    return f"{where}: {message}" if message.startswith("expected") else f"{where} {message}"
