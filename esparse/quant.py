"""Weight quantization after (or before) pruning: RTN, GPTQ and AWQ as fake-quant (docs/quant.md).

RIA's appendix I (Table 12) prunes to 50 % and then quantizes with GPTQ or AWQ; "prune first,
quantize second" is the better order. Every method here returns *dequantized* weights (each one
``scale · (q − zero)`` on its group's grid), so the evaluation that follows is of the quantized model
in floating point ("fake-quant"). Each method can also return its :class:`Grid` (scale, zero, the group of
each column, AWQ's channel scale), from which ``save_format=nm`` stores integer codes that load back
to the same weights bit for bit (esparse/compressed.py).

The grid is asymmetric min-max with a zero point, GPTQ's default: per output row and per group of
``group_size`` consecutive input columns (``-1``: the whole row), ``scale = (max − min) / (2^bits − 1)``
over the group's kept weights with 0 always inside the range, so 0 is a grid point and a pruned
weight stays exactly 0. A kept weight may round to 0 (counted: ``quant/rounded_to_zero``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, replace
from typing import Any

import torch

from esparse.masks import Pattern, check_weights
from esparse.sparsegpt import DEFAULT_BLOCKSIZE, DEFAULT_PERCDAMP, _work_dtype, sparsegpt_prune

__all__ = [
    "NAMES", "OPTIONS", "Grid", "active", "apply", "awq", "awq_grid", "awq_scales", "check_options", "gptq",
    "gptq_grid", "needs", "rtn", "rtn_grid",
]  # fmt: skip

NAMES = ("none", "rtn", "gptq", "awq")
ORDERS = ("prune_first", "quantize_first")
BITS = (4, 8)
#: the keys of each method with their defaults (conf/quant/<name>.yaml, tested equal)
COMMON: dict[str, Any] = {"bits": 4, "group_size": 128, "order": "prune_first"}
OPTIONS: dict[str, dict[str, Any]] = {
    "rtn": dict(COMMON),
    "gptq": {**COMMON, "percdamp": DEFAULT_PERCDAMP, "blocksize": DEFAULT_BLOCKSIZE, "act_order": False},
    "awq": {**COMMON, "grid": 20},
}
#: how a record names what was evaluated
FORM = "fake-quant (dequantized weights)"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def active(section: Any) -> bool:
    """Whether a ``quant`` config section asks for any quantization."""
    return isinstance(section, Mapping) and section.get("name", "none") != "none"


def needs(name: str) -> frozenset[str]:
    """The calibration statistics a method reads: GPTQ and AWQ the Hessian, AWQ also the mean |x|."""
    return frozenset({"gptq": {"hessian"}, "awq": {"hessian", "absmean"}}.get(name, set()))


def check_options(section: Any, obs: bool = False) -> list[str]:
    """Every problem of a ``quant`` section, each naming its key (``[]`` when fine). ``obs``: the
    pruning updates the kept weights by OBS (``metric=sparsegpt`` or ``metric.reconstruct=true``),
    which would move quantized weights off their grid under ``order=quantize_first``."""
    if section is None:
        return []
    if not isinstance(section, Mapping):
        return [f"quant: {section!r} must be a config group (quant=none, rtn, gptq or awq)"]
    name = section.get("name", "none")
    if name not in NAMES:
        return [f"quant.name: {name!r} is not one of {list(NAMES)}"]
    if name == "none":
        return [f"quant.{k}: unknown key for quant=none" for k in section if k != "name"]
    known = OPTIONS[name]
    out = [f"quant.{k}: unknown key; known: {sorted(known)}" for k in section if k not in known and k != "name"]
    out += [f"quant.{k}: missing (conf/quant/{name}.yaml gives it)" for k in known if k not in section]
    bits, gs, order = section.get("bits", 4), section.get("group_size", -1), section.get("order", "prune_first")
    if not _is_int(bits) or bits not in BITS:
        out.append(f"quant.bits: {bits!r} must be 4 or 8")
    if not _is_int(gs) or (gs != -1 and gs < 1):
        out.append(f"quant.group_size: {gs!r} must be -1 (per output channel) or an integer >= 1")
    if order not in ORDERS:
        out.append(f"quant.order: {order!r} is not one of {list(ORDERS)}")
    elif order == "quantize_first" and obs:
        out.append(
            "quant.order: 'quantize_first' with an OBS update (metric=sparsegpt or metric.reconstruct=true) "
            "moves the quantized weights off their grid; use prune_first"
        )
    for k in ("blocksize", "grid"):
        if k in known and (not _is_int(section.get(k)) or section[k] < 1):
            out.append(f"quant.{k}: {section.get(k)!r} must be an integer >= 1")
    if "percdamp" in known:
        v = section.get("percdamp")
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
            out.append(f"quant.percdamp: {v!r} must be a finite number >= 0")
    if "act_order" in known and not isinstance(section.get("act_order"), bool):
        out.append(f"quant.act_order: {section.get('act_order')!r} must be true or false")
    return out


# ------------------------------------------------------------------------------------------- the grid
def _check(w: torch.Tensor, bits: int, group_size: int, mask: torch.Tensor | None) -> None:
    if w.dim() != 2:
        raise ValueError(f"weight must be 2-D (out, in), got shape {tuple(w.shape)}")
    if bits not in BITS:
        raise ValueError(f"bits must be 4 or 8, got {bits!r}")
    if not _is_int(group_size) or (group_size != -1 and group_size < 1):
        raise ValueError(f"group_size must be -1 or a positive int, got {group_size!r}")
    if mask is not None and (mask.dtype != torch.bool or mask.shape != w.shape):
        raise ValueError(f"mask must be a bool tensor of shape {tuple(w.shape)}, got {mask.dtype} {tuple(mask.shape)}")


def minmax_grid(w: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Asymmetric min-max ``(scale, zero)`` of each row of ``w`` (rows × k) → (rows, 1) each, with 0
    in the range (GPTQ's ``Quantizer.find_params``); an all-zero row gets [−1, 1] (scale > 0)."""
    maxq = 2**bits - 1
    lo = w.amin(dim=1, keepdim=True).clamp(max=0)
    hi = w.amax(dim=1, keepdim=True).clamp(min=0)
    flat = (lo == 0) & (hi == 0)
    lo, hi = torch.where(flat, -1.0, lo), torch.where(flat, 1.0, hi)
    scale = (hi - lo) / maxq
    return scale, torch.round(-lo / scale)


