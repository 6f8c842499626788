"""``python -m analysis tables|figures|runs|grid|list [--results results] [--out DIR] [--only name,...]``.

``tables`` writes every paper table (results/tables/), ``figures`` every figure (results/figures/),
``headline`` rewrites the generated results page (docs/results.md) and the README's summary from the records,
``drift`` compares your records with the committed reference records of the same config,
``grid`` pivots one outcome of the records over two knobs (e.g. perplexity by score × shuffle per
pattern), ``tables --wandb`` also logs the tables and figures to W&B (offline unless WANDB_MODE says otherwise)."""

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
    t.add_argument("--wandb", action="store_true", help="also log tables (wandb.Table) and figures (wandb.Image)")
    t.add_argument("--figures", default=None, help="figures dir for --wandb (default: <results>/figures)")
    f = sub.add_parser("figures", help="build every figure from observations, records and benches")
    f.add_argument("--results", default="results", help="results dir holding observations/, runs/, bench/")
    f.add_argument("--out", default=None, help="output dir (default: <results>/figures)")
    f.add_argument("--only", default=None, help="comma-separated figure names")
    sub.add_parser("list", help="list the table and figure names")
    r = sub.add_parser("runs", help="every finished record, one row each (ppl, sparsity, stage seconds)")
    r.add_argument("--results", default="results", help="results dir holding runs/ and reference/runs/")
    r.add_argument("--out", default=None, help="also write <out>/runs.md and runs.csv")
    g = sub.add_parser("grid", help="one outcome pivoted over two knobs of the finished records, per pattern")
    g.add_argument("--results", default="results", help="results dir holding runs/ and reference/runs/")
    g.add_argument("--rows", default="metric", help="knob down the side (a column of `runs`)")
    g.add_argument("--cols", default="shuffle", help="knob across the top")
    g.add_argument("--by", default="pattern", help="one grid per value of this knob ('' for one grid)")
    g.add_argument("--value", default="ppl/bundled_wiki", help="the outcome in the cells")
    g.add_argument("--where", action="append", default=[], metavar="KEY=V[,V]",
                   help="keep rows whose KEY is one of the values or does not apply (repeatable)")  # fmt: skip
    g.add_argument("--out", default=None, help="also write the grids to this markdown file")
    d = sub.add_parser("drift", help="your records vs the committed reference records of the same config")
    d.add_argument("--results", default="results", help="results dir holding runs/ and reference/runs/")
    d.add_argument("--runs", default=None, help="records to check (default: <results>/runs)")
    d.add_argument("--reference", default=None, help="reference records (default: <results>/reference/runs)")
    d.add_argument(
        "--rtol",
        type=float,
        default=None,
        help="tolerance of pruned results where bit-exactness is not required; across machines, of a pruned "
        "perplexity only where its reference cell has fewer than 3 calibration seeds (else 3 seed sd decide)",
    )
    d.add_argument("--dense-rtol", type=float, default=None, help="tolerance of dense-model quantities there")
    d.add_argument("--strict", action="store_true",
                   help="exit 1 on drift, or on a record with no reference of its config (make verify)")  # fmt: skip
    d.add_argument("--out", default=None, help="also write the report to this markdown file")
    h = sub.add_parser(
        "headline", help="the results page and the README summary (mean ± std over seeds, paired claims)"
    )
    h.add_argument("--results", default="results", help="results dir holding runs/ and reference/runs/")
    h.add_argument("--out", default=None, help="write the results block to this file instead of rewriting the pages")
    h.add_argument("--page", default="docs/results.md", help="the results page whose generated block is rewritten")
    h.add_argument("--readme", default="README.md", help="the README whose summary block is rewritten")
    args = parser.parse_args(argv)

    if args.command == "list":
        from analysis.figures import catalogue as figures
        from analysis.tables import paper_tables

        for name, spec in paper_tables.TABLES.items():
            print(f"table   {name:26s} {spec.title}")
        for name, fn in figures.FIGURES.items():
            print(f"figure  {name:26s} {(fn.__doc__ or '').splitlines()[0]}")
        return 0
    if args.command == "runs":
        from analysis.tables import browser

        df = browser.runs_overview(args.results)
        text = df.to_markdown(index=False, missingval="")
        print(text if not df.empty else "no finished records")
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / "runs.md").write_text(text + "\n")
            df.to_csv(Path(args.out) / "runs.csv", index=False)
        return 0
    if args.command == "grid":
        return _grid(args)
    if args.command == "drift":
        return _drift(args)
    if args.command == "headline":
        return _headline(args)
    names = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    start = time.perf_counter()
    if args.command == "figures":
        return _figures(args.results, args.out, names, start)
    from analysis.tables import render

    out = Path(args.out) if args.out else Path(args.results) / "tables"
    if not Path(args.results).is_dir():  # a typo must not write empty tables over real ones
        print(f"error: --results {args.results}: no such directory (nothing written)", file=sys.stderr)
        return 2
    try:
        built = render.build_all(args.results, out, names)
    except render.TableBuildError as e:
        print(f"error: {e} (the other tables and index.md were written)", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cells = sum(len(df) for df in built.values())
    missing = sum(render.not_run_count(df) for df in built.values())
    print(
        f"wrote {len(built)} tables to {out} ({cells - missing} of {cells} cells filled, {missing} not run) "
        f"in {time.perf_counter() - start:.2f} s; index: {out / 'index.md'}"
    )
    if args.wandb:
        from analysis.tables import wandb_tables

        figs = Path(args.figures) if args.figures else Path(args.results) / "figures"
        where = wandb_tables.log_all(built, figs, dir=Path(args.results) / "wandb")
        print(f"logged {len(built)} tables and the figures in {figs} to W&B: {where}")
    return 0


def _headline(args: argparse.Namespace) -> int:
    from analysis.stats import headline

    text = headline.build(args.results)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
        print(f"{args.out}: written")
        return 0
    blocks = [(args.page, headline.BEGIN, headline.END, text),
              (args.readme, headline.SUMMARY_BEGIN, headline.SUMMARY_END, headline.summary(args.results))]  # fmt: skip
    for path, begin, end, block in blocks:
        try:
            changed = headline.rewrite(path, begin, end, block)
        except (OSError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"{path}: {'rewritten' if changed else 'already up to date'}")
    return 0


def _grid(args: argparse.Namespace) -> int:
    from analysis.tables import browser

    where = {}
    for item in args.where:
        key, sep, val = item.partition("=")
        if not sep or not key:
            print(f"error: --where {item!r} is not KEY=VALUE", file=sys.stderr)
            return 2
        where[key] = val
    try:
        grids = browser.runs_grid(args.results, args.rows, args.cols, args.by or None, args.value, where)
    except browser.GridError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not grids:
        print("no finished records match")
        return 0
    head = f"{args.value} by {args.rows} × {args.cols}" + (f" ({' '.join(args.where)})" if args.where else "")
    parts = [f"## {head}"]
    parts.append(
        "Cells: mean ± sample std (number of calibration seeds); n=1 claims nothing. Below each grid, the "
        "rows of each column compared paired by seed (two-sided paired t-test, p < 0.05)."
    )
    for part, grid in grids.items():
        title = f"{args.by} = {part}" if args.by else "all"
        cells = grid.map(lambda v: v.format(1) if v is not None else "")  # None: not run
        align = ("left",) + ("right",) * len(cells.columns)
        table = cells.to_markdown(disable_numparse=True, colalign=align)
        claims = "\n".join(f"- {c}" for c in browser.grid_comparisons(grid) if "no claim" not in c)
        parts.append(f"### {title}\n\n{table}" + (f"\n\n{claims}" if claims else ""))
    text = "\n\n".join(parts) + "\n"
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


def _drift(args: argparse.Namespace) -> int:
    from analysis.checks import drift

    runs = Path(args.runs) if args.runs else Path(args.results) / "runs"
    ref = Path(args.reference) if args.reference else Path(args.results) / "reference" / "runs"
    rtol = drift.DEFAULT_RTOL if args.rtol is None else args.rtol
    dense_rtol = drift.DENSE_RTOL if args.dense_rtol is None else args.dense_rtol
    report = drift.audit(runs, ref, rtol, dense_rtol)
    text = drift.to_markdown(report)
    print(text, end="")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    if args.strict and (not report.ok or report.unmatched or report.unreadable or not report.comparisons):
        why = ("drift beyond tolerance" if not report.ok else
               f"{len(report.unreadable)} file(s) that are not records" if report.unreadable else
               "records without a reference (or none compared)")  # fmt: skip
        print(f"error: {why}", file=sys.stderr)
        return 1
    return 0


def _figures(results: str, out_arg: str | None, names: list[str] | None, start: float) -> int:
    from analysis.figures import catalogue as figures

    out = Path(out_arg) if out_arg else Path(results) / "figures"
    try:
        status = figures.build_all(results, out, names)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    ok = sum(s["status"] == "ok" for s in status.values())
    print(
        f"wrote {len(status)} figures to {out} ({ok} from data, {len(status) - ok} placeholders) "
        f"in {time.perf_counter() - start:.2f} s; index: {out / 'index.md'}"
    )
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except BrokenPipeError:  # `python -m analysis runs | head`: the reader left, nothing is wrong
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(0) from None
