"""Offline sl_basic end to end: time to the first step, total time and peak memory.

Runs ``cookbook-run specs/sl_basic.yaml`` exactly as the README's Quickstart does (the local
backend with the spec's local profile) in a child process, several times, and reports medians:
``total_s`` is the child's wall clock (imports, tokenizer, dataset, model, training, evals,
checkpoints, final sample, plot); ``first_step_s`` is when the first step's results were logged,
counted from the moment the training loop was set up (``time/since_start`` in timing.jsonl);
``peak_rss_mib`` is the child's maximum resident set size.

    python tools/bench_sl_basic.py --output reports/bench/sl_basic.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cookbook.versions import package_versions

PACKAGES = ("cookbook", "torch", "transformers", "peft", "tinker", "tokenizers")


def run_once(spec: Path) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp) / "run"
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "cookbook.cli", str(spec), "--log-dir", str(log_dir)],
            check=True,
            stdout=subprocess.DEVNULL,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
        )
        total = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        rows = [json.loads(x) for x in (log_dir / "timing.jsonl").read_text().splitlines()]
        steps = len(rows)
    return {
        "total_s": total,
        "first_step_s": rows[0]["time/since_start"],
        "steps": steps,
        # ru_maxrss of children is the largest child so far (KiB on Linux).
        "peak_rss_mib": max(peak, before) / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--spec", type=Path, default=Path("specs/sl_basic.yaml"))
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    runs = [run_once(args.spec) for _ in range(args.runs)]
    result = {
        "benchmark": "cookbook-run specs/sl_basic.yaml (local backend, offline)",
        "runs": runs,
        "median_total_s": statistics.median(r["total_s"] for r in runs),
        "median_first_step_s": statistics.median(r["first_step_s"] for r in runs),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
        "target_total_s": 300,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "versions": package_versions(PACKAGES),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"sl_basic offline: {result['median_total_s']:.1f} s total (target <= 300 s), first "
        f"step after {result['median_first_step_s']:.1f} s, {runs[0]['steps']} steps, peak "
        f"{result['peak_rss_mib']:.0f} MiB"
    )
    return 0 if result["median_total_s"] <= result["target_total_s"] else 1


if __name__ == "__main__":
    sys.exit(main())
