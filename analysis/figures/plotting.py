"""What every figure shares: the inputs they read (loaded once), ``NoData``, fixed colours, axes helpers.

The figures are functions of files alone: ``results/observations/*.json`` (written once by
``experiments/observations.py``), the run records, the permutation bench and the scaling bench. A figure whose data is
absent raises ``NoData`` saying what to run, and ``analysis.figures.catalogue`` draws a placeholder instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from analysis import benches  # noqa: E402
from analysis import records as rec_io  # noqa: E402

DEFAULT_MODEL = "smollm2_135m"
#: one colour per method / mask, fixed so that every figure agrees
COLORS = {
    "unstructured_50": "#4c72b0", "2:4": "#dd8452", "2:4+ria_cp_lsa": "#55a868",
    "wanda": "#4c72b0", "ria": "#c44e52", "magnitude": "#8c8c8c", "sparsegpt": "#8172b3",
    "esparse": "#55a868", "ri": "#937860", "dense": "#000000",
}  # fmt: skip
MASK_LABELS = {
    "unstructured_50": "unstructured 50 %", "2:4": "2:4", "2:4+ria_cp_lsa": "2:4 + CP (ria_cp_lsa)",
}  # fmt: skip


class NoData(Exception):
    """The figure's data is absent; the message says what to run to produce it."""


@dataclass(frozen=True)
class Inputs:
    """What the figures read, loaded once."""

    observations: list[dict[str, Any]]
    records: pd.DataFrame
    permutation_bench: dict[str, Any] | None
    results_dir: Path
    scaling_bench: dict[str, Any] | None = None


def load_inputs(results_dir: str | Path) -> Inputs:
    """Observation files (default model first), finished-or-not records, and the permutation bench."""
    results = Path(results_dir)
    obs = []
    for path in sorted((results / "observations").glob("*.json")):
        try:
            rec = benches.read_bench_record(path, kind="observations")
        except benches.BenchRecordError as e:
            print(f"skip {e}")
            continue
        if rec["rows"]:
            cfg = rec["config"]
            obs.append({"model": cfg.get("model", path.stem), "calibration": cfg.get("calibration", {}),
                        "layers": rec["rows"]})  # fmt: skip
    obs.sort(key=lambda d: (d.get("model") != DEFAULT_MODEL, str(d.get("model"))))
    records, _ = rec_io.read_records(results)
    return Inputs(obs, records, _bench(results, "permutation"), results, _bench(results, "scaling"))


def _bench(results: Path, kind: str) -> dict[str, Any] | None:
    """``results/bench/<kind>.json`` when it is a readable bench record of that kind, else None."""
    path = results / "bench" / f"{kind}.json"
    if not path.is_file():
        return None
    try:
        return benches.read_bench_record(path, kind=kind)
    except benches.BenchRecordError as e:
        print(f"skip {e}")
        return None


def log_axis(ax, axis: str) -> None:
    """Log scale with plain-number labels at 1-2-5 steps on narrow ranges (under two decades) and at
    powers of ten otherwise, minor labels off (they collide). Call after plotting."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    getattr(ax, f"set_{axis}scale")("log")
    lo, hi = getattr(ax, f"get_{axis}lim")()
    subs = (1.0, 2.0, 5.0) if lo > 0 and hi / lo < 100 else (1.0,)
    target = getattr(ax, f"{axis}axis")
    target.set_major_locator(LogLocator(base=10, subs=subs))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())


def panel_grid(n: int, ncols: int = 2, w: float = 6.0, h: float = 3.2):
    """``n`` panels of ``w`` x ``h`` inches, ``ncols`` a row, the unused ones hidden: (figure, axes)."""
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)
