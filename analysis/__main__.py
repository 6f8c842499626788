"""``python -m analysis tables [--results results] [--out results/tables] [--only name,...]``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("tables", help="build every paper table from the records")
    t.add_argument("--results", default="results", help="results dir holding runs/ (and bench/)")
    t.add_argument("--out", default=None, help="output dir (default: <results>/tables)")
    t.add_argument("--only", default=None, help="comma-separated table names")
    sub.add_parser("list", help="list the table names")
    args = parser.parse_args(argv)

    from analysis import tables

    if args.command == "list":
        for name in tables.TABLES:
            print(f"{name:18s} {tables.TITLES.get(name, '')}")
        return 0
    out = Path(args.out) if args.out else Path(args.results) / "tables"
    names = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    start = time.perf_counter()
    try:
        built = tables.build_all(args.results, out, names)
    except tables.TableBuildError as e:
        print(f"error: {e} (the other tables and index.md were written)", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cells = sum(len(df) for df in built.values())
    missing = sum(tables.not_run_count(df) for df in built.values())
    print(
        f"wrote {len(built)} tables to {out} ({cells - missing} of {cells} cells filled, {missing} not run) "
        f"in {time.perf_counter() - start:.2f} s; index: {out / 'index.md'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
