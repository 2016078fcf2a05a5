"""Timing rounds shared by the benchmarks in tools/: standard library only, so the renderer
bench (run in the reference's virtualenv, no torch assumed) and the local-backend benches can
both import it.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable


def calls_per_round(variant: Callable[[], object], min_seconds: float, probes: int = 3) -> int:
    """How many back-to-back calls of ``variant`` make a timed run last ``min_seconds``.

    A run of a few milliseconds on a shared machine is mostly the scheduler's noise (a
    preempted thread, another job's burst); repeating the call until a run lasts long enough
    averages that out. The fastest of ``probes`` untimed calls sets the count, so a disturbed
    probe cannot make the runs too short.
    """
    fastest = math.inf
    for _ in range(probes):
        start = time.perf_counter()
        variant()
        fastest = min(fastest, time.perf_counter() - start)
    return max(1, math.ceil(min_seconds / max(fastest, 1e-9)))


def time_rounds(
    variants: dict[str, Callable[[], object]],
    rounds: int,
    cpu: dict[str, list[float]] | None = None,
    *,
    warm_up: bool = True,
    collect: bool = False,
    calls: dict[str, int] | None = None,
) -> dict[str, list[float]]:
    """Wall seconds of each variant per round, one run per variant per round, the order
    rotating each round so no variant always runs first.

    ``warm_up`` runs every variant once first, not counted (lazy builds, caches, allocators).
    ``collect`` freezes what exists before the rounds out of the collector and runs
    ``gc.collect()`` (untimed) before each run, so a run does not pay for the previous run's
    garbage, nor the collector for walking every loaded vocabulary: that walk took 1.6 s a
    call once a few tokenizers were loaded. ``cpu``, if given, gets this process's CPU seconds
    (all its threads: an in-process server's too) for the same runs. ``calls`` names variants
    whose run is that many back-to-back calls (see ``calls_per_round``); their seconds, wall
    and CPU, are per call: the run's total divided by the count.
    """
    names = list(variants)
    calls = calls or {}
    if warm_up:
        for name in names:
            variants[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    if collect:
        gc.collect()
        gc.freeze()
    try:
        for r in range(rounds):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                if collect:
                    gc.collect()
                variant, count = variants[name], calls.get(name, 1)
                start_cpu = time.process_time() if cpu is not None else 0.0
                start = time.perf_counter()
                for _ in range(count):
                    variant()
                times[name].append((time.perf_counter() - start) / count)
                if cpu is not None:
                    cpu.setdefault(name, []).append((time.process_time() - start_cpu) / count)
    finally:
        if collect:
            gc.unfreeze()
    return times
