"""Paper tables as ``wandb.Table`` and figures as ``wandb.Image`` in one W&B run (group "tables").

Why a separate run: each pruning run already mirrors its own record into W&B (esparse.tracking),
grouped by experiment; the tables compare *across* runs, so they go into one run of their own that a
dashboard can show beside the sweeps. Offline unless the user set ``WANDB_MODE`` (no login, no
network); ``wandb sync <dir>/wandb/offline-run-*`` uploads it later, ``WANDB_MODE=online`` logs live.

    python -m analysis tables --wandb            # build the tables, then log them and results/figures/*.png
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.tables import grid

GROUP = "tables"


def table_rows(df: pd.DataFrame) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows for ``wandb.Table``: every cell a string or a finite float (W&B tables
    reject mixed types in a column, and "not run" / "—" must stay readable, so all become strings
    except numbers, which stay numbers for sorting only when the whole column is numeric)."""
    cols = [str(c) for c in df.columns]
    numeric = {c: all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in df[c]) for c in df.columns}
    rows = []
    for rec in df.itertuples(index=False):
        row = []
        for c, v in zip(df.columns, rec, strict=True):
            if numeric[c]:
                row.append(float(v) if not (isinstance(v, float) and math.isnan(v)) else None)
            else:
                row.append(_text(v))
        rows.append(row)
    return cols, rows


def _text(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.6g}"
    return str(v)


def log_all(
    tables: Mapping[str, pd.DataFrame],
    figures_dir: str | Path | None,
    dir: str | Path = "results/wandb",
    project: str = "esparse",
    name: str = "paper-tables",
) -> str:
    """Log every table (and every PNG in ``figures_dir``) to one run; returns the run's local dir."""
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    Path(dir).mkdir(parents=True, exist_ok=True)
    run = wandb.init(project=project, group=GROUP, job_type="analysis", name=name, dir=str(dir),
                     reinit="finish_previous")  # fmt: skip
    try:
        for tname, df in tables.items():
            cols, rows = table_rows(df)
            run.log({f"tables/{tname}": wandb.Table(columns=cols, data=rows)})  # one line per cell
            g = grid.grid(df).reset_index()  # and the paper's layout, to read at a glance
            cols, rows = table_rows(g)
            run.log({f"grids/{tname}": wandb.Table(columns=cols, data=rows)})
            run.summary[f"tables/{tname}/cells"] = len(df)
            run.summary[f"tables/{tname}/not_run"] = int((df["ours"] == "not run").sum()) if "ours" in df else 0
        figs = sorted(Path(figures_dir).glob("*.png")) if figures_dir and Path(figures_dir).is_dir() else []
        for png in figs:
            run.log({f"figures/{png.stem}": wandb.Image(str(png), caption=png.stem)})
        where = str(run.dir)
    finally:
        run.finish()
    return where