def fake_quant(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    """``scale · (clamp(round(w / scale) + zero, 0, 2^bits − 1) − zero)``: the dequantized value."""
    q = torch.clamp(torch.round(w / scale) + zero, 0, 2**bits - 1)
    return scale * (q - zero)


@dataclass(frozen=True)
class Grid:
    """The integer grid one weight was quantized on, kept so a checkpoint can store codes, not floats:
    ``w[r, c] = float32(scale[r, g] · (code − zero[r, g]) / col_scale[c])`` with ``g = group[c]``,
    computed in ``scale``'s dtype (no ``/ col_scale`` without AWQ). ``group`` maps every input column
    to its group (GPTQ's ``act_order`` and ``quantize_first`` under a permutation make them
    non-contiguous in the stored order)."""

    bits: int
    scale: torch.Tensor  # (rows, groups), the work dtype
    zero: torch.Tensor  # (rows, groups), integers 0 .. 2^bits − 1 in the work dtype
    group: torch.Tensor  # (cols,) int64
    col_scale: torch.Tensor | None = None  # (cols,) AWQ's s

    def columns(self, order: torch.Tensor) -> Grid:
        """The grid of ``w[:, order]`` (a permutation or its inverse)."""
        order = order.to(self.group.device)
        cs = None if self.col_scale is None else self.col_scale[order.to(self.col_scale.device)]
        return replace(self, group=self.group[order], col_scale=cs)

    def cpu(self) -> Grid:
        cs = None if self.col_scale is None else self.col_scale.cpu()
        return replace(self, scale=self.scale.cpu(), zero=self.zero.cpu(), group=self.group.cpu(), col_scale=cs)


def rtn(w: torch.Tensor, bits: int = 4, group_size: int = 128, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Round-to-nearest fake-quant of ``w`` (out × in) per row and group of ``group_size`` columns
    (``-1``: per row); with ``mask`` (keep = True) the grid spans the kept weights only and every
    pruned weight is exactly 0. Returns the dequantized weights in ``w``'s dtype."""
    return rtn_grid(w, bits, group_size, mask)[0]


def rtn_grid(
    w: torch.Tensor, bits: int = 4, group_size: int = 128, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, Grid]:
    """:func:`rtn` and its :class:`Grid`."""
    _check(w, bits, group_size, mask)
    rows, cols = w.shape
    x = w.detach().to(_work_dtype(w))
    if mask is not None:
        x = torch.where(mask, x, torch.zeros_like(x))
    gs = cols if group_size == -1 else min(group_size, cols)
    ngroups = -(-cols // gs)
    padded = torch.nn.functional.pad(x, (0, ngroups * gs - cols)).reshape(rows * ngroups, gs)  # 0 is in every range
    scale, zero = minmax_grid(padded, bits)
    out = fake_quant(padded, scale, zero, bits).reshape(rows, ngroups * gs)[:, :cols]
    if mask is not None:
        out = torch.where(mask, out, torch.zeros_like(out))
    group = torch.arange(cols, device=w.device) // gs
    return out.to(w.dtype), Grid(bits, scale.reshape(rows, ngroups), zero.reshape(rows, ngroups), group)


def output_error(delta: torch.Tensor, hessian: torch.Tensor) -> float:
    """``tr(ΔW H ΔWᵀ)``: the layer's squared output error over the calibration inputs (H ∝ Σ x xᵀ)."""
    d = delta.to(_work_dtype(delta, hessian))
    return float(((d @ hessian.to(d)) * d).sum(dtype=torch.float64))


# ------------------------------------------------------------------------------------------------ GPTQ
def gptq(
    w: torch.Tensor,
    hessian: torch.Tensor,
    bits: int = 4,
    group_size: int = 128,
    mask: torch.Tensor | None = None,
    percdamp: float = DEFAULT_PERCDAMP,
    blocksize: int = DEFAULT_BLOCKSIZE,
    act_order: bool = False,
) -> torch.Tensor:
    """:func:`gptq_grid` without its grid."""
    return gptq_grid(w, hessian, bits, group_size, mask, percdamp, blocksize, act_order)[0]


def gptq_grid(
    w: torch.Tensor,
    hessian: torch.Tensor,
    bits: int = 4,
    group_size: int = 128,
    mask: torch.Tensor | None = None,
    percdamp: float = DEFAULT_PERCDAMP,
    blocksize: int = DEFAULT_BLOCKSIZE,
    act_order: bool = False,
) -> tuple[torch.Tensor, Grid]:
    """GPTQ (Frantar et al., 2023): quantize column by column, pushing each column's error onto the
    later columns of its row through the Cholesky factor of H⁻¹: SparseGPT's solver
    (:func:`esparse.sparsegpt.sparsegpt_prune`) with a fixed mask and a quantizer in place of the
    selection. A pruned weight (mask False) is set to 0, never quantized, and its error flows on to
    the kept weights like any other. Group grids are found when the solver reaches a group's first
    column, from the updated weights (GPTQ's ``groupsize``); per row (``-1``) from ``w`` up front.
    ``act_order`` visits columns by decreasing H_jj (groups then follow that order, as GPTQ's
    ``desc_act``). ``blocksize`` is rounded up to a multiple of ``group_size`` so that a group lies in
    one block (the lazy batch is exact for any block size). Returns the weights and their :class:`Grid`."""
    _check(w, bits, group_size, mask)
    rows, cols = w.shape
    keep = torch.ones(rows, cols, dtype=torch.bool, device=w.device) if mask is None else mask.to(w.device)
    perm = None
    if act_order:
        perm = torch.argsort(torch.diagonal(hessian).to(w.device), descending=True, stable=True)
        w, hessian, keep = w[:, perm], hessian[perm][:, perm], keep[:, perm]
    gs = cols if group_size == -1 else min(group_size, cols)
    if group_size != -1:
        blocksize = -(-blocksize // gs) * gs
    state: dict[str, torch.Tensor] = {}
    grids: list[tuple[torch.Tensor, torch.Tensor]] = []  # each group's (scale, zero) as the solver reaches it
    if group_size == -1:
        state["scale"], state["zero"] = minmax_grid(torch.where(keep, w.to(_work_dtype(w, hessian)), 0.0), bits)
        grids.append((state["scale"], state["zero"]))

    def quantize(col: int, ahead: torch.Tensor, keep_ahead: torch.Tensor) -> torch.Tensor:
        if group_size != -1 and col % gs == 0:
            state["scale"], state["zero"] = minmax_grid(torch.where(keep_ahead[:, :gs], ahead[:, :gs], 0.0), bits)
            grids.append((state["scale"], state["zero"]))
        return fake_quant(ahead[:, 0], state["scale"][:, 0], state["zero"][:, 0], bits)

    out, _ = sparsegpt_prune(w, hessian, "dense", blocksize=blocksize, percdamp=percdamp, mask=keep, quantize=quantize)
    scale, zero = (torch.cat(t, dim=1) for t in zip(*grids, strict=True))
    grid = Grid(bits, scale, zero, torch.arange(cols, device=w.device) // gs)
    if perm is None:
        return out, grid
    inv = torch.argsort(perm)
    return out[:, inv], grid.columns(inv)


# ------------------------------------------------------------------------------------------------- AWQ
def awq_scales(
    w: torch.Tensor,
    x_absmean: torch.Tensor,
    hessian: torch.Tensor,
    bits: int = 4,
    group_size: int = 128,
    grid: int = 20,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, float]:
    """AWQ's scale search (Lin et al., 2024): per input channel ``s = mean|x|^a`` (normalised by
    sqrt(max·min), as AWQ's ``auto_scale``) for ``a`` in ``0, 1/grid, ..., (grid−1)/grid``; the one
    whose ``Q(W·diag(s))·diag(s)⁻¹`` has the least output error ``tr(ΔW H ΔWᵀ)`` wins. AWQ measures
    that error on stored activations; H = Σ x xᵀ gives the same quantity with no activation kept.
    ``a = 0`` (s = 1) is plain RTN, so the result is never worse than RTN. Returns ``(s, a)``."""
    _check(w, bits, group_size, mask)
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
        raise ValueError(f"grid must be a positive int, got {grid!r}")
    dtype = _work_dtype(w, hessian)
    x = w.detach().to(dtype)
    base = x_absmean.detach().to(device=x.device, dtype=dtype)
    best: tuple[float, torch.Tensor, float] | None = None
    for k in range(grid):
        a = k / grid
        s = base.pow(a).clamp(min=1e-4)
        s = s / (s.max() * s.min()).sqrt()
        err = output_error(rtn(x * s, bits, group_size, mask) / s - x, hessian)
        if best is None or err < best[0]:
            best = (err, s, a)
    assert best is not None
    return best[1], best[2]


def awq(
    w: torch.Tensor,
    x_absmean: torch.Tensor,
    hessian: torch.Tensor,
    bits: int = 4,
    group_size: int = 128,
    grid: int = 20,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``Q(W·diag(s))·diag(s)⁻¹`` with the scale of :func:`awq_scales`, in ``w``'s dtype; a pruned
    weight is 0 (Q keeps 0, and 0 / s = 0)."""
    return awq_grid(w, x_absmean, hessian, bits, group_size, grid, mask)[0]


def awq_grid(
    w: torch.Tensor,
    x_absmean: torch.Tensor,
    hessian: torch.Tensor,
    bits: int = 4,
    group_size: int = 128,
    grid: int = 20,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Grid]:
    """:func:`awq` and its :class:`Grid` (the grid of ``W·diag(s)``, with ``s`` as ``col_scale``)."""
    s, _ = awq_scales(w, x_absmean, hessian, bits, group_size, grid, mask)
    x = w.detach().to(s.dtype)
    q, g = rtn_grid(x * s, bits, group_size, mask)
    return (q / s).to(w.dtype), replace(g, col_scale=s)


# --------------------------------------------------------------------------------- the pruning loop's call
def _rtn(w, mask, hessian, absmean, o):
    return rtn_grid(w, int(o["bits"]), int(o["group_size"]), mask)


def _gptq(w, mask, hessian, absmean, o):
    bits, gs, bs = int(o["bits"]), int(o["group_size"]), int(o["blocksize"])
    return gptq_grid(w, hessian, bits, gs, mask, float(o["percdamp"]), bs, bool(o["act_order"]))


def _awq(w, mask, hessian, absmean, o):
    return awq_grid(w, absmean, hessian, int(o["bits"]), int(o["group_size"]), int(o["grid"]), mask)


#: each method's call, keyed by its config name (``quant.name``): the weights and their grid
METHODS: dict[str, Callable[..., tuple[torch.Tensor, Grid]]] = {"rtn": _rtn, "gptq": _gptq, "awq": _awq}


def apply(
    name: str,
    weight: torch.Tensor,
    mask: torch.Tensor | None,
    stats: Any,
    perm: torch.Tensor | None,
    options: Mapping[str, Any],
    pattern: Pattern | None = None,
    hessian: torch.Tensor | None = None,
    label: str = "weight",
    grids: MutableMapping[str, Grid] | None = None,
) -> tuple[torch.Tensor, int]:
    """One linear quantized by method ``name``: ``weight`` and ``mask`` in the (possibly permuted)
    order the mask was made in, the statistics permuted alike (``hessian`` when the caller has it
    already). Returns the weights in ``weight``'s dtype and how many nonzero kept weights became 0.
    Every pruned weight stays 0 and ``pattern`` is checked again (a violation raises). ``grids``
    receives ``label``'s :class:`Grid` in the linear's own column order (on the CPU), for
    ``save_format=nm``."""
    opts = {**OPTIONS[name], **options}
    need = needs(name)
    if need and stats is None:
        raise ValueError(f"{label}: quant={name} needs the calibration statistics {sorted(need)}")
    if "hessian" in need and hessian is None:
        hessian = stats.hessian if perm is None else stats.hessian[perm][:, perm]
    absmean = None
    if "absmean" in need:
        absmean = stats.absmean if perm is None else stats.absmean[perm.to(stats.absmean.device)]
    hessian = hessian.to(weight.device) if hessian is not None else None
    absmean = absmean.to(weight.device) if absmean is not None else None
    q, grid = METHODS[name](weight.detach().float(), mask, hessian, absmean, opts)
    q = q.to(weight.dtype)
    if grids is not None:
        grids[label] = (grid if perm is None else grid.columns(torch.argsort(perm))).cpu()
    if mask is not None and bool((q[~mask] != 0).any()):
        raise RuntimeError(f"{label}: quant={name} turned pruned weights nonzero (a bug)")
    if pattern is not None:
        check_weights([(label, q)], pattern).raise_if_bad()
    kept = mask if mask is not None else torch.ones_like(q, dtype=torch.bool)
    return q, int(((q == 0) & (weight != 0) & kept).sum())


def record_details(section: Mapping[str, Any], report: Mapping[str, float]) -> dict[str, Any]:
    """``details.quant`` of a record: what was quantized how, and that the evaluation is fake-quant."""
    keys = ("name", "bits", "group_size", "order")
    return {**{k: section.get(k) for k in keys}, "form": FORM, "rounded_to_zero": int(report["rounded_to_zero"])}
