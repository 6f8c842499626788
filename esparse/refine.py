"""Mask refinement after the score's mask: DSnoT (Zhang et al., ICLR 2024, "Dynamic Sparse No
Training"), training-free regrow-and-prune swaps per output row (docs/refine.md).

Row i of a linear with its mask has the expected reconstruction error
``e_i = Σ_{j pruned} W_ij · μ_j`` (μ: the per-channel input mean, in DSnoT's per-sample scale).
Each cycle, every row still active regrows the pruned weight that best reduces ``|e_i|`` (by
``W_ij μ_j / var_j^p``: the largest for ``e_i > 0``, the smallest for ``e_i < 0``) and prunes one
kept weight: for N:M the kept weight of the smallest base score in the regrown weight's group of m
(so every group keeps its count); unstructured, the kept weight of the smallest base score whose
``W_ij μ_j`` has the sign opposite to ``e_i``. A row stops for good when ``|e_i| <=
update_threshold``, when the swap would flip the sign of ``e_i`` (``same_sign``), or when it has no
candidate left; every row stops after ``max_cycle_time`` cycles. Each weight changes at most once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from esparse.masks import Pattern

__all__ = ["OPTIONS", "check_options", "dsnot", "refine_mask", "skipped"]

#: the refine group's options with the official code's defaults (conf/refine/dsnot.yaml, tested equal)
OPTIONS: dict[str, Any] = {
    "max_cycle_time": 50,
    "update_threshold": 0.1,
    "pow_of_var_regrowing": 1.0,
    "without_same_sign": True,
    "skip_layer": "mlp",
    "skip_sub_layer": "no_skip",
}
NAMES = ("none", "dsnot")
SKIP_LAYERS = ("no_skip", "mlp", "self_attn")


def check_options(section: Any, metric: str | None = None) -> list[str]:
    """Every problem of a ``refine`` section, each naming its key (``[]`` when fine)."""
    if section is None:
        return []
    if not isinstance(section, Mapping):
        return [f"refine: {section!r} must be a config group (refine=none or refine=dsnot)"]
    name = section.get("name", "none")
    if name not in NAMES:
        return [f"refine.name: {name!r} is not one of {list(NAMES)}"]
    if name == "none":
        return [f"refine.{k}: unknown key for refine=none" for k in section if k != "name"]
    out = [f"refine.{k}: unknown key; known: {sorted(OPTIONS)}" for k in section if k not in OPTIONS and k != "name"]
    out += [f"refine.{k}: missing (conf/refine/dsnot.yaml gives it)" for k in OPTIONS if k not in section]
    v = section.get("max_cycle_time", 0)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        out.append(f"refine.max_cycle_time: {v!r} must be an integer >= 0")
    for k in ("update_threshold", "pow_of_var_regrowing"):
        v = section.get(k, 0.0)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
            out.append(f"refine.{k}: {v!r} must be a finite number >= 0")
    if not isinstance(section.get("without_same_sign", True), bool):
        out.append(f"refine.without_same_sign: {section.get('without_same_sign')!r} must be true or false")
    if section.get("skip_layer", "mlp") not in SKIP_LAYERS:
        out.append(f"refine.skip_layer: {section.get('skip_layer')!r} is not one of {list(SKIP_LAYERS)}")
    if not isinstance(section.get("skip_sub_layer", "no_skip"), str):
        out.append(f"refine.skip_sub_layer: {section.get('skip_sub_layer')!r} must be a linear's name or no_skip")
    if metric == "sparsegpt":
        out.append(
            "refine.name: 'dsnot' cannot refine metric=sparsegpt (OBS selects the mask and updates the "
            "weights as it goes); refine another score's mask, with metric.reconstruct=true for the OBS update"
        )
    return out


def skipped(path: str, skip_layer: str = "mlp", skip_sub_layer: str = "no_skip") -> bool:
    """Whether a linear (its path in the block, ``self_attn.q_proj``, ``mlp.down_proj``, ``fc1``) is
    left as the score's mask: ``skip_layer=mlp`` skips every linear outside ``self_attn`` (LLaMA's
    ``mlp.*``, OPT's ``fc1``/``fc2``), ``self_attn`` the attention ones; ``skip_sub_layer`` one linear
    by its last name (``down_proj``)."""
    attn = path.split(".")[0] == "self_attn"
    if (skip_layer == "mlp" and not attn) or (skip_layer == "self_attn" and attn):
        return True
    return path.split(".")[-1] == skip_sub_layer


def _ragged_order(key: torch.Tensor, valid: torch.Tensor, descending: bool = False):
    """Per row, the columns of ``valid`` entries sorted by ``key`` (stable), first; and their count."""
    order = torch.sort(key, dim=1, stable=True, descending=descending).indices
    first = torch.sort((~valid.gather(1, order)).to(torch.uint8), dim=1, stable=True).indices
    return order.gather(1, first), valid.sum(1)


def dsnot(
    weight: torch.Tensor,
    keep_mask: torch.Tensor,
    mean: torch.Tensor,
    var: torch.Tensor,
    base_score: torch.Tensor,
    pattern: Pattern | str | Mapping,
    max_cycle_time: int = 50,
    update_threshold: float = 0.1,
    pow_of_var_regrowing: float = 1.0,
    same_sign: bool = True,
) -> torch.Tensor:
    """The DSnoT-refined keep mask (True = keep) of ``weight`` (rows × c) from ``keep_mask``.

    ``mean``/``var`` (c,) are the input channels' mean and variance, ``base_score`` (rows × c) the
    score that chose ``keep_mask`` (higher = keep). Vectorised over rows; deterministic. The count of
    kept weights per row (N:M: per group of m) is unchanged; each swap turns one pruned weight on and
    one kept weight off, so the number of swaps is ``(new & ~keep_mask).sum()``.
    """
    p = Pattern.parse(pattern)
    keep0 = keep_mask.bool()
    rows, c = weight.shape
    if p.kind not in ("nm", "unstructured") or max_cycle_time <= 0 or rows == 0:
        return keep0.clone()
    dev = weight.device
    d = weight.float() * mean.float().to(dev)[None, :]  # each weight's contribution to e when pruned
    grow_key = d
    if pow_of_var_regrowing:
        floor = torch.finfo(torch.float32).tiny  # a constant channel: no 0/0
        grow_key = d / var.float().to(dev).clamp_min(floor).pow(pow_of_var_regrowing)[None, :]
    pruned0 = ~keep0
    e = torch.where(pruned0, d, 0.0).double().sum(1)
    sign0 = torch.sign(e)
    keep = keep0.clone()
    ar = torch.arange(rows, device=dev)

    grow, n_grow = _ragged_order(grow_key, pruned0)  # ascending: lo end for e < 0, hi end for e > 0
    lo = torch.zeros(rows, dtype=torch.long, device=dev)
    hi = n_grow - 1
    score = base_score.float().to(dev)
    if p.kind == "nm":
        # candidates to prune: kept by the score; one pruned by a swap leaves the set (+inf)
        cand = torch.where(keep0, score, torch.inf)
        in_group = torch.arange(p.m, device=dev)[None, :]
    else:
        neg, n_neg = _ragged_order(score, keep0 & (d < 0))  # prune one of these when e > 0
        pos, n_pos = _ragged_order(score, keep0 & (d > 0))  # ... of these when e < 0
        i_neg = torch.zeros(rows, dtype=torch.long, device=dev)
        i_pos = torch.zeros(rows, dtype=torch.long, device=dev)
    active = torch.ones(rows, dtype=torch.bool, device=dev)
    for _ in range(max_cycle_time):
        up = e > 0
        has = active & (lo <= hi)
        g = grow.gather(1, torch.where(up, hi, lo).clamp(0, c - 1)[:, None])[:, 0]
        if p.kind == "nm":
            cols = (g - g % p.m)[:, None] + in_group
            best = cand.gather(1, cols).min(1)
            pr = cols.gather(1, best.indices[:, None])[:, 0]
            partner = torch.isfinite(best.values)
        else:
            ptr, n = torch.where(up, i_neg, i_pos), torch.where(up, n_neg, n_pos)
            has = has & (ptr < n)
            src = torch.where(up[:, None], neg, pos)
            pr = src.gather(1, ptr.clamp(0, c - 1)[:, None])[:, 0]
            partner = has
        after = e + d[ar, pr].double() - d[ar, g].double()
        keeps_sign = torch.sign(after) == sign0 if same_sign else torch.ones_like(has)
        # N:M: a regrow whose group has no kept weight left to prune is passed over (no swap)
        active = has & (e.abs() > update_threshold) & (keeps_sign | ~partner)
        swap = active & partner
        if not bool(active.any()):
            break
        rs = ar[swap]
        keep[rs, g[swap]] = True
        keep[rs, pr[swap]] = False
        e = torch.where(swap, after, e)
        step = active.long()
        lo, hi = lo + torch.where(up, 0, step), hi - torch.where(up, step, 0)
        if p.kind == "nm":
            cand[rs, pr[swap]] = torch.inf
        else:
            i_neg, i_pos = i_neg + torch.where(up, step, 0), i_pos + torch.where(up, 0, step)
    return keep


def refine_mask(
    name: str,
    path: str,
    weight: torch.Tensor,
    mask: torch.Tensor,
    score: torch.Tensor,
    stats,
    perm: torch.Tensor | None,
    pattern: Pattern,
    options: Mapping[str, Any],
) -> torch.Tensor:
    """The pruning loop's call: ``weight``, ``mask`` and ``score`` in the (possibly permuted) order
    the mask was made in, the channel statistics permuted alike. DSnoT's input mean is per sample
    (Σ_tokens x / nsamples, as the official code's error), so ``update_threshold`` means what it
    does there."""
    opts = {**OPTIONS, **options}
    if skipped(path, opts["skip_layer"], opts["skip_sub_layer"]):
        return mask
    if stats is None:
        raise ValueError(f"{name}: refine=dsnot needs the calibration inputs' mean and variance")
    mean = stats.mean * (stats.ntokens / stats.nsamples)
    var = stats.var
    if perm is not None:
        mean, var = mean[perm.to(mean.device)], var[perm.to(var.device)]
    return dsnot(
        weight,
        mask,
        mean,
        var,
        score,
        pattern,
        max_cycle_time=int(opts["max_cycle_time"]),
        update_threshold=float(opts["update_threshold"]),
        pow_of_var_regrowing=float(opts["pow_of_var_regrowing"]),
        same_sign=pattern.kind == "nm" or not opts["without_same_sign"],
    )
