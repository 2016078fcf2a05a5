"""Console views of renderer cases: the parity table and the colour-coded token view."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from cookbook.parity.compare import GENERATION_ITEM, CaseResult
from cookbook.parity.record import unrle

_STATUS_STYLE = {"ok": "green", "fail": "bold red", "stale": "yellow", "no golden": "yellow"}


def _weighted(outputs: dict, train_on_what: str) -> tuple[str, str]:
    record = outputs["supervised"].get(train_on_what)
    if record is None:
        return "-", "-"
    if "error" in record:
        return "refused", record["error"]["type"]
    return str(len(record["ids"])), f"{sum(1 for w in unrle(record['weights']) if w):d}"


def parity_table(renderer: str, results: Sequence[CaseResult], train_on_what: str | None) -> Table:
    """One row per case: token count, weighted tokens (for one TrainOnWhat) and parity status."""
    table = Table(title=f"{renderer}: {len(results)} cases", title_justify="left")
    for column, justify in (
        ("case", "left"),
        ("category", "left"),
        ("train_on_what", "left"),
        ("tokens", "right"),
        ("weighted", "right"),
        ("parity", "left"),
    ):
        table.add_column(column, justify=justify)
    for result in results:
        tow = train_on_what or str(result.case.resolved_train_on_what()[0])
        tokens, weighted = _weighted(result.outputs, tow)
        checked = len(result.items)
        failed = sum(1 for item in result.items if result.problem(item))
        label = result.status if result.status != "ok" else f"ok {checked}/{checked}"
        if result.status == "fail":
            label = f"FAIL {failed}/{checked}"
        table.add_row(
            result.case.id,
            result.case.category,
            tow,
            tokens,
            weighted,
            Text(label, style=_STATUS_STYLE[result.status]),
        )
    return table


def token_view(console: Console, result: CaseResult, train_on_what: str) -> None:
    """Every token of one supervised example, green where it carries loss, dim where not."""
    case = result.case
    console.print(f"[bold]{case.id}[/bold] ({case.category}) - {case.description}")
    record = result.outputs["supervised"].get(train_on_what)
    if record is None:
        choices = ", ".join(str(t) for t in case.resolved_train_on_what())
        console.print(f"[red]{train_on_what} is not rendered for this case; choose: {choices}")
        return
    if "error" in record:
        err = record["error"]
        console.print(f"[yellow]refused ({err['type']}):[/yellow] {err['message']}")
    else:
        text = Text()
        boundaries = {seg["start"] for seg in record["segments"]}
        for pos, (piece, weight) in enumerate(
            zip(record["pieces"], unrle(record["weights"]), strict=True)
        ):
            if pos in boundaries and pos:
                text.append("|", style="blue")
            shown = piece.replace("\n", "\\n")
            text.append(shown, style="bold black on green" if weight else "dim")
        console.print(text)
        console.print(
            f"[green]trained[/green] / [dim]not trained[/dim], [blue]|[/blue] segment boundary; "
            f"{len(record['ids'])} tokens, "
            f"{sum(1 for w in unrle(record['weights']) if w)} weighted ({train_on_what})"
        )
    for item in (train_on_what, GENERATION_ITEM):
        problem = result.problem(item)
        if problem:
            console.print(Text(f"parity {item}: {problem}", style="red"))
    if not result.problem(train_on_what):
        console.print(Text(f"parity {train_on_what}: ok", style="green"))
