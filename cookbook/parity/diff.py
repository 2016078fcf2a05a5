"""Readable per-token diffs: the first divergence, aligned, with a little context.

A wall of integers tells a porter nothing; position, id, decoded text, weight and the segment
(message and part) of the first differing token usually tell them the bug.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

CONTEXT = 3


def _segment_at(segments: Sequence[dict[str, Any]] | None, position: int) -> str:
    if segments is None:  # a golden whose renderer's layout the reference could not show
        return "not recorded"
    for segment in segments:
        if segment["start"] <= position < segment["end"]:
            if segment["message"] >= 0:
                return f"message {segment['message']} {segment['kind']}"
            # Index -1: the BOS, or a message the renderer adds itself (gpt-oss's system prompt).
            return "bos" if segment["kind"] == "bos" else f"built-in message {segment['kind']}"
    return "past the end"


def _cell(ids: Sequence[int], pieces: Sequence[str], weights: Sequence[float], pos: int) -> str:
    if pos >= len(ids):
        return f"{'-':>8} {'(none)':<22} {'':>4}"
    text = repr(pieces[pos]) if pos < len(pieces) else "?"
    weight = f"{weights[pos]:g}" if pos < len(weights) else "?"
    return f"{ids[pos]:>8} {text[:22]:<22} {weight:>4}"


def divergence(
    expected_ids: Sequence[int],
    actual_ids: Sequence[int],
    expected_weights: Sequence[float],
    actual_weights: Sequence[float],
) -> tuple[int, str] | None:
    """The first position where ids or weights differ and which (``token`` or ``weight``);
    None if equal. A position past one side's end is a token divergence."""
    length = max(len(expected_ids), len(actual_ids))
    position = next(
        (
            i
            for i in range(length)
            if i >= len(expected_ids)
            or i >= len(actual_ids)
            or expected_ids[i] != actual_ids[i]
            or _at(expected_weights, i) != _at(actual_weights, i)
        ),
        None,
    )
    if position is None:
        return None
    same_id = (
        position < min(len(expected_ids), len(actual_ids))
        and expected_ids[position] == actual_ids[position]
    )
    return position, "weight" if same_id else "token"


def first_divergence(
    expected: dict[str, Any],
    actual: dict[str, Any],
    expected_weights: Sequence[float],
    actual_weights: Sequence[float],
    labels: tuple[str, str] = ("expected", "actual"),
) -> str | None:
    """Aligned table around the first position where ids or weights differ; None if equal.

    ``expected``/``actual`` are token views (``ids``, ``pieces``, ``segments``); ``labels``
    name the two sides (the drift report compares two reference releases, not ours with one).
    """
    exp_ids, act_ids = expected["ids"], actual["ids"]
    found = divergence(exp_ids, act_ids, expected_weights, actual_weights)
    if found is None:
        return None
    position, what = found
    length = max(len(exp_ids), len(act_ids))
    left, right = labels
    lines = [
        f"first {what} divergence at position {position} "
        f"({left} {len(exp_ids)} tokens, {right} {len(act_ids)}); "
        f"{left} segment: {_segment_at(expected.get('segments', []), position)}, "
        f"{right} segment: {_segment_at(actual.get('segments', []), position)}",
        f"  {'pos':>5} | {left + ' id':>8} {'text':<22} {'w':>4} | "
        f"{right + ' id':>8} {'text':<22} {'w':>4}",
    ]
    for pos in range(max(0, position - CONTEXT), min(length, position + CONTEXT + 1)):
        marker = ">" if pos == position else " "
        lines.append(
            f"{marker} {pos:>5} | "
            f"{_cell(exp_ids, expected.get('pieces', []), expected_weights, pos)} | "
            f"{_cell(act_ids, actual.get('pieces', []), actual_weights, pos)}"
        )
    return "\n".join(lines)


def _at(values: Sequence[float], index: int) -> float | None:
    return values[index] if index < len(values) else None
