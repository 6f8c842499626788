"""SparseGPT (Frantar & Alistarh, 2023): OBS pruning with error feedback, and `+rec` (RIA appendix D).

The layer-wise problem is min ‖WX − ŴX‖² with H = 2XXᵀ. Columns are processed left to right; when a
weight is zeroed its error is pushed onto the not-yet-processed columns of its row through the upper
Cholesky factor U of H⁻¹ (so row i of U / U_ii is the OBS update direction given that earlier columns
are frozen). Inside a block of ``blocksize`` columns the updates are applied eagerly; beyond the block
they are batched into one matmul per block (the "lazy batch" trick), which is mathematically identical.

Selection uses the saliency w² / U_jj² of the *already updated* weights: every m columns for N:M, once
per block for unstructured. With a given keep-mask (``+rec``), selection is skipped and only the kept
weights are reconstructed. With a ``quantize`` hook each kept weight is replaced by its quantized
value instead of being kept as it is: that is GPTQ (``esparse/quant.py``), SparseGPT's solver without
mask selection.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from esparse.finite import all_finite
from esparse.masks import LOW_INDEX, Pattern, TieBreak, count_to_prune, nm_mask, prune_lowest_mask

__all__ = ["sparsegpt_prune", "inverse_hessian_factor", "DEFAULT_BLOCKSIZE", "DEFAULT_PERCDAMP"]

#: library defaults for a caller without a config (a run reads ``reconstruction.*``; both equal
#: conf/config.yaml, see :func:`esparse.scores.library_defaults`)
DEFAULT_BLOCKSIZE = 128
DEFAULT_PERCDAMP = 0.01


def _work_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float32 as the reference code; float64 when the caller already works in it."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def inverse_hessian_factor(
    hessian: torch.Tensor, percdamp: float = DEFAULT_PERCDAMP, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Upper Cholesky factor U of (H + damp·I)⁻¹ (U ᵀU = H⁻¹) and the dead-input mask (diag H == 0).

    Dead inputs never fire on the calibration data: their H_ii is set to 1 so H stays invertible
    (their weights are zeroed by the caller). ``damp = percdamp · mean(diag H)`` as in SparseGPT.
    """
    if hessian.dim() != 2 or hessian.shape[0] != hessian.shape[1]:
        raise ValueError(f"hessian must be square (c, c), got shape {tuple(hessian.shape)}")
    if percdamp < 0:
        raise ValueError(f"percdamp must be >= 0, got {percdamp!r}")
    h = hessian.detach().to(dtype).clone()
    if not all_finite(h):
        raise ValueError("hessian contains NaN/Inf")
    diag = h.diagonal()
    dead = diag == 0
    diag[dead] = 1.0
    diag += percdamp * diag.mean()
    lower, info = torch.linalg.cholesky_ex(h)
    if int(info) == 0:
        inv = torch.cholesky_inverse(lower)
        upper, info = torch.linalg.cholesky_ex(inv, upper=True)
    if int(info) != 0:
        raise ValueError(
            f"Cholesky of the Hessian failed (leading minor {int(info)} not positive definite) even "
            f"after dampening percdamp={percdamp}; raise percdamp or use more calibration samples"
        )
    return upper, dead


def sparsegpt_prune(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    pattern: Pattern | str | Mapping,
    blocksize: int = DEFAULT_BLOCKSIZE,
    percdamp: float = DEFAULT_PERCDAMP,
    mask: torch.Tensor | None = None,
    tie: TieBreak = LOW_INDEX,
    quantize: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prune ``weight`` (out × in) to ``pattern`` with OBS updates; return (new weight, keep-mask).

    ``mask`` (keep = True) fixes the pattern from another score and only reconstructs the kept weights.
    For unstructured patterns each block prunes its share of the target so the totals are exact:
    ``scope="row"`` gives every row floor(s·c) zeros (comparable with Wanda), ``scope="layer"`` selects
    over all rows of the block as the reference implementation does. ``tie`` orders exactly equal
    saliencies (each column block draws its own stream under ``random``). ``quantize(col, ahead,
    keep_ahead)`` returns column ``col``'s quantized values from the updated weights of the columns
    ``col, col+1, ...`` up to the end of its block (and their keep-mask); its error flows on as a
    pruned weight's does.
    """
    p = Pattern.parse(pattern)
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D (out, in), got shape {tuple(weight.shape)}")
    rows, cols = weight.shape
    p.validate(in_features=cols)
    if tuple(hessian.shape) != (cols, cols):
        raise ValueError(f"hessian shape {tuple(hessian.shape)} does not match in_features={cols}")
    if isinstance(blocksize, bool) or not isinstance(blocksize, int) or blocksize < 1:
        raise ValueError(f"blocksize must be a positive int, got {blocksize!r}")
    if mask is not None:
        if mask.dtype != torch.bool or tuple(mask.shape) != (rows, cols):
            raise ValueError(
                f"mask must be a bool tensor of shape {(rows, cols)}, got {mask.dtype} {tuple(mask.shape)}"
            )
    elif p.kind == "dense" and quantize is None:
        return weight.detach().clone(), torch.ones(rows, cols, dtype=torch.bool, device=weight.device)
    elif p.kind == "nm" and blocksize % p.m:
        raise ValueError(f"blocksize={blocksize} must be a multiple of m={p.m} so groups stay aligned")

    dtype = _work_dtype(weight, hessian)
    dev = weight.device
    u, dead = inverse_hessian_factor(hessian.to(dev), percdamp, dtype)
    w = weight.detach().to(dtype).clone()
    w[:, dead] = 0
    keep = torch.ones(rows, cols, dtype=torch.bool, device=dev) if mask is None else mask.to(dev).clone()
    select = mask is None

    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        w1 = w[:, i1:i2].clone()
        q1 = torch.zeros_like(w1)
        err1 = torch.zeros_like(w1)
        u1 = u[i1:i2, i1:i2]
        d = u1.diagonal()
        if select and p.kind == "unstructured":
            total = (i2, i1) if p.scope == "row" else (rows * i2, rows * i1)
            k = count_to_prune(p.sparsity, total[0]) - count_to_prune(p.sparsity, total[1])
            keep[:, i1:i2] = prune_lowest_mask(w1.square() / d.square(), k, p.scope, tie.derive(i1))
        for i in range(i2 - i1):
            col = i1 + i
            if select and p.kind == "nm" and col % p.m == 0:
                sal = w1[:, i : i + p.m].square() / d[i : i + p.m].square()
                keep[:, col : col + p.m] = nm_mask(sal, p.n, p.m, tie.derive(col))
            wi = w1[:, i]
            qi = wi if quantize is None else quantize(col, w1[:, i:], keep[:, col:i2])
            qi = torch.where(keep[:, col], qi, torch.zeros_like(wi))
            q1[:, i] = qi
            e = (wi - qi) / d[i]
            w1[:, i:] -= e[:, None] * u1[i, i:][None, :]
            err1[:, i] = e
        w[:, i1:i2] = q1
        w[:, i2:] -= err1 @ u[i1:i2, i2:]

    if not all_finite(w):
        raise ValueError("SparseGPT produced non-finite weights; check the Hessian (percdamp too small?)")
    return w.to(weight.dtype), keep
