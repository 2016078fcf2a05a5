"""The README's renderer performance table, generated from ``tools/bench_renderers.py``'s JSON.

Generated rather than typed so it can be refreshed whenever the renderers get faster::

    python tools/bench_table.py reports/bench/renderers.json            # print the table
    python tools/bench_table.py reports/bench/renderers.json --readme README.md

``--readme`` replaces what lies between the ``<!-- bench:renderers -->`` and
``<!-- /bench:renderers -->`` lines of that file (which must hold both markers) and leaves
the rest alone. Stdlib only: it runs in any of the project's virtualenvs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- bench:renderers -->", "<!-- /bench:renderers -->"
COLUMNS = (
    "renderer",
    "tokenizer (its parity spec's; cookbook-standin/ = stand-in)",
    "tokens",
    "per conversation vs reference (>= 2x)",
    "per conversation vs reference, CPU time",
    "batch vs reference",
    "batch vs bare encode (<= 1.3x)",
    "batch vs bare, CPU time",
    "sl datum vs reference",
    "sl recipe rows vs reference",
    "sl datum tokens/s ours / reference",
    "fastest rounds: per conv vs ref / batch vs bare",
)


def reports(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-renderer reports of a bench document (one renderer's, or ``renderers``)."""
    return document.get("renderers", [document])


def _x(value: float, met: bool | None = None) -> str:
    text = f"{value:.2f}x"
    return text if met is None or met else f"**{text}**"


def row(report: dict[str, Any]) -> list[str]:
    ratios = report["ratios"]
    per, batch, fastest = (
        ratios["ours_per_conversation"],
        ratios["ours_batch"],
        ratios["from_fastest_rounds"],
    )
    datum = ratios["sl_datum_ours"]
    recipe = ratios.get("sl_recipe_rows_ours")
    return [
        report["renderer"],
        report["model_name"],
        f"{report['data']['total_tokens']:,}",
        _x(per["speedup_vs_reference"], per["meets_targets"]),
        _x(per["cpu_speedup_vs_reference"]),
        _x(batch["speedup_vs_reference"]),
        _x(batch["slowdown_vs_baseline"], batch["meets_targets"]),
        _x(batch["cpu_slowdown_vs_baseline"]),
        _x(datum["speedup_vs_reference"]),
        _x(recipe["speedup_vs_reference"]) if recipe else "-",
        f"{datum['tokens_per_second']:,.0f} / {datum['reference_tokens_per_second']:,.0f}",
        f"{fastest['ours_per_conversation_speedup_vs_reference']:.2f}x / "
        f"{fastest['ours_batch_slowdown_vs_baseline']:.2f}x",
    ]


def _in_turn(report: dict[str, Any]) -> str:
    """Which variants shared their runs: batch and bare, and since the per-conversation
    variants joined them (``repeated`` in the report), ours and the reference's as well."""
    if "repeated" not in report:
        return "batch and bare"
    return " and ".join(" / ".join(group) for group in report["repeated"])


def table(document: dict[str, Any]) -> str:
    """The markdown table with a line saying how it was measured; target misses in bold."""
    rows = reports(document)
    first = rows[0]
    machine = first["machine"]
    loads = [r["machine"][key][0] for r in rows for key in ("loadavg", "loadavg_end")]
    met_per = sum(r["ratios"]["ours_per_conversation"]["meets_targets"] for r in rows)
    met_batch = sum(r["ratios"]["ours_batch"]["meets_targets"] for r in rows)
    lines = [
        f"{len(rows)} renderers, {first['data']['n_conversations']} conversations each, "
        f"{first['rounds']} rounds ({_in_turn(first)} called in turn for "
        f"{first['batch_round_seconds']:g} s of CPU time a round), {machine['cpu_count']} CPUs, "
        f"load average {loads[0]:.1f} at the start, {loads[-1]:.1f} at the end, {max(loads):.1f} "
        f"at most; targets met: per conversation {met_per}/{len(rows)}, batch "
        f"{met_batch}/{len(rows)} (misses in bold; the batch target is the wall ratio).",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(row(r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def replace_block(text: str, block: str, where: str) -> str:
    """``text`` with the lines between the markers replaced by ``block``."""
    begin, end = text.find(BEGIN + "\n"), text.find(END)
    if begin < 0 or end < begin:
        raise ValueError(f"{where}: needs a {BEGIN} line and a {END} line after it")
    return text[: begin + len(BEGIN) + 1] + block + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("json", type=Path, help="tools/bench_renderers.py's --output")
    parser.add_argument("--readme", type=Path, help="write the table into this file's block")
    args = parser.parse_args(argv)
    try:
        document = json.loads(args.json.read_text("utf-8"))
        block = table(document)
    except (OSError, ValueError, KeyError) as exc:
        print(f"{args.json}: not a bench_renderers report: {exc}", file=sys.stderr)
        return 2
    if args.readme is None:
        sys.stdout.write(block)
        return 0
    try:
        text = replace_block(args.readme.read_text("utf-8"), block, str(args.readme))
    except (OSError, ValueError) as exc:
        print(f"{args.readme}: {exc}", file=sys.stderr)
        return 2
    args.readme.write_text(text, "utf-8")
    print(f"wrote the table of {len(reports(document))} renderers into {args.readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
