"""Write tests/data/no_robots_sample/{train,test}.jsonl: a tiny HuggingFaceH4/no_robots look-alike.

No machine here reaches the hub, so recipe goldens drive the reference's ``NoRobotsBuilder``
with this sample instead (``datasets.load_dataset`` patched to return it). Rows have no_robots'
columns (``prompt``, ``prompt_id``, ``messages``, ``category``); the conversations are taken
from the reference wheel's ``example_data/conversations.jsonl``, ``prompt`` is the first user
message, ``prompt_id`` the sha256 of that prompt and ``category`` a made-up label cycling
through no_robots' ten categories. Row ``k`` (train rows first, then test) is source line
``(k * STRIDE) % n``, which visits distinct lines because STRIDE is odd and n = 128.

Usage: python tools/make_no_robots_sample.py [--source conversations.jsonl] [--out DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Any

from cookbook.data.sources import example_conversations_path, read_conversations_jsonl
from cookbook.parity.golden import write_atomic

TRAIN_ROWS = 40
TEST_ROWS = 12
STRIDE = 37
CATEGORIES = (
    "Generation",
    "Open QA",
    "Brainstorm",
    "Chat",
    "Rewrite",
    "Summarize",
    "Coding",
    "Classify",
    "Closed QA",
    "Extract",
)
DEFAULT_OUT = Path("tests/data/no_robots_sample")


def sample_splits(conversations: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The train and test rows, in file order, built from ``conversations``."""
    n = len(conversations)
    if n < TRAIN_ROWS + TEST_ROWS or math.gcd(STRIDE, n) != 1:
        raise ValueError(f"need >= {TRAIN_ROWS + TEST_ROWS} source rows coprime with {STRIDE}")
    rows = []
    for k in range(TRAIN_ROWS + TEST_ROWS):
        messages = conversations[(k * STRIDE) % n]["messages"]
        prompt = next(m["content"] for m in messages if m["role"] == "user")
        rows.append(
            {
                "prompt": prompt,
                "prompt_id": hashlib.sha256(prompt.encode("utf-8")).hexdigest(),
                "messages": messages,
                "category": CATEGORIES[k % len(CATEGORIES)],
            }
        )
    return {"train": rows[:TRAIN_ROWS], "test": rows[TRAIN_ROWS:]}


def jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def write_sample(source: Path, out: Path) -> dict[str, Path]:
    """Write both split files atomically; returns split -> path."""
    paths = {}
    for split, rows in sample_splits(read_conversations_jsonl(source)).items():
        paths[split] = out / f"{split}.jsonl"
        write_atomic(paths[split], jsonl(rows))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=None, help="default: the wheel's file")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    for split, path in write_sample(args.source or example_conversations_path(), args.out).items():
        print(f"wrote {split}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
