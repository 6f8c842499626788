"""Every figure by name, and ``build_all``: ``python -m analysis figures`` writes each as
``results/figures/<name>.png`` plus an ``index.md``. No model, no torch: seconds to run.

Every figure is a function of files alone (``analysis.figures.plotting`` loads them once); one that lacks
its data is written as a placeholder PNG that says what is missing and how to produce it (and the
reason is printed), never drawn from invented numbers. The observation figures are in
``analysis.figures.observations``, the figures of our run records in ``analysis.figures.from_records``.

    python -m analysis figures [--results results] [--out results/figures] [--only name,...]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from analysis.figures.from_benches import scaling  # noqa: E402
from analysis.figures.from_records import (  # noqa: E402
    esparse_ablation_bars,
    permutation_retained,
    ria_fig4a_ppl_vs_sparsity,
)
from analysis.figures.observations import (  # noqa: E402
    entropy_per_channel,
    esparse_fig2_adjacent_std,
    esparse_fig2_norm_std,
    ria_fig5_degree,
    ria_fig6_corruption,
)
from analysis.figures.plotting import Inputs, NoData, load_inputs  # noqa: E402

DPI = 110


FigureFn = Callable[[Inputs], Any]
FIGURES: dict[str, FigureFn] = {
    "esparse_fig2_norm_std": esparse_fig2_norm_std,
    "esparse_fig2_adjacent_std": esparse_fig2_adjacent_std,
    "entropy_per_channel": entropy_per_channel,
    "ria_fig5_degree": ria_fig5_degree,
    "ria_fig6_corruption": ria_fig6_corruption,
    "permutation_retained": permutation_retained,
    "esparse_ablation": esparse_ablation_bars,
    "ria_fig4a_ppl_vs_sparsity": ria_fig4a_ppl_vs_sparsity,
    "scaling": scaling,
}


def get(name: str) -> FigureFn:
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; known figures: {', '.join(FIGURES)}")
    return FIGURES[name]


def placeholder(name: str, reason: str):
    """A figure that says it has no data, and why: never blank, never made up."""
    fig, ax = plt.subplots(figsize=(8, 2.6))
    ax.axis("off")
    wrapped = "\n".join(_wrap(reason, 95))
    ax.text(0.5, 0.62, f"{name}: no data", ha="center", va="center", fontsize=13, weight="bold")
    ax.text(0.5, 0.28, wrapped, ha="center", va="center", fontsize=9, color="0.25")
    return fig


def _wrap(text: str, width: int) -> Iterable[str]:
    line = ""
    for word in re.split(r"\s+", text):
        if line and len(line) + 1 + len(word) > width:
            yield line
            line = word
        else:
            line = f"{line} {word}".strip()
    if line:
        yield line


def build_all(
    results_dir: str | Path, out_dir: str | Path, names: Iterable[str] | None = None, dpi: int = DPI
) -> dict[str, dict[str, str]]:
    """Every figure → ``out_dir/<name>.png`` plus ``index.md``; ``{name: {"status", "path", "reason"}}``.

    status "ok": drawn from data; "no data": a placeholder PNG was written and the reason printed.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    wanted = list(names) if names else list(FIGURES)
    for n in wanted:
        get(n)
    inp = load_inputs(results_dir)
    status: dict[str, dict[str, str]] = {}
    for name in wanted:
        path = out / f"{name}.png"
        try:
            fig = FIGURES[name](inp)
            state, reason = "ok", ""
        except NoData as e:
            fig, state, reason = placeholder(name, str(e)), "no data", str(e)
            print(f"{name}: no data: {reason}")
        fig.savefig(path, dpi=dpi)
        plt.close(fig)
        status[name] = {"status": state, "path": str(path), "reason": reason}
    lines = ["# Figures", "", f"Built from `{Path(results_dir)}` by `python -m analysis figures`.", "",
             "| figure | status | note |", "|---|---|---|"]  # fmt: skip
    for name, s in status.items():
        note = s["reason"] or (FIGURES[name].__doc__ or "").split("\n")[0]
        lines.append(f"| [{name}]({name}.png) | {s['status']} | {note} |")
    (out / "index.md").write_text("\n".join(lines) + "\n")
    return status
