"""Console output of a training run: banner, progress bar, end-of-run summary.

Everything a user must not miss (a stand-in model or dataset, the backend, overlays) is in the
banner, printed before the first step, because a run that silently trained on something else
than the spec asked for is worse than one that failed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table


def banner(console: Console, title: str, facts: dict[str, str], warnings: list[str]) -> None:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for key, value in facts.items():
        table.add_row(key, value)
    console.rule(f"[bold]{title}")
    console.print(table)
    for warning in warnings:
        console.print(f"[bold yellow]NOTE[/bold yellow] {warning}")
    console.rule()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


@dataclass(frozen=True)
class Shown:
    """Which metrics a loop's progress line and summary show (each loop has its own names)."""

    label: str
    headline: str
    """The bar's main number (loss, reward), shown as ``label``."""
    lr: str
    tokens: str
    """Counted per step for the tokens/s figure."""
    line: tuple[str, ...]
    """Printed per step when the console is not a terminal (CI logs, pipes)."""
    summary: tuple[str, ...]
    evaluation: str
    """Present only on eval steps; the summary shows its first and last value."""


SUPERVISED = Shown(
    label="loss",
    headline="train_mean_nll",
    lr="learning_rate",
    tokens="num_tokens",
    line=("train_mean_nll", "learning_rate", "test/nll"),
    summary=("train_mean_nll", "train_mean_bpb", "learning_rate", "num_tokens"),
    evaluation="test/nll",
)

RL = Shown(
    label="reward",
    headline="env/all/reward/total",
    lr="optim/lr",
    tokens="env/all/total_ac_tokens",
    line=("env/all/reward/total", "env/all/correct", "test/env/all/reward/total"),
    summary=(
        "env/all/reward/total",
        "env/all/correct",
        "env/all/format",
        "env/all/ac_tokens_per_turn",
        "optim/entropy",
    ),
    evaluation="test/env/all/reward/total",
)
RL_LOOP = Shown(
    label="reward",
    headline="reward/total",
    lr="optim/lr",
    tokens="",
    line=("reward/total",),
    summary=("reward/total",),
    evaluation="",
)
"""rl_loop logs only the batch's mean reward (and the optimizer's metrics)."""


class TrainingProgress:
    """A rich progress bar with step, the loop's headline metric, learning rate, tokens/s and
    ETA."""

    def __init__(
        self, console: Console, total_steps: int, first_step: int, shown: Shown = SUPERVISED
    ):
        self.console = console
        self.shown = shown
        self.progress = Progress(
            TextColumn("[bold]step"),
            MofNCompleteColumn(),
            BarColumn(),
            TextColumn(
                f"{shown.label} {{task.fields[head]}}  lr {{task.fields[lr]}}  "
                "{task.fields[tps]} tok/s"
            ),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
            disable=not console.is_terminal,
        )
        self.task = self.progress.add_task(
            "train", total=total_steps, completed=first_step, head="-", lr="-", tps="-"
        )
        self.started = time.perf_counter()
        self.tokens = 0
        self.history: list[dict[str, Any]] = []

    def __enter__(self) -> TrainingProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def on_step(self, step: int, metrics: dict[str, Any]) -> None:
        shown = self.shown
        self.tokens += int(metrics.get(shown.tokens, 0))
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        self.history.append({"step": step, **metrics})
        self.progress.update(
            self.task,
            advance=1,
            head=_fmt(metrics.get(shown.headline)),
            lr=_fmt(metrics.get(shown.lr)),
            tps=f"{self.tokens / elapsed:,.0f}",
        )
        if not self.console.is_terminal:  # CI logs and pipes get one line per step instead
            line = "  ".join(f"{k}={_fmt(metrics[k])}" for k in shown.line if k in metrics)
            self.console.print(f"step {step}: {line}")


def summary(
    console: Console, history: list[dict[str, Any]], log_dir: str, shown: Shown = SUPERVISED
) -> None:
    if not history:
        console.print("No steps were run (the run was already complete).")
        return
    first, last = history[0], history[-1]
    table = Table(title="Run summary", show_header=True)
    table.add_column("metric")
    table.add_column(f"step {first['step']}", justify="right")
    table.add_column(f"step {last['step']}", justify="right")
    for key in shown.summary:
        if key in first or key in last:
            table.add_row(key, _fmt(first.get(key, "-")), _fmt(last.get(key, "-")))
    evals = [row for row in history if shown.evaluation in row]
    if evals:
        key = shown.evaluation
        table.add_row(key, _fmt(evals[0][key]), _fmt(evals[-1][key]))
    console.print(table)
    console.print(f"Run directory: {log_dir}")
