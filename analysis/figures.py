"""Observation and result figures from files alone: ``results/observations/*.json`` (written once by
``experiments/observations.py``), the run records (``results/runs/*.json``) and the permutation bench
(``results/bench/permutation.json``). No model, no torch: seconds to run.

Every figure is a function of that data; one that lacks its data is written as a placeholder PNG
that says what is missing and how to produce it (and the reason is printed), never drawn from
invented numbers.

    python -m analysis figures [--results results] [--out results/figures] [--only name,...]
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis import records as rec_io  # noqa: E402

DEFAULT_MODEL = "smollm2_135m"
DPI = 110
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


# ----------------------------------------------------------------------------- pure helpers


def adjacent_vs_distant(values: Sequence[float]) -> tuple[float, float]:
    """Median |v_j - v_{j+1}| over adjacent channels and median |v_j - v_{j+c/2}| over channels half
    the width apart (a fixed, seed-free stand-in for unrelated pairs). E-Sparse Fig. 2c/d claims the
    first is small; the ratio of the two says how much smaller than for unrelated channels."""
    v = np.asarray(values, dtype=float)
    if v.size < 4:
        raise ValueError(f"need at least 4 channels, got {v.size}")
    half = v.size // 2
    return float(np.median(np.abs(np.diff(v)))), float(np.median(np.abs(v[:half] - v[half : 2 * half])))


def degree_summary(degree: Sequence[int], rows: int) -> dict[str, float]:
    """Mean, std, the share of channels with no kept weight ("corrupted", RIA Fig. 6) and the share
    with fewer than 10 % of the rows kept."""
    d = np.asarray(degree, dtype=float)
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    return {
        "mean": float(d.mean()),
        "std": float(d.std()),
        "zero_share": float((d == 0).mean()),
        "low_share": float((d < 0.1 * rows).mean()),
    }


def _ppl_key(row: Mapping[str, Any]) -> tuple[str, float] | None:
    """The perplexity a record reports: WikiText-2 if it has it, else the bundled corpus."""
    for key in ("ppl/wikitext2", "ppl/bundled_wiki"):
        v = row.get(key)
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            return key, float(v)
    return None


def ppl_points(records: pd.DataFrame) -> pd.DataFrame:
    """One point per finished pruned record: model, metric, pattern kind, sparsity, shuffle, ppl, key.

    Dense perplexity comes from dense records and from the ``dense/ppl/...`` copies pruned records
    carry (sparsity 0, metric "dense")."""
    cols = ["model", "metric", "pattern_kind", "pattern", "sparsity", "shuffle", "ppl", "key", "config_hash"]
    out: list[dict[str, Any]] = []
    done = rec_io.done(records) if not records.empty else records
    for row in done.to_dict("records") if not done.empty else []:
        kind = row.get("pattern_kind")
        if kind == "dense" or row.get("metric") == "dense":
            got = _ppl_key(row)
            if got:
                out.append({"model": row["model"], "metric": "dense", "pattern_kind": "dense", "pattern": "dense",
                            "sparsity": 0.0, "shuffle": "none", "ppl": got[1], "key": got[0],
                            "config_hash": row.get("config_hash")})  # fmt: skip
            continue
        got = _ppl_key(row)
        sp = row.get("sparsity")
        if got is None or sp is None or (isinstance(sp, float) and math.isnan(sp)):
            continue
        out.append({"model": row["model"], "metric": row.get("metric"), "pattern_kind": kind,
                    "pattern": row.get("pattern"), "sparsity": float(sp), "shuffle": row.get("shuffle") or "none",
                    "ppl": got[1], "key": got[0], "config_hash": row.get("config_hash")})  # fmt: skip
        dense = {k[len("dense/") :]: row.get(k) for k in ("dense/ppl/wikitext2", "dense/ppl/bundled_wiki")}
        got_d = _ppl_key(dense)
        if got_d:
            out.append({"model": row["model"], "metric": "dense", "pattern_kind": "dense", "pattern": "dense",
                        "sparsity": 0.0, "shuffle": "none", "ppl": got_d[1], "key": got_d[0],
                        "config_hash": row.get("config_hash")})  # fmt: skip
    df = pd.DataFrame(out, columns=cols)
    return df.drop_duplicates(subset=["model", "metric", "pattern_kind", "sparsity", "shuffle", "key"])


def retained_gains(records: pd.DataFrame) -> pd.DataFrame:
    """Whole-model retained score gain of each permutation method in finished N:M records:
    model, metric, pattern, shuffle, gain = retained_after / retained_before - 1, seconds."""
    cols = ["model", "metric", "pattern", "shuffle", "gain", "seconds"]
    rows = []
    done = rec_io.done(records) if not records.empty else records
    for r in done.to_dict("records") if not done.empty else []:
        before, after = r.get("permutation/retained_before"), r.get("permutation/retained_after")
        if before is None or after is None or (isinstance(before, float) and math.isnan(before)) or not before:
            continue
        rows.append({"model": r["model"], "metric": r.get("metric"), "pattern": r.get("pattern"),
                     "shuffle": r.get("shuffle") or "none", "gain": float(after) / float(before) - 1.0,
                     "seconds": r.get("permutation/seconds")})  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


# ----------------------------------------------------------------------------- loading


def load_inputs(results_dir: str | Path) -> Inputs:
    """Observation files (default model first), finished-or-not records, and the permutation bench."""
    results = Path(results_dir)
    obs = []
    for path in sorted((results / "observations").glob("*.json")):
        try:
            rec = rec_io.read_bench_record(path, kind="observations")
        except rec_io.BenchRecordError as e:
            print(f"skip {e}")
            continue
        if rec["rows"]:
            cfg = rec["config"]
            obs.append({"model": cfg.get("model", path.stem), "calibration": cfg.get("calibration", {}),
                        "layers": rec["rows"]})  # fmt: skip
    obs.sort(key=lambda d: (d.get("model") != DEFAULT_MODEL, str(d.get("model"))))
    records, _ = rec_io.read_records(results)
    bench_path = results / "bench" / "permutation.json"
    bench = None
    if bench_path.is_file():
        try:
            bench = rec_io.read_bench_record(bench_path, kind="permutation")
        except rec_io.BenchRecordError as e:
            print(f"skip {e}")
    return Inputs(obs, records, bench, results)


def _obs(inp: Inputs) -> dict[str, Any]:
    if not inp.observations:
        raise NoData(
            f"no observation file under {inp.results_dir / 'observations'}; run: python experiments/observations.py"
        )
    return inp.observations[0]


def _layer_title(layer: Mapping[str, Any]) -> str:
    return f"block {layer['block']} {layer['linear']} input (c = {layer['in_features']})"


def _log(ax, axis: str) -> None:
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


def _grid(n: int, ncols: int = 2, w: float = 6.0, h: float = 3.2):
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


# ----------------------------------------------------------------------------- observation figures


def esparse_fig2_norm_std(inp: Inputs):
    """E-Sparse Fig. 2a/b: channels sorted by input norm; their RMS and their std over tokens.

    The norm is shown per token (RMS = ‖X_j‖₂ / √seqlen under Wanda's convention) so that RMS and std
    share one axis and unit: RMS² = mean² + std², so where std falls below RMS the channel has a mean."""
    obs = _obs(inp)
    layers = obs["layers"]
    seqlen = float(obs.get("calibration", {}).get("seqlen") or 1)
    fig, axes = _grid(len(layers))
    for ax, lay in zip(axes, layers, strict=False):
        ch = lay["channels"]
        norm, std = np.asarray(ch["norm"]), np.asarray(ch["std"])
        order = np.argsort(norm, kind="stable")
        x = np.arange(norm.size)
        ax.scatter(x, std[order], s=3, color="#dd8452", alpha=0.6, label="std over tokens")
        ax.plot(x, norm[order] / math.sqrt(seqlen), color="#4c72b0", lw=1.4, label="RMS over tokens (= norm / √seqlen)")
        _log(ax, "y")
        ax.set_xlabel("input channel, sorted by norm (rank)")
        ax.set_ylabel("activation value (log)")
        ax.set_title(_layer_title(lay), fontsize=10)
        ax.legend(loc="upper left", fontsize=8, markerscale=3)
    cal = obs.get("calibration", {})
    fig.suptitle(
        f"E-Sparse Fig. 2a/b on {obs['model']}: per-channel RMS and std, channels sorted by norm "
        f"({cal.get('nsamples', '?')}×{cal.get('seqlen', '?')} {cal.get('name', '')} tokens, dense model)",
        fontsize=11,
    )
    fig.tight_layout()
    return fig


def esparse_fig2_adjacent_std(inp: Inputs, window: int = 128):
    """E-Sparse Fig. 2c/d: std per channel in the original channel order (the first ``window``
    channels), with the median adjacent-channel gap against the median gap of unrelated channels."""
    obs = _obs(inp)
    layers = obs["layers"]
    fig, axes = _grid(len(layers))
    for ax, lay in zip(axes, layers, strict=False):
        std = np.asarray(lay["channels"]["std"])
        adj, far = adjacent_vs_distant(std)
        k = min(window, std.size)
        ax.plot(np.arange(k), std[:k], marker="o", ms=2.5, lw=0.8, color="#dd8452")
        ax.set_xlabel(f"input channel index (original order, first {k} of {std.size})")
        ax.set_ylabel("std over tokens")
        ratio = f" (ratio {adj / far:.2f})" if far > 0 else ""
        ax.set_title(f"{_layer_title(lay)}\nmedian |Δstd|: adjacent {adj:.3g}, c/2 apart {far:.3g}{ratio}", fontsize=9)
    fig.suptitle(
        f"E-Sparse Fig. 2c/d on {obs['model']}: std of adjacent channels "
        "(ratio < 1: neighbours are more alike than unrelated channels)",
        fontsize=11,
    )
    fig.tight_layout()
    return fig


def entropy_per_channel(inp: Inputs):
    """Entropy per input channel against its norm: the information E-Sparse adds to Wanda's norm."""
    obs = _obs(inp)
    layers = obs["layers"]
    fig, axes = _grid(len(layers))
    for ax, lay in zip(axes, layers, strict=False):
        ch = lay["channels"]
        norm, ent = np.asarray(ch["norm"]), np.asarray(ch["entropy"])
        ax.scatter(norm, ent, s=4, alpha=0.5, color="#55a868")
        _log(ax, "x")
        ax.set_xlabel(r"input norm $\|X_j\|_2$ (log)")
        ax.set_ylabel(r"entropy $H_j$ (nats, 100 bins)")
        ax.axhline(math.log(100), color="0.5", lw=0.8, ls="--")
        ax.text(norm.min(), math.log(100), " ln 100 (max)", va="bottom", fontsize=7, color="0.4")
        r = np.corrcoef(np.log(np.maximum(norm, 1e-12)), ent)[0, 1] if norm.size > 2 else float("nan")
        ax.set_title(f"{_layer_title(lay)}; corr(log norm, H) = {r:.2f}", fontsize=9)
        ax.set_ylim(0, math.log(100) * 1.08)
    fig.suptitle(
        rf"Per-channel entropy vs norm on {obs['model']} (the two terms of E-Sparse's $|W|(\alpha H_j + \|X_j\|_2)$)",
        fontsize=11,
    )
    fig.tight_layout()
    return fig


def _degree_hist(ax, degrees: Mapping[str, Sequence[int]], rows: int, keys: Sequence[tuple[str, str, str]]):
    bins = np.linspace(0, rows, 41)
    for key, label, color in keys:
        if key not in degrees:
            continue
        s = degree_summary(degrees[key], rows)
        ax.hist(degrees[key], bins=bins, histtype="step", lw=1.6, color=color,
                label=f"{label}: std {s['std']:.1f}, zero {100 * s['zero_share']:.1f} %")  # fmt: skip
    ax.set_xlabel(f"retained degree (kept weights per input channel, of {rows} rows)")
    ax.set_ylabel("input channels")
    ax.set_ylim(top=ax.get_ylim()[1] * 1.45)  # headroom for the legend
    ax.legend(fontsize=7, loc="upper left")


def ria_fig5_degree(inp: Inputs):
    """RIA Fig. 5: distribution of input channels' retained degree, RIA score, unstructured 50 % vs
    2:4 vs 2:4 + channel permutation (CP should move 2:4 towards the unstructured spread)."""
    obs = _obs(inp)
    layers = obs["layers"]
    fig, axes = _grid(len(layers))
    for ax, lay in zip(axes, layers, strict=False):
        deg, share = lay["degree"], lay.get("retained_share", {})
        keys = [
            (f"ria/{m}", f"{MASK_LABELS[m]} (kept score {100 * share.get(f'ria/{m}', float('nan')):.2f} %)", COLORS[m])
            for m in ("unstructured_50", "2:4", "2:4+ria_cp_lsa")
        ]
        _degree_hist(ax, deg, int(deg["rows"]), keys)
        ax.set_title(_layer_title(lay), fontsize=10)
    fig.suptitle(f"RIA Fig. 5 on {obs['model']}: retained degree of input channels (RIA score, a = 0.5)", fontsize=11)
    fig.tight_layout()
    return fig


def ria_fig6_corruption(inp: Inputs):
    """RIA Fig. 6: retained degree under Wanda vs RIA at 50 % unstructured; channels with degree 0
    are "corrupted" (the whole input channel is pruned)."""
    obs = _obs(inp)
    layers = obs["layers"]
    fig, axes = _grid(len(layers))
    for ax, lay in zip(axes, layers, strict=False):
        deg = lay["degree"]
        keys = [("wanda/unstructured_50", "Wanda", COLORS["wanda"]), ("ria/unstructured_50", "RIA", COLORS["ria"])]
        _degree_hist(ax, deg, int(deg["rows"]), keys)
        ax.set_title(_layer_title(lay), fontsize=10)
    fig.suptitle(
        f"RIA Fig. 6 on {obs['model']}: channel corruption at 50 % unstructured (zero = channels left with no weight)",
        fontsize=11,
    )
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- result figures


def permutation_retained(inp: Inputs):
    """Retained score per permutation method: per matrix from the permutation bench (fraction of
    the unstructured bound vs seconds) and per whole model from run records (gain over no shuffle)."""
    bench_rows = []
    for r in rec_io.widest_timings((inp.permutation_bench or {}).get("rows", [])):
        if r.get("retained_over_bound") is not None and r.get("seconds") is not None:
            bench_rows.append({"case": f"{r['case']} {r['n']}:{r['m']}", "label": r["label"], "method": r["label"],
                               "ret": float(r["retained_over_bound"]), "seconds": float(r["seconds"])})  # fmt: skip
    gains = retained_gains(inp.records)
    gains = gains[gains["shuffle"] != "none"]
    if not bench_rows and gains.empty:
        raise NoData(
            "no permutation bench (results/bench/permutation.json: python experiments/bench_permutation.py) "
            "and no finished N:M run with a shuffle (python run.py -m +experiment=ria_t11_local)"
        )
    panels = int(bool(bench_rows)) + int(not gains.empty)
    fig, axes = plt.subplots(1, panels, figsize=(7.5 * panels, 5.0), squeeze=False)
    axes = list(axes.flat)
    if bench_rows:
        ax = axes.pop(0)
        b = pd.DataFrame(bench_rows)
        cases = list(dict.fromkeys(b["case"]))
        markers = "osD^vP*Xh<>"
        methods = list(dict.fromkeys(b["method"]))
        cmap = plt.get_cmap("tab20")  # up to 20 methods and variants, each its own colour
        for ci, case in enumerate(cases):
            for mi, meth in enumerate(methods):
                sub = b[(b["case"] == case) & (b["method"] == meth)]
                if not sub.empty:
                    ax.scatter(sub["seconds"].clip(lower=1e-4), sub["ret"], marker=markers[ci % len(markers)],
                               color=cmap(mi % 20), s=30, alpha=0.85)  # fmt: skip
        _log(ax, "x")
        ax.set_xlabel("seconds per matrix (log, wall)")
        ax.set_ylabel("retained score / unstructured bound")
        ax.set_title("per matrix (results/bench/permutation.json)", fontsize=10)
        mh = [plt.Line2D([], [], ls="", marker="o", color=cmap(i % 20), label=m) for i, m in enumerate(methods)]
        ch = [plt.Line2D([], [], ls="", marker=markers[i % len(markers)], color="0.3", label=c)
              for i, c in enumerate(cases)]  # fmt: skip
        leg = ax.legend(handles=mh, title="method", fontsize=7, loc="lower right")
        ax.add_artist(leg)
        ax.legend(handles=ch, title="matrix", fontsize=6, loc="upper left")
    if not gains.empty:
        ax = axes.pop(0)
        g = gains.assign(group=gains["model"] + " " + gains["metric"].astype(str) + " " + gains["pattern"].astype(str))
        groups = list(dict.fromkeys(g["group"]))
        shuffles = list(dict.fromkeys(g["shuffle"]))
        width = 0.8 / max(1, len(shuffles))
        mean = g.groupby(["group", "shuffle"])["gain"].mean()  # several records of one config: their mean
        for si, sh in enumerate(shuffles):
            ys = [100 * mean.get((k, sh), np.nan) for k in groups]
            ax.bar(np.arange(len(groups)) + si * width, ys, width, label=sh, color=plt.get_cmap("tab10")(si % 10))
        ax.set_xticks(np.arange(len(groups)) + width * (len(shuffles) - 1) / 2)
        ax.set_xticklabels(groups, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel("retained score gain over no shuffle (%)")
        ax.set_title("whole model (run records: permutation/retained_after / before - 1)", fontsize=10)
        ax.legend(title="shuffle", fontsize=8)
    fig.suptitle("Retained score per permutation method", fontsize=11)
    fig.tight_layout()
    return fig


def esparse_ablation_bars(inp: Inputs):
    """E-Sparse ablation ("Fig. 4"): perplexity of norm → +entropy → +global → +local shuffle, the
    paper's LLaMA numbers beside ours (from the table builder, so the cells match the table)."""
    from analysis import tables

    df = tables.esparse_ablation(inp.records)
    steps = list(dict.fromkeys(df["row"]))
    x = np.arange(len(steps))
    fig, axes = plt.subplots(1, 2, figsize=(13.0, 4.8), squeeze=False)
    ax = axes[0][0]
    pvals = df.drop_duplicates(["row", "column"])  # a paper line comes before any local line
    for col in dict.fromkeys(df["column"]):
        ys = []
        for s in steps:
            v = pvals[(pvals["row"] == s) & (pvals["column"] == col)]["paper"]
            ys.append(float(v.iloc[0]) if len(v) and isinstance(v.iloc[0], float) else np.nan)
        ax.plot(x, ys, marker="o", label=col)
    ax.set_ylabel("WikiText-2 perplexity (lower is better)")
    ax.set_title("paper (E-Sparse Table 4, 2:4, LLaMA)", fontsize=10)
    ax.legend(fontsize=8)
    ax = axes[0][1]
    ours = df[df["ours"] != tables.NOT_RUN]
    if ours.empty:
        ax.text(0.5, 0.5, "ours: not run\n(python run.py -m +experiment=esparse_ablation_local)",
                ha="center", va="center", transform=ax.transAxes, fontsize=10, color="0.3")  # fmt: skip
        ax.set_yticks([])
    for model in dict.fromkeys(ours["ours_model"]):
        sub = ours[ours["ours_model"] == model]
        ys = [float(sub[sub["row"] == s]["ours"].iloc[0]) if (sub["row"] == s).any() else np.nan for s in steps]
        keys = ", ".join(sorted(set(sub["metric_key"])))
        ax.plot(x, ys, marker="s", label=f"{model} [{keys}]")
        for xi, y in zip(x, ys, strict=True):
            ax.annotate("not run" if math.isnan(y) else f"{y:.1f}", (xi, 0 if math.isnan(y) else y),
                        textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)  # fmt: skip
    if not ours.empty:
        ax.legend(fontsize=7)
    ax.set_ylabel("perplexity (lower is better)")
    ax.set_title("ours (2:4)", fontsize=10)
    for a in axes[0]:
        a.set_xlim(-0.4, len(steps) - 0.6)
        a.set_xticks(x)
        a.set_xticklabels(steps, rotation=12, ha="right", fontsize=8)
        a.grid(alpha=0.3)
    fig.suptitle("E-Sparse ablation: norm → + entropy → + global naive shuffle → + local block shuffle", fontsize=11)
    fig.tight_layout()
    return fig


def ria_fig4a_ppl_vs_sparsity(inp: Inputs):
    """RIA Fig. 4a: perplexity against unstructured sparsity per method (dense at 0), N:M points
    (1:4, 2:4, 3:4, 4:8) at their sparsity as open markers. Needs at least two sparsities."""
    pts = ppl_points(inp.records)
    uns = pts[pts["pattern_kind"].isin(["unstructured", "dense"])]
    per_method = uns[uns["metric"] != "dense"].groupby(["model", "metric"])["sparsity"].nunique()
    if per_method.empty or per_method.max() < 2:
        raise NoData(
            "no method has finished unstructured runs at two or more sparsities; "
            "run: python run.py -m +experiment=ria_t10_local"
        )
    models = [m for m in dict.fromkeys(pts["model"]) if (per_method.get(m, pd.Series(dtype=int)) >= 2).any()]
    fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 4.6), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        sub = pts[pts["model"] == model]
        dense = sub[sub["metric"] == "dense"]
        keys = sorted(set(sub["key"]))
        for metric in sorted(set(sub["metric"]) - {"dense"}):
            u = sub[(sub["metric"] == metric) & (sub["pattern_kind"] == "unstructured")]
            u = pd.concat([dense.head(1), u]).sort_values("sparsity")
            if len(u) >= 2:
                ax.plot(100 * u["sparsity"], u["ppl"], marker="o", label=f"{metric} (unstructured)",
                        color=COLORS.get(metric))  # fmt: skip
            nm = sub[(sub["metric"] == metric) & (sub["pattern_kind"] == "nm") & (sub["shuffle"] == "none")]
            if not nm.empty:
                ax.scatter(100 * nm["sparsity"], nm["ppl"], marker="s", facecolors="none", s=45,
                           edgecolors=COLORS.get(metric, "0.3"), label=f"{metric} (N:M, no CP)")  # fmt: skip
        _log(ax, "y")
        ax.set_xlabel("sparsity (% of weights pruned)")
        ax.set_ylabel(f"perplexity (log; {', '.join(keys)})")
        ax.set_title(model, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("RIA Fig. 4a: perplexity vs sparsity (from run records)", fontsize=11)
    fig.tight_layout()
    return fig


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
