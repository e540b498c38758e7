"""`python -m devtools.openapi [--check]`: write openapi.json from the app's routes, or fail if it is stale."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

OPENAPI_FILE = Path(__file__).resolve().parent.parent / "openapi.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.openapi")
    parser.add_argument("--check", action="store_true", help="exit 1 if openapi.json differs from the app")
    args = parser.parse_args(argv)
    from devtools.local_app import build_local_app
    from shared.http import schema as api_schema

    current = api_schema.render(build_local_app())
    if args.check:
        if not OPENAPI_FILE.exists() or OPENAPI_FILE.read_text() != current:
            print("openapi.json is stale: run `make openapi` and commit it.", file=sys.stderr)
            return 1
        return 0
    OPENAPI_FILE.write_text(current)
    print(f"wrote {OPENAPI_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
