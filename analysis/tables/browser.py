"""The records browser: every finished record as one row, and one outcome pivoted over two knobs.

Not a paper table: ``python -m analysis runs`` lists what was run and what came out, and
``python -m analysis grid`` cuts the closing table of a sweep (experiments/) from the records, so it
cannot drift from them. A grid cell holds every calibration seed that ran (``analysis.stats.seeds``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import records as rec_io
from analysis.records import is_missing
from analysis.stats import seeds
from analysis.stats.cells import SHUFFLES

#: what a run was, as columns of :func:`runs_overview` (the experiment name aside)
RUN_KNOBS = ("model", "metric", "metric_alpha", "form", "metric_a", "reconstruct", "pattern", "tie_break",
             "shuffle", "calibration", "nsamples", "seed")  # fmt: skip


def runs_overview(results_dir: str | Path) -> pd.DataFrame:
    """Every finished record as one row, newest first per config: what was run (model, metric and
    its knobs, pattern, shuffle, calibration, experiment) and what came out (perplexities, zero-shot
    accuracies, actual sparsity, retained-score gain, stage seconds). Not a paper table: the record
    browser behind the sweeps of experiments/ (their closing tables are cut from it)."""
    recs = rec_io.done(rec_io.load_records(results_dir))
    if recs.empty:
        return pd.DataFrame()
    recs = recs.drop_duplicates("config_hash")
    knobs = [*RUN_KNOBS, "experiment"]
    outcome = sorted(c for c in recs.columns if c.startswith(("ppl/", "dense/ppl/", "zeroshot/")) and "stderr" not in c)
    outcome += [
        c for c in ("sparsity/actual", "permutation/retained_before", "permutation/retained_after") if c in recs
    ]
    secs = [c for c in ("seconds/prune", "seconds/eval") if c in recs]
    recs = recs.assign(lock=recs["lock"].fillna("pre-lock") if "lock" in recs else "pre-lock")
    df = recs[knobs + outcome + secs + ["lock", "config_hash"]].copy()
    if "permutation/retained_after" in df:
        gain = df["permutation/retained_after"] / df["permutation/retained_before"] - 1
        df = df.drop(columns=["permutation/retained_before", "permutation/retained_after"])
        df.insert(len(knobs) + len(outcome) - 2, "retained_gain", gain)
    df.loc[df["metric"] != "esparse", ["metric_alpha", "form"]] = None
    df.loc[df["metric"] != "ria", "metric_a"] = None
    df = df.dropna(axis=1, how="all")
    sort = [c for c in ("model", "pattern", "metric", "shuffle") if c in df]
    return df.sort_values(sort, kind="stable").reset_index(drop=True).round(4)


class GridError(ValueError):
    """Records that disagree inside one grid cell: the grid names the knobs that tell them apart."""


#: reading order of the usual grid axes (the rest sort alphabetically after them)
GRID_ORDER = {
    "metric": ["magnitude", "ri", "wanda", "ria", "esparse", "sparsegpt"],
    "shuffle": [*SHUFFLES, "greedy"],  # the permutation table's columns, then the one it leaves out
    "pattern": ["unstructured", "1:4", "2:4", "3:4", "4:8"],
}


def runs_grid(
    results_dir: str | Path,
    rows: str = "metric",
    cols: str = "shuffle",
    by: str | None = "pattern",
    value: str = "ppl/bundled_wiki",
    where: Mapping[str, str] | None = None,
) -> dict[str, pd.DataFrame]:
    """A pivot of one outcome over two knobs of the finished records (one frame per ``by`` value),
    e.g. perplexity by score × shuffle at each pattern: the closing table of a sweep, cut from the
    records so it cannot drift from them. ``where`` keeps rows whose column equals the value *or*
    does not apply to them (``metric_alpha=auto`` keeps Wanda, whose alpha is empty). Records of one
    configuration under several experiment names share a cell when they agree; records in one cell
    that disagree are an error naming the knobs that differ (narrow with ``where``), never a guess."""
    df = runs_overview(results_dir)
    if df.empty:
        return {}
    for key in [rows, cols, value, *([by] if by else []), *(where or {})]:
        if key not in df.columns:
            raise GridError(f"{key!r} is not a column of the records; known: {sorted(df.columns)}")
    for key, want in (where or {}).items():
        wanted = str(want).split(",")
        df = df[df[key].map(lambda v, w=wanted: is_missing(v) or any(_same(v, x) for x in w))]
    df = df.dropna(subset=[value])
    if "seed" not in df:
        df["seed"] = None
    knobs = [c for c in RUN_KNOBS if c in df and c != "seed"]
    out: dict[str, pd.DataFrame] = {}
    for part, sub in df.groupby(by, sort=True) if by else [("all", df)]:
        cells: dict[tuple, seeds.Summary] = {}
        for (r, c), cell in sub.groupby([rows, cols]):
            where_ = f"{by}={part} {rows}={r} {cols}={c}"
            differ = [k for k in knobs if cell[k].astype(str).nunique() > 1]
            if differ:  # seeds may differ inside a cell, nothing else may
                raise GridError(
                    f"{where_}: {len(cell)} records differ in {differ}: add --where for one of them "
                    f"({', '.join(cell['config_hash'])})"
                )
            per_seed = {}
            for seed, same in cell.groupby(cell["seed"].fillna(-1), sort=True):
                if same[value].nunique() > 1:
                    raise GridError(
                        f"{where_} seed={seed}: {len(same)} records of one config disagree on {value} "
                        f"({sorted(same[value].round(3))}) ({', '.join(same['config_hash'])})"
                    )
                per_seed[int(seed)] = float(same[value].iloc[0])
            cells[(r, c)] = seeds.summarize(per_seed)
        index = _grid_order(rows, {r for r, _ in cells})
        columns = _grid_order(cols, {c for _, c in cells})
        out[str(part)] = pd.DataFrame(
            [[cells.get((r, c)) for c in columns] for r in index], index=pd.Index(index, name=rows), columns=columns
        )
    return out


def grid_comparisons(grid: pd.DataFrame) -> list[str]:
    """Within each column of a seed grid, every pair of rows compared paired by seed (lowest mean
    first): the claim it supports, or "not separable", or "no claim" for fewer than two common seeds."""
    out = []
    for col in grid.columns:
        cells = [(r, s) for r, s in grid[col].items() if isinstance(s, seeds.Summary) and s.n]
        cells.sort(key=lambda rs: rs[1].mean)
        for i, (ra, a) in enumerate(cells):
            for rb, b in cells[i + 1 :]:
                out.append(f"{col}: " + seeds.paired(a, b).verdict(str(ra), str(rb)))
    return out


def _same(have: Any, want: str) -> bool:
    """A record value equals a command-line value: as text, or as numbers (32.0 is 32)."""
    if str(have) == want:
        return True
    try:
        return float(have) == float(want)
    except (TypeError, ValueError):
        return False


def _grid_order(axis: str, have: Iterable[Any]) -> list[Any]:
    known = GRID_ORDER.get(axis, [])
    have = list(have)
    return [k for k in known if k in have] + sorted((h for h in have if h not in known), key=str)
