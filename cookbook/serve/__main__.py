"""``python -m cookbook.serve``: the same as the ``cookbook-serve`` command."""

import sys

from cookbook.serve.cli import main

sys.exit(main())
