"""What the renderer invariants (:mod:`.invariants`) and their per-format restatements
(:mod:`.restated`) both work with: an example as plain lists, the conversation a check applies
to, where two renderings part and a decoded window there, trained runs, and contents and tool
calls compared across representations.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from cookbook.renderers.base import Renderer
from cookbook.renderers.types import Content, Message, TrainOnWhat


def supervised(
    renderer: Renderer, messages: list[Message], train_on_what: TrainOnWhat
) -> tuple[list[int], list[float]]:
    """Tokens and weights as plain lists; ``np.asarray`` also accepts the reference's tensors."""
    model_input, weights = renderer.build_supervised_example(messages, train_on_what)
    return model_input.to_ints(), [float(w) for w in np.asarray(weights).reshape(-1).tolist()]


def require_last_assistant(messages: list[Message], invariant: str) -> None:
    if not messages or messages[-1]["role"] != "assistant":
        raise ValueError(
            f"[{invariant}] only applies to conversations ending with an assistant message; "
            f"got last role {messages[-1]['role'] if messages else None!r}"
        )


def first_difference(expected: Sequence[int], actual: Sequence[int]) -> int:
    """Index of the first differing token (the shorter length when one is a prefix)."""
    for index, (a, b) in enumerate(zip(expected, actual, strict=False)):
        if a != b:
            return index
    return min(len(expected), len(actual))


def shown(renderer: Renderer, tokens: Sequence[int], at: int, width: int = 6) -> str:
    """A decoded window around ``at``, so a failure shows where two renderings part ways."""
    start = max(0, at - width)
    window = list(tokens[start : at + width])
    return (
        f"tokens[{start}:{start + len(window)}]={window} text={renderer.tokenizer.decode(window)!r}"
    )


def weighted_runs(weights: Sequence[float]) -> list[tuple[int, int]]:
    """Maximal ``[start, end)`` runs of weight-1 positions."""
    runs: list[tuple[int, int]] = []
    start: int | None = None
    for index, weight in enumerate([*weights, 0.0]):
        if weight == 1 and start is None:
            start = index
        elif weight != 1 and start is not None:
            runs.append((start, index))
            start = None
    return runs


def count_occurrences(tokens: Sequence[int], needle: Sequence[int]) -> int:
    n = len(needle)
    return sum(1 for i in range(len(tokens) - n + 1) if list(tokens[i : i + n]) == list(needle))


def primitive_root(sequence: Sequence[int]) -> list[int]:
    """The shortest unit that ``sequence`` is a whole repetition of (itself if none)."""
    n = len(sequence)
    for period in range(1, n):
        if n % period == 0 and list(sequence) == list(sequence[:period]) * (n // period):
            return list(sequence[:period])
    return list(sequence)


def content_texts(content: Content) -> list[str]:
    if isinstance(content, str):
        return [content]
    return [part.get("text", "") or part.get("thinking", "") for part in content]


def normalized_content(content: Any) -> Any:
    """Content compared across representations: a lone text part is the same as a string."""
    if isinstance(content, list) and len(content) == 1 and content[0].get("type") == "text":
        return content[0]["text"]
    return content


def calls_of(message: Message) -> list[tuple[str, Any]]:
    """Tool calls by name and decoded arguments (ids are not part of every format)."""
    return [
        (call.function.name, json.loads(call.function.arguments))
        for call in message.get("tool_calls", [])
    ]
