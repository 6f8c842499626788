"""The paper tables on disk: ``<name>.md`` (a header that says what ran, then the paper's grid),
``<name>.tex`` (the grid as a booktabs tabular), ``<name>.csv`` (one line per cell, every digit),
and an ``index.md`` over them all that fits one screen.

``build_all`` is what ``python -m analysis tables`` (``make tables``) runs: it reads the records and
bench rows once, fills every table of ``analysis.tables.paper_tables`` and writes it. md and tex round
numbers to 4 decimals for reading; the csv keeps every digit. A cell whose record disagrees with the
committed reference record of its config says so in its ``drift`` column.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import benches
from analysis import records as rec_io
from analysis.tables import grid
from analysis.tables.matching import NOT_RUN, seed_of
from analysis.tables.paper_tables import TABLES, get
from analysis.tables.reference import PAPERS, load_reference


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{round(v, 4):.10g}"
    return str(v)


def not_run_count(df: pd.DataFrame) -> int:
    return int((df["ours"] == NOT_RUN).sum())


def _key_family(key: str) -> str:
    """``zeroshot/piqa/acc`` -> ``zeroshot/<task>/acc``, ``bench/gemm/...`` -> ``bench/gemm``."""
    key = key.split(" (")[0].replace("mean of ", "").split(", ")[0]
    if key.startswith("bench/"):
        return "/".join(key.split("/")[:2])
    return re.sub(r"^zeroshot/[^/]+/", "zeroshot/<task>/", key)


def ran_on(df: pd.DataFrame) -> str:
    """What produced our numbers: per device and metric keys, the models of the filled cells."""
    filled = df[df["ours"] != NOT_RUN]
    if filled.empty:
        return "nothing yet (no finished record matches any cell)"
    keys = filled["metric_key"].map(_key_family)
    parts = []
    for (device, key), g in filled.assign(_k=keys).groupby(["device", "_k"], sort=True):
        models = ", ".join(sorted(set(g["ours_model"])))
        parts.append(f"{models} on {device} [{key}]")
    return "; ".join(parts)


def to_markdown(df: pd.DataFrame) -> str:
    a = df.attrs
    paper = PAPERS.get(a.get("paper", ""), a.get("paper", ""))
    head = [
        f"# {a.get('title', a.get('name', 'table'))}",
        "",
        f"Paper: {paper}, {a.get('table', '')} ({a.get('where', '')}). Ours: {ran_on(df)}. "
        f"Not run: {not_run_count(df)} of {len(df)} cells.",
        "",
        f"Caption: {a.get('caption', '')}",
        "",
    ]
    notes = [f"- {n}" for n in a.get("notes", [])]
    body = grid.to_markdown(grid.grid(df)) if len(df) else "(no cells)"
    where = f"One line per cell, with the record(s) behind it: `{a.get('name', 'table')}.csv`."
    return "\n".join(head + [body, "", where, ""] + (["Notes:", *notes, ""] if notes else []))


def to_latex(df: pd.DataFrame) -> str:
    """The paper's grid as a booktabs tabular, LaTeX specials escaped; the title as a comment above it."""
    return grid.to_latex(grid.grid(df), df.attrs.get("title", df.attrs.get("name", "")))


