"""``cookbook-serve``: the local backend behind the Tinker wire protocol, on 127.0.0.1."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path

from rich.console import Console

from cookbook.exceptions import CookbookError
from cookbook.serve.compat import SUPPORTED_SDK_RANGE
from cookbook.serve.engine import ModelMap
from cookbook.serve.faults import FAULTS_HELP, FaultPlan
from cookbook.serve.server import RunningServer, ServeConfig, load_model_map

EPILOG = f"""\
The unmodified tinker SDK ({SUPPORTED_SDK_RANGE}) - and so the reference tinker-cookbook, or
cookbook-run --set backend=tinker - then trains offline against the embedded local backend:

  cookbook-serve --port 8000 &
  TINKER_BASE_URL=http://127.0.0.1:8000 TINKER_API_KEY=tml-local \\
      cookbook-run specs/sl_basic.yaml --set backend=tinker

Every base model is served by the local stand-in (default: a small random Llama with the
model's real tokenizer, exactly what backend=local trains with the same --seed); --model-map
FILE.yaml maps names to other stand-ins ({{'meta-llama/Llama-3.1-8B': {{hidden_size: 128}},
'*': {{...}}}}, fields of a recipe spec's local.model). Any API key starting tml- is accepted
and never logged. A client of another SDK version is refused with a message naming both.

--faults: {FAULTS_HELP}
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cookbook-serve",
        description="A loopback Tinker-compatible server over the embedded local CPU backend.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument(
        "--port-file", type=Path, help="write the bound port here once listening (for scripts)"
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        help="checkpoints and the path index (default: a temporary directory)",
    )
    parser.add_argument("--seed", type=int, default=0, help="stand-in weights seed (default 0)")
    parser.add_argument("--model-map", type=Path, metavar="FILE", help="YAML: model -> stand-in")
    parser.add_argument("--faults", metavar="SPEC", help="inject faults (grammar below)")
    parser.add_argument(
        "--record", type=Path, metavar="FILE", help="append every applied call (JSON Lines)"
    )
    parser.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(highlight=False)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(message)s",
    )
    with tempfile.TemporaryDirectory(prefix="cookbook-serve-") as scratch:
        try:
            config = ServeConfig(
                state_dir=args.state_dir or Path(scratch),
                host=args.host,
                port=args.port,
                seed=args.seed,
                model_map=load_model_map(args.model_map) if args.model_map else ModelMap(),
                faults=FaultPlan.parse(args.faults) if args.faults else None,
                record=args.record,
                allow_remote=args.allow_remote,
            )
            server = RunningServer(config)
        except CookbookError as error:
            print(f"cookbook-serve: error: {error}", file=sys.stderr)
            return 2
        except OSError as error:  # the port is taken, ...
            print(f"cookbook-serve: error: --port {args.port}: {error}", file=sys.stderr)
            return 2
        if args.port_file is not None:  # before the banner: a reader of either finds both
            port = server.url.rsplit(":", 1)[1]
            tmp = args.port_file.with_name(args.port_file.name + ".tmp")
            tmp.write_text(port)
            os.replace(tmp, args.port_file)
        _banner(console, server, config)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            server.serve_forever()
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            server.shutdown()
            injected = server.injected()
            console.print(
                f"cookbook-serve: stopped after {server.httpd.routes.served} requests, "
                f"{len(server.recorded())} applied calls, {len(injected)} injected faults"
            )
    return 0


def _banner(console: Console, server: RunningServer, config: ServeConfig) -> None:
    console.print(f"cookbook-serve listening on {server.url}", markup=False)
    console.print(f"  export TINKER_BASE_URL={server.url} TINKER_API_KEY=tml-local", markup=False)
    console.print(
        f"  tinker SDK {SUPPORTED_SDK_RANGE}; seed {config.seed}; state in {config.state_dir}",
        markup=False,
    )
    if config.faults is not None:
        console.print(f"  faults: {config.faults.describe()}", markup=False)
    if config.record is not None:
        console.print(f"  recording applied calls to {config.record}", markup=False)
