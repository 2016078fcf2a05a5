"""GSM8K rows (``{"question", "answer"}``, the answer ending in ``#### N``), offline-first.

The reference loads ``openai/gsm8k`` (config ``main``) from the hub. Here: the hub or its cache
when reachable, else a local copy (``train.jsonl`` / ``test.jsonl`` in the dataset's own row
format, e.g. from the openai/grade-school-math repository). No registry package ships GSM8K's
JSONL (searched: aviary-gsm8k, gradeschoolmathsolver, llm-reasoners, evals ship loaders or other
data only), so the declared offline fallback is a *stand-in*: generated two-step word problems in
GSM8K's format and split sizes. It is never GSM8K, and every run that uses it says so
(:data:`STAND_IN_NOTE` in the banner and config.json).
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cookbook.data.sources import file_digest, json_lines, rows_digest
from cookbook.exceptions import DataFormatError, DatasetUnavailableError
from cookbook.hub import cache_only, hub_reachable

GSM8K = "openai/gsm8k"
GSM8K_CONFIG = "main"
SPLITS = ("train", "test")
GSM8K_ROWS = {"train": 7473, "test": 1319}
STAND_IN = "gsm8k_stand_in"
STAND_IN_SEEDS = {"train": 0, "test": 1}
STAND_IN_NOTE = (
    f"dataset: {GSM8K} cannot be loaded (the hub is unreachable and it is not cached); "
    f"training on the declared stand-in {STAND_IN!r}: generated two-step word problems in "
    f"GSM8K's format ({GSM8K_ROWS['train']} train / {GSM8K_ROWS['test']} test rows), not GSM8K"
)
OFFLINE_FALLBACK_HINT = (
    f"offline: give a local copy (a directory with train.jsonl and test.jsonl in {GSM8K}'s row "
    f"format) or declare the stand-in {STAND_IN!r}"
)

Row = dict[str, Any]


@dataclass(frozen=True)
class Gsm8kRows:
    """Both splits in the dataset's own order, and where they came from (for config.json)."""

    train: list[Row]
    test: list[Row]
    source: str
    """``hf:openai/gsm8k``, ``local_copy`` or ``stand_in``."""
    path: str | None = None
    sha256: dict[str, str] | None = None

    @property
    def is_stand_in(self) -> bool:
        return self.source == STAND_IN

    def describe(self) -> dict[str, Any]:
        return {
            "dataset": GSM8K,
            "source": self.source,
            "stand_in": STAND_IN_NOTE if self.is_stand_in else None,
            "path": self.path,
            "sha256": self.sha256,
            "rows_sha256": {"train": rows_digest(self.train), "test": rows_digest(self.test)},
            "train_rows": len(self.train),
            "test_rows": len(self.test),
        }


def _read_jsonl(path: Path) -> list[Row]:
    rows = []
    try:
        lines = path.read_text("utf-8").splitlines()
    except OSError as e:
        raise DatasetUnavailableError(f"{path}: cannot read: {e.strerror}") from e
    for line_no, row in json_lines(path, lines):
        for key in ("question", "answer"):
            if not isinstance(row, dict) or not isinstance(row.get(key), str):
                raise DataFormatError(f"{path}:{line_no}: {key}: missing or not a string")
        rows.append({"question": row["question"], "answer": row["answer"]})
    return rows


def load_gsm8k(local_copy: str | Path | None = None) -> Gsm8kRows:
    """GSM8K from ``local_copy`` or the hub/cache; DatasetUnavailableError naming the offline
    options otherwise (quickly, with the hub offline)."""
    if local_copy is not None:
        files = {split: Path(local_copy) / f"{split}.jsonl" for split in SPLITS}
        splits = {split: _read_jsonl(path) for split, path in files.items()}
        return Gsm8kRows(
            splits["train"],
            splits["test"],
            "local_copy",
            str(local_copy),
            {split: file_digest(path) for split, path in files.items()},
        )
    import datasets
    import datasets.config

    offline = bool(datasets.config.HF_HUB_OFFLINE) or not hub_reachable()
    try:
        with cache_only() if offline else contextlib.nullcontext():
            loaded = datasets.load_dataset(GSM8K, name=GSM8K_CONFIG)
    except OSError as e:
        why = "the hub is offline or unreachable" if offline else f"loading failed ({e})"
        raise DatasetUnavailableError(
            f"{GSM8K} is not available: {why} and it is not in the local datasets cache; "
            f"{OFFLINE_FALLBACK_HINT}"
        ) from e
    return Gsm8kRows(loaded["train"].to_list(), loaded["test"].to_list(), f"hf:{GSM8K}")


# ----------------------------------------------------------------------------------------------
# The stand-in: generated word problems in GSM8K's format
# ----------------------------------------------------------------------------------------------

_NAMES = [
    *["Ava", "Ben", "Chloe", "Dev", "Elif", "Farid", "Gita", "Hugo", "Ines", "Jun", "Kofi"],
    *["Lena", "Mateo", "Nia", "Omar", "Priya"],
]
_ITEMS = [
    *["apples", "stickers", "marbles", "books", "pencils", "cookies", "stamps", "shells"],
    *["cards", "tickets"],
]


def _problem(rng: random.Random) -> Row:
    name, other = rng.sample(_NAMES, 2)
    item = rng.choice(_ITEMS)
    a, b, c = rng.randint(2, 40), rng.randint(2, 12), rng.randint(1, 30)
    kind = rng.randrange(3)
    if kind == 0:
        total, final = a * b, a * b + c
        question = (
            f"{name} buys {b} packs of {item} with {a} {item} in each pack. {other} gives "
            f"{name} {c} more {item}. How many {item} does {name} have now?"
        )
        steps = [f"{b} packs hold {b}*{a}=<<{b}*{a}={total}>>{total} {item}."]
        steps.append(
            f"With {other}'s {item}, {name} has {total}+{c}=<<{total}+{c}={final}>>{final}."
        )
    elif kind == 1:
        total = a * b
        c = min(c, total - 1)
        final = total - c
        question = (
            f"{name} has {b} boxes of {a} {item} and gives {c} {item} to {other}. "
            f"How many {item} are left?"
        )
        steps = [f"{name} starts with {b}*{a}=<<{b}*{a}={total}>>{total} {item}."]
        steps.append(f"After giving {c} away, {total}-{c}=<<{total}-{c}={final}>>{final} are left.")
    else:
        total = a * b
        final = total * 2
        question = (
            f"{other} has {a} {item}. {name} has {b} times as many as {other}, and "
            f"{other}'s sister has twice as many as {name}. How many {item} does the sister have?"
        )
        steps = [f"{name} has {a}*{b}=<<{a}*{b}={total}>>{total} {item}."]
        steps.append(f"The sister has 2*{total}=<<2*{total}={final}>>{final} {item}.")
    return {"question": question, "answer": "\n".join([*steps, f"#### {final}"])}


def stand_in_rows() -> Gsm8kRows:
    """The declared stand-in, deterministic: same rows on every machine and run."""
    splits = {
        split: [
            _problem(random.Random(f"{STAND_IN}:{STAND_IN_SEEDS[split]}:{i}"))
            for i in range(GSM8K_ROWS[split])
        ]
        for split in SPLITS
    }
    return Gsm8kRows(splits["train"], splits["test"], STAND_IN)
