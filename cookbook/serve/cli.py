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
from cookbook.serve.limits import MIB, Limits
from cookbook.serve.server import API_KEY_ENV, RunningServer, ServeConfig, load_model_map

EPILOG = f"""\
The unmodified tinker SDK ({SUPPORTED_SDK_RANGE}) - and so the reference tinker-cookbook, or
cookbook-run --set backend=tinker - then trains offline against the embedded local backend:

  cookbook-serve --port 8000 &
  TINKER_BASE_URL=http://127.0.0.1:8000 TINKER_API_KEY=tml-local \\
      cookbook-run specs/sl_basic.yaml --set backend=tinker

Every base model is served by the local stand-in (default: a small random Llama with the
model's real tokenizer, exactly what backend=local trains with the same --seed); --model-map
FILE.yaml maps names to other stand-ins ({{'meta-llama/Llama-3.1-8B': {{hidden_size: 128}},
'*': {{...}}}}, fields of a recipe spec's local.model). A client of another SDK version is
refused with a message naming both.

Auth: with --api-key KEY (or {API_KEY_ENV}=KEY) only that key is accepted;
without one, any key starting tml- (loopback only: --allow-remote requires --api-key). Keys
are never logged.
Limits (each answered with a JSON error): bodies over --max-body-bytes get 413, a bad or
missing Content-Length 400/411, a slow client 408 after --header-timeout/--body-timeout,
connections past --max-connections 503; finished results are kept --result-grace seconds
after their first retrieval, at most --max-results of them (a later retrieve: 404 naming why).

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
    parser.add_argument(
        "--allow-remote", action="store_true", help="allow a non-loopback --host (needs --api-key)"
    )
    parser.add_argument(
        "--api-key", metavar="KEY", help=f"accept only this key (default: ${API_KEY_ENV})"
    )
    defaults = Limits()
    limits = parser.add_argument_group("limits")
    for flag, kind, default, text in (
        ("--max-body-bytes", int, defaults.max_body_bytes, f"{defaults.max_body_bytes // MIB} MiB"),
        ("--max-connections", int, defaults.max_connections, None),
        ("--keep-alive-timeout", float, defaults.keep_alive_s, "idle connection, s"),
        ("--header-timeout", float, defaults.header_timeout_s, "s from a request's first byte"),
        ("--body-timeout", float, defaults.body_timeout_s, "s to receive a body or send one"),
        ("--result-grace", float, defaults.result_grace_s, "s a result outlives its retrieval"),
        ("--max-results", int, defaults.max_results, "finished results held"),
    ):
        # {:g} would print 33554432 as 3.35544e+07; integers are shown whole.
        value = f"{default}" if kind is int else f"{default:g}"
        shown = value if text is None else f"{value}: {text}"
        limits.add_argument(
            flag,
            type=_positive(kind),
            default=default,
            metavar="N" if kind is int else "S",
            help=f"default {shown}",
        )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    return parser


def _positive(kind: type[int] | type[float]) -> object:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


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
                keep_calls=False,  # a long-running server: --record FILE has them
                api_key=args.api_key or os.environ.get(API_KEY_ENV) or None,
                limits=Limits(
                    max_body_bytes=args.max_body_bytes,
                    max_connections=args.max_connections,
                    keep_alive_s=args.keep_alive_timeout,
                    header_timeout_s=args.header_timeout,
                    body_timeout_s=args.body_timeout,
                    result_grace_s=args.result_grace,
                    max_results=args.max_results,
                ),
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
                f"{server.recorder.count} applied calls, {len(injected)} injected faults"
            )
    return 0


def _banner(console: Console, server: RunningServer, config: ServeConfig) -> None:
    console.print(f"cookbook-serve listening on {server.url}", markup=False)
    key = "<the --api-key>" if config.api_key is not None else "tml-local"
    console.print(f"  export TINKER_BASE_URL={server.url} TINKER_API_KEY={key}", markup=False)
    if config.api_key is not None:
        console.print("  auth: only the key given by --api-key / $" + API_KEY_ENV, markup=False)
    else:
        console.print(
            "  auth: any key starting tml- (loopback only; --api-key KEY to require one)",
            markup=False,
        )
    limits = config.limits
    console.print(
        f"  limits: body {limits.max_body_bytes} bytes, {limits.max_connections} connections, "
        f"header/body timeouts {limits.header_timeout_s:g}/{limits.body_timeout_s:g} s, "
        f"results kept {limits.result_grace_s:g} s after retrieval (at most {limits.max_results})",
        markup=False,
        soft_wrap=True,
    )
    console.print(
        f"  tinker SDK {SUPPORTED_SDK_RANGE}; seed {config.seed}; state in {config.state_dir}",
        markup=False,
    )
    if config.faults is not None:
        console.print(f"  faults: {config.faults.describe()}", markup=False)
    if config.record is not None:
        console.print(f"  recording applied calls to {config.record}", markup=False)
