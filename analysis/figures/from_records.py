"""The figures of our results, drawn from the run records and the permutation bench: retained score
per permutation method, the E-Sparse ablation beside the paper's, RIA Fig. 4a (perplexity vs sparsity).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis import benches  # noqa: E402
from analysis import records as rec_io  # noqa: E402
from analysis.figures.plotting import COLORS, Inputs, NoData, log_axis  # noqa: E402
from analysis.tables.matching import NOT_RUN  # noqa: E402


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


def permutation_retained(inp: Inputs):
    """Retained score per permutation method: per matrix from the permutation bench (fraction of
    the unstructured bound vs seconds) and per whole model from run records (gain over no shuffle)."""
    bench_rows = []
    for r in benches.widest_timings((inp.permutation_bench or {}).get("rows", [])):
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
        log_axis(ax, "x")
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


def _sd(line: Any) -> float:
    """A table line's std over seeds as a number (NaN where it has none: one seed, or not run)."""
    try:
        return float(line.get("sd"))
    except (TypeError, ValueError):
        return math.nan


def esparse_ablation_bars(inp: Inputs):
    """E-Sparse ablation ("Fig. 4"): perplexity of norm → +entropy → +global → +local shuffle, the
    paper's LLaMA numbers beside ours (built by the table's spec, so the cells match the table)."""
    from analysis.tables import paper_tables

    df = paper_tables.get("esparse_ablation")(inp.records)
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
    ours = df[df["ours"] != NOT_RUN]
    if ours.empty:
        ax.text(0.5, 0.5, "ours: not run\n(python run.py -m +experiment=esparse_ablation_local)",
                ha="center", va="center", transform=ax.transAxes, fontsize=10, color="0.3")  # fmt: skip
        ax.set_yticks([])
    for model in dict.fromkeys(ours["ours_model"]):
        sub = ours[ours["ours_model"] == model]
        line = {s: sub[sub["row"] == s].iloc[0] for s in steps if (sub["row"] == s).any()}
        ys = [float(line[s]["ours"]) if s in line else np.nan for s in steps]
        # error bars: the std over calibration seeds where a step ran on two or more (none at n=1)
        err = [_sd(line[s]) if s in line else np.nan for s in steps]
        ns = [line[s].get("n") if s in line else None for s in steps]
        keys = ", ".join(sorted(set(sub["metric_key"])))
        ax.errorbar(x, ys, yerr=np.nan_to_num(err), marker="s", capsize=4, label=f"{model} [{keys}] (± std over seeds)")
        for xi, y, n in zip(x, ys, ns, strict=True):
            ax.annotate("not run" if math.isnan(y) else f"{y:.1f} (n={n})", (xi, 0 if math.isnan(y) else y),
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
        log_axis(ax, "y")
        ax.set_xlabel("sparsity (% of weights pruned)")
        ax.set_ylabel(f"perplexity (log; {', '.join(keys)})")
        ax.set_title(model, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("RIA Fig. 4a: perplexity vs sparsity (from run records)", fontsize=11)
    fig.tight_layout()
    return fig
