"""`cookbook-run SPEC.yaml`: run any declarative spec; the kind inside the file decides what runs.

Exit codes: 0 success, 1 the run found parity failures, 2 bad input (one line on stderr naming
the file, line and field; no traceback, nothing written).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cookbook.exceptions import CookbookError
from cookbook.specs.models import SPEC_KINDS

EPILOG = """\
spec kinds:
  recipe           a supervised training run (specs/sl_basic.yaml): the reference's sl_basic
                   loop on the spec's backend (local, tinker, fake); writes a run directory
                   with config.json, metrics.jsonl, checkpoints.jsonl and loss_curve.png
  renderer_cases   parity cases for one renderer (specs/renderers/*.yaml): renders every case
                   with our renderer, compares it with the reference's golden, prints a table
  (eval specs arrive with their issue)

examples:
  cookbook-run specs/sl_basic.yaml --set backend=fake
  cookbook-run specs/sl_basic.yaml --set backend=fake --set dataset.batch_size=16 \\
      --set learning_rate=1e-4 --log-dir runs/try1
  cookbook-run specs/sl_basic.yaml --set backend=fake --log-dir runs/try1 --resume
  cookbook-run specs/renderers/llama3.yaml
  cookbook-run specs/renderers/llama3.yaml --train-on-what all_messages
  cookbook-run specs/renderers/llama3.yaml --case special_token_literal_in_user

exit codes: 0 ok, 1 parity failures, 2 invalid spec or arguments
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cookbook-run",
        description="Run a declarative cookbook spec (YAML). Known kinds: "
        + ", ".join(sorted(SPEC_KINDS)),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "spec", type=Path, help="path to a spec file, e.g. specs/renderers/llama3.yaml"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec field (dotted path, YAML value), validated like the file; repeatable",
    )
    run = parser.add_argument_group("recipe runs")
    run.add_argument("--log-dir", type=Path, help="run directory (default: runs/<spec name>)")
    existing = run.add_mutually_exclusive_group()
    existing.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --log-dir from its last checkpoint",
    )
    existing.add_argument(
        "--overwrite", action="store_true", help="delete the run in --log-dir and start over"
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
        help="golden directory (default: the golden/ beside the spec's specs/ tree)",
    )
    return parser


def _default_golden_dir(spec: Path) -> Path:
    for parent in spec.resolve().parents:
        if (parent / "golden").is_dir():
            return parent / "golden"
    return Path("golden")


def _run_renderer_cases(args: argparse.Namespace, spec) -> int:
    from rich.console import Console

    from cookbook.exceptions import ConfigurationError
    from cookbook.parity.compare import compare_case
    from cookbook.parity.view import parity_table, token_view
    from cookbook.renderers.types import TrainOnWhat

    if args.train_on_what is not None and args.train_on_what not in set(TrainOnWhat):
        choices = ", ".join(t.value for t in TrainOnWhat)
        raise ConfigurationError(
            f"--train-on-what: unknown value {args.train_on_what!r}; {choices}"
        )
    golden_dir = args.golden_dir or _default_golden_dir(args.spec)
    # Piped output (CI logs, `| less`) gets a table wide enough not to truncate case names.
    console = Console() if sys.stdout.isatty() else Console(width=140)
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


def _run_recipe(args: argparse.Namespace, spec) -> int:
    from rich.console import Console

    from cookbook.supervised.recipe import RunOptions, run_recipe

    options = RunOptions(
        log_dir=args.log_dir,
        resume=args.resume,
        overwrite=args.overwrite,
        overrides=tuple(args.overrides),
    )
    return run_recipe(args.spec, spec, options, Console())


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    args = build_parser().parse_args(argv)
    try:
        from cookbook.specs import load_spec

        spec = load_spec(args.spec, args.overrides)
        runners = {"renderer_cases": _run_renderer_cases, "recipe": _run_recipe}
        return runners[spec.kind](args, spec)
    except CookbookError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
