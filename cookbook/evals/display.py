"""Console output of an eval: a progress bar while sampling, then the result table."""

from __future__ import annotations

import math
from collections.abc import Sequence

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

from cookbook.evals.runner import TaskResult


class EvalProgress:
    """Requests completed out of the task's total; silent when the console is not a terminal
    (a log gets the result table, not a redrawn bar)."""

    def __init__(self, console: Console, task: str, total: int, what: str):
        self.progress = Progress(
            TextColumn(f"[bold]{task}[/bold] {what}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            disable=not console.is_terminal,
        )
        self.task = self.progress.add_task(task, total=total)

    def __enter__(self) -> EvalProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def advance(self, n: int) -> None:
        self.progress.update(self.task, advance=n)


def _number(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4f}"


def result_table(results: Sequence[TaskResult], level: float) -> Table:
    table = Table(
        title="Eval results",
        title_justify="left",
        caption="score: accuracy; for nll the mean NLL (lower is better)",
    )
    for column, justify in (
        ("task", "left"),
        ("metric", "left"),
        ("score", "right"),
        (f"{level:.0%} CI", "right"),
        ("n", "right"),
        ("errors", "right"),
    ):
        table.add_column(column, justify=justify)
    for result in results:
        low, high = result.ci
        table.add_row(
            result.name,
            result.metric.value,
            _number(result.score),
            f"[{_number(low)}, {_number(high)}]",
            str(result.num_examples),
            str(result.num_errors),
        )
    return table
