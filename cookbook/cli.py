"""`cookbook-run SPEC.yaml`: run any declarative spec; the kind inside the file decides what runs.

Two more commands share the entry point: `cookbook-run compare RUN_A RUN_B` (where two run
directories first differ) and `cookbook-run --conformance CMD` (a port, behind the JSON-lines
adapter protocol, against every renderer golden).

Exit codes: 0 success; 1 the run found parity failures (or differences), or failed on the way
(a service or backend error: one line with the cause, the run directory kept for --resume);
2 bad input (one line on stderr naming the file, line and field; no traceback, nothing
written); 130 interrupted (Ctrl-C: one line naming the last checkpoint and how to resume).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cookbook.exceptions import BackendError, ConfigurationError, CookbookError, RunInterrupted
from cookbook.specs.models import SPEC_KINDS

if TYPE_CHECKING:
    from rich.console import Console

USAGE = """\
cookbook-run SPEC.yaml [--set KEY=VALUE ...] [options]
       cookbook-run compare RUN_A RUN_B [--rtol R] [--html PATH]
       cookbook-run --conformance CMD [--golden-dir DIR] [--report-dir DIR] [--renderer NAME]"""

EPILOG = """\
spec kinds:
  recipe           a supervised training run (specs/sl_basic.yaml): the reference's sl_basic
                   loop on the spec's backend (local, tinker, fake); writes a run directory
                   with config.json, metrics.jsonl, checkpoints.jsonl, loss_curve.png and the
                   files `compare` walks; `evals:` lists eval tasks run every eval_every steps
  rl_recipe        an RL training run (specs/rl_basic.yaml, rl_loop.yaml, rl_arithmetic.yaml):
                   the reference's rl.train loop (loop: train) or its minimal rl_loop.py
                   (loop: rl_loop) on GSM8K or the arithmetic env; same run directory, with
                   reward_curve.png and the reference's metric names (env/all/reward/total...)
  renderer_cases   parity cases for one renderer (specs/renderers/*.yaml): renders every case
                   with our renderer, compares it with the reference's golden, prints a table
  eval             an eval task (specs/evals/*.yaml): sampled and scored (exact, normalized,
                   contains, regex) or scored by logprobs (multiple_choice, nll) on the base
                   model or --checkpoint; writes results.json and samples.jsonl

commands:
  compare RUN_A RUN_B
                   walk two run directories layer by layer (resolved config, dataset order,
                   rendered samples, first batch datums, per-step metrics within --rtol) and
                   name the first layer and item that differs; text and an HTML page
  --conformance CMD
                   start CMD (an adapter for any port: JSON lines on stdin/stdout, see
                   docs/conformance.md), check it against every renderer golden, print the
                   parity matrix and write it as Markdown and HTML

examples:
  cookbook-run specs/sl_basic.yaml --set backend=fake
  cookbook-run specs/sl_basic.yaml --set backend=fake --set dataset.batch_size=16 \\
      --set learning_rate=1e-4 --log-dir runs/try1
  cookbook-run specs/sl_basic.yaml --set backend=fake --log-dir runs/try1 --resume
  cookbook-run specs/sl_basic.yaml --set backend=fake --set 'evals=[specs/evals/arithmetic.yaml]'
  cookbook-run specs/rl_arithmetic.yaml --set backend=fake
  cookbook-run specs/rl_basic.yaml --set backend=fake --set max_steps=3
  cookbook-run specs/renderers/llama3.yaml
  cookbook-run specs/renderers/llama3.yaml --train-on-what all_messages
  cookbook-run specs/renderers/llama3.yaml --case special_token_literal_in_user
  cookbook-run specs/evals/multiple_choice.yaml --set backend=fake
  cookbook-run specs/evals/arithmetic.yaml --set backend=fake --checkpoint runs/try1
  cookbook-run compare runs/try1 runs/try2
  cookbook-run --conformance "python -m cookbook.parity.adapter"

exit codes: 0 ok, 1 parity failures or differences, or a run failed (service or backend
error; rerun with --resume), 2 invalid spec or arguments, 130 interrupted (Ctrl-C)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cookbook-run",
        usage=USAGE,
        description="Run a declarative cookbook spec (YAML). Known kinds: "
        + ", ".join(sorted(SPEC_KINDS)),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "spec", type=Path, nargs="?", help="path to a spec file, e.g. specs/renderers/llama3.yaml"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec field (dotted path, YAML value), validated like the file; repeatable",
    )
    run = parser.add_argument_group("recipe and eval runs")
    run.add_argument(
        "--log-dir",
        type=Path,
        help="run directory (default: runs/<spec name>; evals: runs/evals/<name>, or "
        "RUN_DIR/evals/<name> with --checkpoint RUN_DIR)",
    )
    existing = run.add_mutually_exclusive_group()
    existing.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --log-dir from its last checkpoint",
    )
    existing.add_argument(
        "--overwrite", action="store_true", help="delete the run in --log-dir and start over"
    )
    run.add_argument(
        "--checkpoint",
        metavar="RUN_DIR_OR_PATH",
        help="eval specs: the weights to evaluate: a run directory (its last sampler_path; "
        "the backend must match) or a local:// / tinker:// sampler path",
    )
    parser.add_argument("--case", metavar="ID", help="show one case as colour-coded tokens")
    parser.add_argument(
        "--train-on-what",
        metavar="MODE",
        help="TrainOnWhat value for the weighted column and the token view "
        "(default: the case's first)",
    )
    parser.add_argument(
        "--golden-dir",
        type=Path,
        help="golden directory (default: $COOKBOOK_GOLDEN_DIR, else the golden/ beside the "
        "spec's specs/ tree; --conformance: the goldens installed with the package)",
    )
    port = parser.add_argument_group("conformance of another port")
    port.add_argument("--conformance", metavar="CMD", help="adapter command line to check")
    port.add_argument(
        "--report-dir",
        type=Path,
        default=Path("reports/conformance"),
        help="where conformance.md and conformance.html go (default: %(default)s)",
    )
    port.add_argument(
        "--renderer",
        action="append",
        metavar="NAME",
        help="check only the goldens of this renderer (repeatable)",
    )
    port.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds the adapter may take to answer one request (default: %(default)s)",
    )
    return parser


def build_compare_parser() -> argparse.ArgumentParser:
    from cookbook.parity.recipe import METRIC_REL_TOL

    parser = argparse.ArgumentParser(
        prog="cookbook-run compare",
        description="Where two run directories first differ: resolved config, dataset order, "
        "rendered samples, first batch datums, per-step metrics. Exit 0 when they match, 1 "
        "when they differ.",
    )
    parser.add_argument("run_a", type=Path, metavar="RUN_A", help="the expected run")
    parser.add_argument("run_b", type=Path, metavar="RUN_B", help="the run to check")
    parser.add_argument(
        "--rtol",
        type=float,
        default=METRIC_REL_TOL,
        help="relative tolerance for metric values (default: %(default)s)",
    )
    parser.add_argument(
        "--html",
        type=Path,
        help="the HTML page (default: reports/compare/<RUN_A>_vs_<RUN_B>.html)",
    )
    return parser


def _default_golden_dir(spec: Path) -> Path:
    from cookbook.parity.golden import GOLDEN_DIR_ENV, default_golden_dir

    if not os.environ.get(GOLDEN_DIR_ENV):
        for parent in spec.resolve().parents:
            if (parent / "golden").is_dir():
                return parent / "golden"
    return default_golden_dir()


def _console() -> Console:
    from rich.console import Console

    # Piped output (CI logs, `| less`) gets a table wide enough not to truncate names.
    return Console() if sys.stdout.isatty() else Console(width=140)


def _run_renderer_cases(args: argparse.Namespace, spec) -> int:
    from cookbook.parity.compare import compare_case
    from cookbook.parity.view import parity_table, token_view
    from cookbook.renderers.types import TrainOnWhat

    if args.train_on_what is not None and args.train_on_what not in set(TrainOnWhat):
        choices = ", ".join(t.value for t in TrainOnWhat)
        raise ConfigurationError(
            f"--train-on-what: unknown value {args.train_on_what!r}; {choices}"
        )
    golden_dir = args.golden_dir or _default_golden_dir(args.spec)
    console = _console()
    cases = spec.cases
    if args.case:
        cases = [c for c in spec.cases if c.id == args.case]
        if not cases:
            raise ConfigurationError(f"{args.spec}: --case: no case {args.case!r}")
    results = [compare_case(golden_dir, spec, case) for case in cases]
    if args.case:
        result = results[0]
        token_view(console, result, args.train_on_what or result.items[0])
    else:
        console.print(parity_table(spec.renderer, results, args.train_on_what))
    items = sum(len(r.items) for r in results)
    failed = sum(1 for r in results for item in r.items if r.problem(item))
    console.print(
        f"{len(results)} cases, {items} items checked against {golden_dir}: "
        + (f"[red]{failed} failed[/red]" if failed else "[green]all match the reference[/green]")
    )
    return 1 if failed else 0


def _show_renderer_exclusions(args: argparse.Namespace, spec) -> int:
    """The catalogue is data for the parity tests; running it shows what it declares."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Declared second-oracle exclusions ({args.spec})", show_lines=True)
    for column in ("renderer", "oracle", "cases", "items", "reason"):
        table.add_column(column, overflow="fold")
    for group in spec.disagreements:
        for where in group.where:
            items = ", ".join(where.items)
            table.add_row(where.renderer, group.oracle, where.case, items, group.reason)
    for entry in spec.no_oracle:
        table.add_row(entry.renderer, "-", "*", "-", f"no oracle: {entry.reason}")
    console = Console() if sys.stdout.isatty() else Console(width=140)
    console.print(table)
    console.print("checked against the goldens by tests/test_exclusions.py (nox -s parity)")
    return 0


def _run_recipe(args: argparse.Namespace, spec) -> int:
    """A ``recipe`` (supervised) or ``rl_recipe`` spec: one runner, the spec's loop."""
    from rich.console import Console

    from cookbook.backends.tinker.service import cookbook_serve_identity
    from cookbook.runner.run import RunOptions
    from cookbook.specs import load_spec

    if spec.kind == "rl_recipe":
        from cookbook.rl.recipe import run_rl_recipe as run
    else:
        from cookbook.supervised.recipe import run_recipe as run
    served_by = cookbook_serve_identity(spec)
    if served_by is not None:  # it trains the local stand-in: take the local profile
        spec = load_spec(args.spec, args.overrides, local_engine=True)
    options = RunOptions(
        log_dir=args.log_dir,
        resume=args.resume,
        overwrite=args.overwrite,
        overrides=tuple(args.overrides),
        served_by=served_by,
    )
    return run(args.spec, spec, options, Console())


def _run_eval(args: argparse.Namespace, spec) -> int:
    from rich.console import Console

    from cookbook.evals.command import EvalOptions, run_eval_spec

    if args.resume:
        raise ConfigurationError("--resume applies to recipe runs; an eval runs whole")
    options = EvalOptions(
        log_dir=args.log_dir,
        overwrite=args.overwrite,
        checkpoint=args.checkpoint,
        overrides=tuple(args.overrides),
    )
    return run_eval_spec(args.spec, spec, options, Console())


def _conformance(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from cookbook.parity.conformance import run_conformance
    from cookbook.parity.golden import default_golden_dir, golden_files
    from cookbook.parity.matrix import console_table, write_reports

    console = _console()
    golden_dir = args.golden_dir or default_golden_dir()
    renderers = set(args.renderer) if args.renderer else None
    with Progress(console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("goldens", total=len(golden_files(golden_dir)))
        run = run_conformance(
            args.conformance,
            golden_dir,
            renderers,
            args.timeout,
            on_case=lambda _case: progress.advance(task),
        )
    console.print(console_table(run))
    for item in run.failed[:3]:
        console.print(f"[red]FAIL[/red] {item.row} {item.case_id} {item.item}:")
        console.print(item.problem, markup=False, highlight=False)
    markdown, page = write_reports(run, args.report_dir)
    passed = len(run.items) - len(run.failed)
    verdict = "[green]conforms[/green]" if run.ok else "[red]does not conform[/red]"
    console.print(f"{passed}/{len(run.items)} items pass: {verdict}. Report: {page}, {markdown}")
    return 0 if run.ok else 1


def _compare(args: argparse.Namespace) -> int:
    from cookbook.parity.golden import write_atomic
    from cookbook.parity.runs import compare_runs

    comparison = compare_runs(args.run_a, args.run_b, args.rtol)
    html = args.html or Path("reports/compare") / (
        f"{args.run_a.resolve().name}_vs_{args.run_b.resolve().name}.html"
    )
    write_atomic(html, comparison.html())
    print(comparison.text())
    print(f"HTML: {html}")
    return 1 if comparison.first_difference else 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    argv = sys.argv[1:] if argv is None else list(argv)
    compare = argv[:1] == ["compare"]
    parser = build_compare_parser() if compare else build_parser()
    args = parser.parse_args(argv[1:] if compare else argv)
    if not compare and (args.spec is None) == (args.conformance is None):
        parser.error("give one of: a spec file, `compare RUN_A RUN_B`, --conformance CMD")
    try:
        if compare:
            return _compare(args)
        if args.conformance is not None:
            return _conformance(args)
        from cookbook.specs import load_spec

        spec = load_spec(args.spec, args.overrides)
        if args.checkpoint is not None and spec.kind != "eval":
            raise ConfigurationError("--checkpoint applies to eval specs")
        runners = {
            "renderer_cases": _run_renderer_cases,
            "renderer_exclusions": _show_renderer_exclusions,
            "recipe": _run_recipe,
            "rl_recipe": _run_recipe,
            "eval": _run_eval,
        }
        return runners[spec.kind](args, spec)
    except BackendError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except CookbookError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        note = f": {exc}" if isinstance(exc, RunInterrupted) else ""
        print(f"interrupted{note}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
