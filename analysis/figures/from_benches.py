"""Figures of the bench records (``results/bench/*.json``) that are not the permutation bench's."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.figures.plotting import Inputs, NoData, log_axis  # noqa: E402


def scaling(inp: Inputs):
    """Prune and evaluation seconds against parameters x tokens (the work they should grow with),
    with the bench's fit, and peak host memory against parameters: one point per run of
    ``experiments/bench_scaling.py``, the bf16 and offload runs marked apart from the fitted float32 ones."""
    doc = inp.scaling_bench
    if not doc or not doc.get("rows"):
        raise NoData("no scaling bench (results/bench/scaling.json: python experiments/bench_scaling.py)")
    rows = pd.DataFrame(doc["rows"])
    extra = doc.get("extra") or {}
    fig, axes = plt.subplots(1, 3, figsize=(16.5, 4.6))
    kinds = rows["dtype"].astype(str) + rows["offload"].map({True: " offload", False: ""})
    markers = {k: m for k, m in zip(dict.fromkeys(kinds), "osD^v", strict=False)}
    for ax, (secs, params, tokens, fit_key, title) in zip(
        axes[:2],
        (
            ("prune_seconds", "linear_params", "calib_tokens", "prune_fit", "prune (Wanda 2:4)"),
            ("eval_seconds", "eval_params", "eval_tokens", "eval_fit", "perplexity evaluation"),
        ),
        strict=True,
    ):
        work = rows[params] * rows[tokens]
        for kind, sub in rows.groupby(kinds):
            ax.scatter(work[sub.index], sub[secs], marker=markers[kind], s=40, label=kind)
        for i, r in rows.iterrows():
            ax.annotate(f"{r['case']} ({r[tokens]} tok)", (work[i], r[secs]), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")  # fmt: skip
        f = extra.get(fit_key) or {}
        if f:
            a, b = f["per_param"], f["per_param_token"]
            label = f"fit: {a * 1e9:.2f} s/Gparam + {b * 1e12:.3f} s/(Gparam x ktok)"
            ax.scatter(work, a * rows[params] + b * work, marker="x", color="0.4", s=30, label=label)
        log_axis(ax, "x")
        log_axis(ax, "y")
        ax.set_xlabel(f"{params.replace('_', ' ')} x {tokens.replace('_', ' ')}")
        ax.set_ylabel("seconds")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
    ax = axes[2]
    for kind, sub in rows.groupby(kinds):
        ax.scatter(sub["linear_params"] / 1e6, sub["host_peak_gb"], marker=markers[kind], s=40, label=kind)
    for _, r in rows.iterrows():
        ax.annotate(r["case"], (r["linear_params"] / 1e6, r["host_peak_gb"]), fontsize=6, xytext=(3, 3),
                    textcoords="offset points")  # fmt: skip
    ax.set_xlabel("block-linear parameters (M)")
    ax.set_ylabel("peak host RSS (GB)")
    ax.set_title("peak host memory of the run", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    proj = extra.get("projection") or {}
    if "wanda_prune_seconds" in proj:
        title = (f"projected on this CPU ({proj.get('dtype')}): LLaMA-7B Wanda prune at {proj['calib_tokens']} "
                 f"calibration tokens ≈ {proj['wanda_prune_seconds'] / 3600:.1f} h")  # fmt: skip
        if "wikitext2_eval_seconds" in proj:
            title += f", WikiText-2 evaluation ≈ {proj['wikitext2_eval_seconds'] / 3600:.1f} h"
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
