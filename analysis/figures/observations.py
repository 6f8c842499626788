"""The observation figures: what the papers claim of a dense model's activations and of the masks,
drawn from ``results/observations/<model>.json`` (``python experiments/observations.py``, once).

E-Sparse Fig. 2 (channel norm, std and entropy: what its score adds to Wanda's) and RIA Fig. 5 / 6
(retained degree of input channels under N:M, channel permutation and Wanda vs RIA).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from analysis.figures.plotting import COLORS, MASK_LABELS, Inputs, NoData, log_axis, panel_grid


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


def _obs(inp: Inputs) -> dict[str, Any]:
    if not inp.observations:
        raise NoData(
            f"no observation file under {inp.results_dir / 'observations'}; run: python experiments/observations.py"
        )
    return inp.observations[0]


def _layer_title(layer: Mapping[str, Any]) -> str:
    return f"block {layer['block']} {layer['linear']} input (c = {layer['in_features']})"


def esparse_fig2_norm_std(inp: Inputs):
    """E-Sparse Fig. 2a/b: channels sorted by input norm; their RMS and their std over tokens.

    The norm is shown per token (RMS = ‖X_j‖₂ / √seqlen under Wanda's convention) so that RMS and std
    share one axis and unit: RMS² = mean² + std², so where std falls below RMS the channel has a mean."""
    obs = _obs(inp)
    layers = obs["layers"]
    seqlen = float(obs.get("calibration", {}).get("seqlen") or 1)
    fig, axes = panel_grid(len(layers))
    for ax, lay in zip(axes, layers, strict=False):
        ch = lay["channels"]
        norm, std = np.asarray(ch["norm"]), np.asarray(ch["std"])
        order = np.argsort(norm, kind="stable")
        x = np.arange(norm.size)
        ax.scatter(x, std[order], s=3, color="#dd8452", alpha=0.6, label="std over tokens")
        ax.plot(x, norm[order] / math.sqrt(seqlen), color="#4c72b0", lw=1.4, label="RMS over tokens (= norm / √seqlen)")
        log_axis(ax, "y")
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
    fig, axes = panel_grid(len(layers))
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
    fig, axes = panel_grid(len(layers))
    for ax, lay in zip(axes, layers, strict=False):
        ch = lay["channels"]
        norm, ent = np.asarray(ch["norm"]), np.asarray(ch["entropy"])
        ax.scatter(norm, ent, s=4, alpha=0.5, color="#55a868")
        log_axis(ax, "x")
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
    fig, axes = panel_grid(len(layers))
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
    fig, axes = panel_grid(len(layers))
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
