"""Timing rounds shared by the benchmarks in tools/: standard library only, so the renderer
bench (run in the reference's virtualenv, no torch assumed) and the local-backend benches can
both import it.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Mapping


def calls_per_round(variant: Callable[[], object], min_seconds: float, probes: int = 3) -> int:
    """How many calls of ``variant`` make a run do ``min_seconds`` of work.

    A run of a few milliseconds on a shared machine is mostly the scheduler's noise (a
    preempted thread, another job's burst); repeating the call until a run lasts long enough
    averages that out. The count comes from the least CPU time (this process, every thread)
    of ``probes`` untimed calls: unlike wall time it hardly moves with the machine's load, so
    a loaded machine does not get fewer calls per run, and on a quiet one a run lasts about
    ``min_seconds``.
    """
    least = math.inf
    for _ in range(probes):
        start = time.process_time()
        variant()
        least = min(least, time.process_time() - start)
    return max(1, math.ceil(min_seconds / max(least, 1e-9)))


def time_rounds(
    variants: dict[str, Callable[[], object]],
    rounds: int,
    cpu: dict[str, list[float]] | None = None,
    *,
    warm_up: bool = True,
    collect: bool = False,
    together: Mapping[tuple[str, ...], int] | None = None,
) -> dict[str, list[float]]:
    """Wall seconds of each variant per round, one run per variant per round, the order
    rotating each round so no variant always runs first.

    ``warm_up`` runs every variant once first, not counted (lazy builds, caches, allocators).
    ``collect`` freezes what exists before the rounds out of the collector and runs
    ``gc.collect()`` (untimed) before each run, so a run does not pay for the previous run's
    garbage, nor the collector for walking every loaded vocabulary: that walk took 1.6 s a
    call once a few tokenizers were loaded. ``cpu``, if given, gets this process's CPU seconds
    (all its threads: an in-process server's too) for the same runs.

    ``together`` maps groups of variants to a count of calls: the variants of a group share
    one run, each called that many times in turn (the order rotating), every call timed on
    its own, so all of them see the same moments of the machine's load and their ratios do
    not depend on what another job did between two runs. Their seconds, wall and CPU, are per
    call (the mean of the run's calls).
    """
    together = together or {}
    grouped = {name for group in together for name in group}
    slots: list[tuple[str, ...]] = [(name,) for name in variants if name not in grouped]
    slots += together
    calls = {**dict.fromkeys(slots, 1), **together}
    if warm_up:
        for name in variants:
            variants[name]()
    times: dict[str, list[float]] = {name: [] for name in variants}
    cpus: dict[str, list[float]] = {name: [] for name in variants}
    if collect:
        gc.collect()
        gc.freeze()
    try:
        for r in range(rounds):
            shift = r % len(slots)
            for slot in slots[shift:] + slots[:shift]:
                if collect:
                    gc.collect()
                count = calls[slot]
                wall = dict.fromkeys(slot, 0.0)
                used = dict.fromkeys(slot, 0.0)
                for i in range(count):
                    turn = i % len(slot)
                    for name in slot[turn:] + slot[:turn]:
                        start_cpu = time.process_time()
                        start = time.perf_counter()
                        variants[name]()
                        wall[name] += time.perf_counter() - start
                        used[name] += time.process_time() - start_cpu
                for name in slot:
                    times[name].append(wall[name] / count)
                    cpus[name].append(used[name] / count)
    finally:
        if collect:
            gc.unfreeze()
    if cpu is not None:
        for name, seconds in cpus.items():
            cpu.setdefault(name, []).extend(seconds)
    return times
