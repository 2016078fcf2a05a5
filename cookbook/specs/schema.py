"""Generate the JSON Schemas in specs/schema/ from the pydantic models.

``python -m cookbook.specs.schema`` rewrites them; ``--check`` fails when a committed schema is
out of date (a test runs the same comparison), so the schema is never hand-kept.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cookbook.specs.models import SPEC_KINDS

SCHEMA_DIR = Path("specs/schema")


def schema_for(kind: str) -> dict:
    schema = SPEC_KINDS[kind].model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"{kind}.schema.json"
    return schema


def render(kind: str) -> str:
    return json.dumps(schema_for(kind), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if a schema is out of date")
    parser.add_argument("--dir", type=Path, default=SCHEMA_DIR)
    args = parser.parse_args(argv)
    stale = []
    for kind in sorted(SPEC_KINDS):
        target = args.dir / f"{kind}.schema.json"
        text = render(kind)
        if args.check:
            if not target.is_file() or target.read_text("utf-8") != text:
                stale.append(str(target))
        else:
            args.dir.mkdir(parents=True, exist_ok=True)
            target.write_text(text, "utf-8")
    if stale:
        print(f"out of date: {', '.join(stale)}; run `python -m cookbook.specs.schema`")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
