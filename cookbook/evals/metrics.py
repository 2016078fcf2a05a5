"""Scoring a reply against its answer, and confidence intervals over a task's scores.

Normalisation is deliberately small and documented (no article stripping, no number parsing):
a score a reader cannot reproduce by hand is not worth asserting in a test.
"""

from __future__ import annotations

import math
import re
import statistics
import unicodedata

import numpy as np

from cookbook.specs.evals import CIMethod, ConfidenceSpec, MetricKind, MetricSpec

_SPACE = re.compile(r"\s+")


def _is_punctuation(char: str) -> bool:
    return unicodedata.category(char).startswith("P")


def normalize(text: str) -> str:
    """NFKC, case folded, runs of whitespace as one space, punctuation stripped at both ends."""
    text = _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()
    start, end = 0, len(text)
    while start < end and (_is_punctuation(text[start]) or text[start] == " "):
        start += 1
    while end > start and (_is_punctuation(text[end - 1]) or text[end - 1] == " "):
        end -= 1
    return text[start:end]


def extract(pattern: str, reply: str) -> str | None:
    """The last match of ``pattern`` in ``reply`` (group 1 if the pattern has a group).

    The last one, because a model that works a problem out states its final answer last.
    """
    compiled = re.compile(pattern)
    matches = list(compiled.finditer(reply))
    if not matches:
        return None
    last = matches[-1]
    return last.group(1) if compiled.groups else last.group(0)


def score_reply(metric: MetricSpec, reply: str, answer: str) -> tuple[float, str | None]:
    """(1.0 or 0.0, the extracted answer for ``regex``) for a generation metric."""
    match metric.kind:
        case MetricKind.EXACT:
            return float(reply.strip() == answer.strip()), None
        case MetricKind.NORMALIZED:
            return float(normalize(reply) == normalize(answer)), None
        case MetricKind.CONTAINS:
            return float(normalize(answer) in normalize(reply)), None
        case MetricKind.REGEX:
            found = extract(metric.pattern or "", reply)  # the spec requires a pattern
            if found is None:
                return 0.0, None
            return float(normalize(found) == normalize(answer)), found
    raise ValueError(f"{metric.kind} does not score sampled replies")


def weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    total = float(weights.sum())
    return float((values * weights).sum() / total) if total > 0 else math.nan


def wilson(successes: float, n: int, level: float) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (sensible at 0/n and n/n, unlike the
    normal approximation)."""
    if n == 0:
        return math.nan, math.nan
    z = statistics.NormalDist().inv_cdf(0.5 + level / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def bootstrap(
    values: np.ndarray, weights: np.ndarray, level: float, resamples: int, seed: int
) -> tuple[float, float]:
    """Percentile bootstrap of the weighted mean, resampling examples with a seeded generator."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, size=(resamples, n))
    totals = weights[picks].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        stats = (values[picks] * weights[picks]).sum(axis=1) / totals
    stats = stats[np.isfinite(stats)]
    if not len(stats):
        return math.nan, math.nan
    tail = (1 - level) / 2
    low, high = np.quantile(stats, [tail, 1 - tail])
    return float(low), float(high)


def confidence_interval(
    spec: ConfidenceSpec, values: np.ndarray, weights: np.ndarray, seed: int
) -> tuple[float, float]:
    if spec.method == CIMethod.WILSON:
        return wilson(float(values.sum()), len(values), spec.level)
    return bootstrap(values, weights, spec.level, spec.resamples, seed)
