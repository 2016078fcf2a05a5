"""Regenerate golden/rl/ (grading.json, envs.json) from the reference's math RL (never in CI).

Runs in the reference's virtualenv (``tinker-cookbook[math-rl]==0.5.8``: sympy, pylatexenc,
math-verify). Every input of tools/grading_corpus.py (hand-picked odd answers and responses,
plus seeded random surface forms of one value) goes through the reference's own functions; each
output is stored as ``{"value": ...}`` or, when the function raises, ``{"raises": type,
"message": str}``. A pair whose grading comes near the reference's one-second timeout stops the
run: its safe_grade verdict would depend on the machine. envs.json (prompts and rewards of the
math environments) comes from tools/math_env_goldens.py. golden/rl/manifest.json, written last,
holds every file's sha256.

Usage: python tools/generate_grading_goldens.py [--golden golden] [--seed 0]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import platform
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tinker_cookbook.recipes.math_rl import math_grading as ref
from tinker_cookbook.recipes.math_rl.arithmetic_env import _extract_final_int
from tinker_cookbook.recipes.math_rl.math_env import extract_gsm8k_final_answer, safe_grade

from cookbook.parity import golden as g

sys.path.insert(0, str(Path(__file__).resolve().parent))
import grading_corpus as corpus
import math_env_goldens

SCHEMA_VERSION = 1
SEED = 0
RANDOM_PAIRS = 640
RANDOM_RESPONSES = 160
SLOW_SECONDS = 0.4
"""A pair graded slower than this (under the reference's 1 s timeout) is refused."""
VERSIONED = ("tinker-cookbook", "sympy", "pylatexenc", "math-verify", "latex2sympy2_extended")

STRING_FUNCTIONS: dict[str, Callable[[str], Any]] = {
    "normalize_answer": ref.normalize_answer,
    "_normalize": ref._normalize,
    "split_tuple": ref.split_tuple,
    "extract_boxed": ref.extract_boxed,
    "extract_gsm8k_final_answer": extract_gsm8k_final_answer,
    "_extract_final_int": _extract_final_int,
}
PAIR_FUNCTIONS: dict[str, Callable[[str, str], Any]] = {
    "grade_answer": ref.grade_answer,
    "grade_answer_math_verify": ref.grade_answer_math_verify,
    "safe_grade_sympy": lambda given, truth: safe_grade(given, truth, "sympy"),
    "safe_grade_math_verify": lambda given, truth: safe_grade(given, truth, "math_verify"),
}


def outcome(func: Callable[..., Any], *args: str) -> dict[str, Any]:
    try:
        return {"value": func(*args)}
    except Exception as exc:
        return {"raises": type(exc).__name__, "message": str(exc)}


def string_cases(rng: random.Random) -> list[dict[str, Any]]:
    answers = list(dict.fromkeys(corpus.ODD_ANSWERS))
    responses = list(dict.fromkeys(corpus.ODD_RESPONSES))
    generated = corpus.random_responses(rng, answers, RANDOM_RESPONSES)
    inputs = (
        [("answer", s) for s in answers]
        + [("response", s) for s in responses]
        + [("random_response", s) for s in generated]
    )
    return [
        {
            "id": f"s{index:04d}",
            "origin": origin,
            "input": text,
            "outputs": {name: outcome(f, text) for name, f in STRING_FUNCTIONS.items()},
        }
        for index, (origin, text) in enumerate(inputs)
    ]


def grade_pair(given: str, truth: str) -> dict[str, Any]:
    outputs = {}
    for name, func in PAIR_FUNCTIONS.items():
        start = time.perf_counter()
        outputs[name] = outcome(func, given, truth)
        elapsed = time.perf_counter() - start
        if name.endswith("sympy") and elapsed > SLOW_SECONDS:
            raise SystemExit(
                f"error: grading {given!r} against {truth!r} took {elapsed:.2f}s; "
                "drop it from tools/grading_corpus.py"
            )
    return outputs


def pair_cases(rng: random.Random) -> list[dict[str, Any]]:
    pairs = [("odd", given, truth) for given, truth in corpus.ODD_PAIRS]
    pairs += [
        (f"random:{kind}", given, truth)
        for kind, given, truth in corpus.random_pairs(rng, RANDOM_PAIRS)
    ]
    return [
        {
            "id": f"p{index:04d}",
            "origin": origin,
            "given": given,
            "ground_truth": truth,
            "outputs": grade_pair(given, truth),
        }
        for index, (origin, given, truth) in enumerate(pairs)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--golden", type=Path, default=Path("golden"))
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    versions = {name: importlib.metadata.version(name) for name in VERSIONED}
    if versions[g.REFERENCE_PACKAGE] != g.REFERENCE_VERSION:
        print(f"error: need {g.REFERENCE_PACKAGE}=={g.REFERENCE_VERSION}, found {versions}")
        return 2
    # The reference logs a warning per safe_grade failure; the golden records the outcome.
    logging.disable(logging.WARNING)
    rng = random.Random(args.seed)
    strings = string_cases(rng)
    pairs = pair_cases(rng)
    record = {
        "schema_version": SCHEMA_VERSION,
        "reference": {"package": g.REFERENCE_PACKAGE, "version": g.REFERENCE_VERSION},
        "versions": {**versions, "python": platform.python_version()},
        "generator": {"tool": "tools/generate_grading_goldens.py", "seed": args.seed},
        "string_functions": list(STRING_FUNCTIONS),
        "pair_functions": list(PAIR_FUNCTIONS),
        "strings": strings,
        "pairs": pairs,
    }
    out = args.golden / "rl"
    g.write_atomic(out / "grading.json", g.dump(record))
    correct = sum(bool(p["outputs"]["grade_answer"].get("value")) for p in pairs)
    print(f"wrote grading.json: {len(strings)} strings, {len(pairs)} pairs ({correct} correct)")
    envs = {
        "schema_version": SCHEMA_VERSION,
        "reference": record["reference"],
        "versions": record["versions"],
        "generator": {"tool": "tools/math_env_goldens.py"},
        **math_env_goldens.generate(),
    }
    g.write_atomic(out / "envs.json", g.dump(envs))
    print(f"wrote envs.json: {len(envs['cases'])} cases")
    files = {name: g.file_sha256(out / name) for name in ("envs.json", "grading.json")}
    manifest = {"schema_version": SCHEMA_VERSION, "regenerate": g.REGENERATE, "files": files}
    g.write_atomic(out / "manifest.json", g.dump(manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
