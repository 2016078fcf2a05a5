"""Check a port of the cookbook against every renderer golden, through its adapter.

    python tools/conformance.py "mix run adapter.exs" [--golden-dir golden] [--report-dir DIR]

The same as ``cookbook-run --conformance CMD``: the adapter speaks the JSON-lines protocol of
docs/conformance.md; the parity matrix is printed and written as Markdown and HTML. Exit code
0 when every item matches the reference, 1 when one does not, 2 when the adapter cannot be
started or does not speak the protocol.
"""

from __future__ import annotations

import sys

from cookbook.cli import main

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(2)
    sys.exit(main(["--conformance", *sys.argv[1:]]))