def build_all(
    results_dir: str | Path, out_dir: str | Path, names: Iterable[str] | None = None
) -> dict[str, pd.DataFrame]:
    """Every table from whatever ``results_dir`` holds → ``out_dir/<name>.{md,csv,tex}`` + ``index.md``.

    Unreadable records and bench files are listed in the index, never fatal; an empty or missing
    ``results_dir/runs`` gives tables whose our-columns all say "not run". A table whose fill
    raises is listed in the index (``failed`` attr of the result) while the others are written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ref = load_reference()
    records, errors = rec_io.read_records(results_dir)
    bench, warnings = benches.read_bench(results_dir, records)
    drifted = _drift_marks(results_dir)
    built: dict[str, pd.DataFrame] = {}
    failed: dict[str, str] = {}
    for name in names or TABLES:
        spec = get(name)
        try:
            df = spec(records, bench, ref)
        except Exception as e:  # one broken table must not cost the user all the others
            failed[name] = f"{type(e).__name__}: {e}"
            (out / f"{name}.md").write_text(f"# {spec.title}\n\nbuild failed: {failed[name]}\n")
            continue
        df["drift"] = df["config_hash"].map(  # a cell of several seeds names each seed's record
            lambda h: "; ".join(drifted[x] for x in str(h).split() if x in drifted)
        )
        if spec.bench_notes and warnings:
            df.attrs["notes"] = [*df.attrs.get("notes", []), *warnings]
        (out / f"{name}.md").write_text(to_markdown(df))
        df.to_csv(out / f"{name}.csv", index=False)
        (out / f"{name}.tex").write_text(to_latex(df))
        built[name] = df
    (out / "index.md").write_text(_index(built, records, errors, warnings, results_dir, failed))
    if failed:
        raise TableBuildError(failed)
    return built


def _drift_marks(results_dir: str | Path) -> dict[str, str]:
    """{config hash: mark} for your records that disagree with the committed reference record of
    the same config: the table shows yours (the newest) and says so, never silently."""
    from analysis.checks import drift

    rd = Path(results_dir)
    report = drift.audit(rd / "runs", rd / "reference" / "runs")
    return {h: f"yours ≠ reference: {c.verdict} (python -m analysis drift)" for h, c in report.drifted().items()}


def unplaced(records: pd.DataFrame, built: Mapping[str, pd.DataFrame]) -> list[str]:
    """Every done record no table shows, with why: nothing is dropped without a word. (A seed of a
    cell counts as placed: the cell names each seed's record.)"""
    placed = {h for df in built.values() for cell in df["config_hash"].astype(str) for h in cell.split()}
    done = rec_io.done(records).drop_duplicates("config_hash") if not records.empty else records
    out = []
    for rec in done.to_dict("records") if len(done) else []:
        if str(rec["config_hash"]) in placed:
            continue
        out.append(f"- `{rec['config_hash']}` {rec['model']} {rec['metric']} {rec['pattern']} "
                   f"`{rec['shuffle']}` seed {seed_of(rec)}: {_why_unplaced(rec)}")  # fmt: skip
    return out


def _why_unplaced(rec: Mapping[str, Any]) -> str:
    from analysis.tables.reference import paper_models
    from analysis.tables.selection import DEFAULT_TIE_BREAK, PAPER_CALIBRATION, at_local_sizes

    if str(rec.get("tie_break") or DEFAULT_TIE_BREAK) != DEFAULT_TIE_BREAK:
        return (
            f"tie rule {rec['tie_break']} (tables read {DEFAULT_TIE_BREAK}; the results page's spread table reads it)"
        )
    if rec.get("pattern_kind") == "dense":
        return "a dense record no table reads (the tables read a dense number of the same protocol and sizes)"
    if rec["model"] in paper_models(load_reference()):
        if rec.get("calibration") != PAPER_CALIBRATION:
            return f"other protocol: calibration {rec.get('calibration')} (the paper cells read {PAPER_CALIBRATION})"
        return "no paper cell has this configuration (or another record of it is newer)"
    if not at_local_sizes(rec):
        return "other sizes than the embedded default's 32×512 (a check, not a table cell)"
    return "no table has a cell of this configuration (e.g. a variant the results page compares)"


class TableBuildError(RuntimeError):
    """Some tables failed to build (the others were written); ``failed`` maps name -> error."""

    def __init__(self, failed: Mapping[str, str]):
        self.failed = dict(failed)
        super().__init__("tables failed: " + "; ".join(f"{k}: {v}" for k, v in failed.items()))


def _index(
    built: Mapping[str, pd.DataFrame],
    records: pd.DataFrame,
    errors: list[str],
    warnings: list[str],
    results_dir: str | Path,
    failed: Mapping[str, str],
) -> str:
    status = records["status"].fillna("unknown").value_counts().to_dict() if not records.empty else {}
    counts = ", ".join(f"{v} {k}" for k, v in sorted(status.items())) or "none"
    lines = [
        "# Paper tables",
        "",
        f"Built from the records in `{Path(results_dir) / 'runs'}` and `{Path(results_dir) / 'reference' / 'runs'}` "
        f"({len(records)} records: {counts}); "
        "only `done` records count. Regenerate with `python -m analysis tables`. Each table: "
        "`<name>.md` (the paper's grid), `<name>.tex` (booktabs), `<name>.csv` (one line per cell).",
        "",
        "| table | paper | local cells filled | paper-scale cells filled | what stops the rest |",
        "|---|---|---|---|---|",
    ]
    for name, df in built.items():
        local = grid.local_lines(df)
        filled = df["ours"] != NOT_RUN
        models = sorted(set(df.loc[local, "ours_model"]))
        per_model = ", ".join(f"{m} {int((filled & local & (df['ours_model'] == m)).sum())}/"
                              f"{int((local & (df['ours_model'] == m)).sum())}" for m in models) or "0"  # fmt: skip
        paper_filled = f"{int((filled & ~local).sum())}/{int((~local).sum())}"
        lines.append(f"| [{name}]({name}.md) | {df.attrs.get('paper')} {df.attrs.get('table', '')} | {per_model} "
                     f"| {paper_filled} | {get(name).stops.replace('<table>', name)} |")  # fmt: skip
    lines += [f"| {name} | | build failed: {err} | | |" for name, err in failed.items()]
    lines += ["", "## Finished records placed in no table", ""]
    lines += unplaced(records, built) or ["none"]
    lines += ["", "## Records that could not be read", ""]
    lines += [f"- {e}" for e in errors] or ["none"]
    lines += ["", "## Bench files skipped", ""]
    lines += [f"- {w}" for w in warnings] or ["none"]
    return "\n".join(lines) + "\n"
