"""Pruning scores: higher = more important. Registry keyed by the config name (``metric.name``).

Every score is a pure function ``score(weight, stats, **kw) -> Tensor`` (float32, same shape and device
as ``weight``, out × in). ``stats`` is anything with the attributes named in the function's ``.needs``
(``norm`` and ``entropy`` of shape (in,), ``hessian`` of shape (in, in)), normally a finalized
:class:`esparse.stats.ChannelStats`. Formulas: docs/method.md §3.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch

from esparse.sparsegpt import inverse_hessian_factor

__all__ = ["ScoreFn", "register", "get", "names", "NEEDS"]

NEEDS = frozenset({"norm", "entropy", "hessian"})
ESPARSE_FORMS = ("alpha_entropy", "alpha_norm")


class ScoreFn(Protocol):
    needs: frozenset[str]

    def __call__(self, weight: torch.Tensor, stats: Any, **kw: Any) -> torch.Tensor: ...


_REGISTRY: dict[str, ScoreFn] = {}


def register(name: str, needs: frozenset[str] | set[str] | tuple[str, ...] = ()) -> Callable:
    """Decorator: register a score under ``name`` and tag it with the statistics it reads."""
    needs = frozenset(needs)
    if not needs <= NEEDS:
        raise ValueError(f"score {name!r}: unknown needs {sorted(needs - NEEDS)}; known: {sorted(NEEDS)}")

    def deco(fn: Callable) -> ScoreFn:
        if name in _REGISTRY:
            raise ValueError(f"score {name!r} is already registered")
        fn.needs = needs  # type: ignore[attr-defined]
        _REGISTRY[name] = fn  # type: ignore[assignment]
        return fn  # type: ignore[return-value]

    return deco


def get(name: str) -> ScoreFn:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown score {name!r}; known scores: {', '.join(names())}") from None


def names() -> list[str]:
    return sorted(_REGISTRY)


# --------------------------------------------------------------------------------------------- helpers
def _abs(weight: torch.Tensor) -> torch.Tensor:
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D (out, in), got shape {tuple(weight.shape)}")
    return weight.detach().abs().to(torch.float32)


def _channel(stats: Any, attr: str, weight: torch.Tensor) -> torch.Tensor:
    """(1, in) float32 row of a per-input-channel statistic, on the weight's device."""
    if stats is None:
        raise ValueError(f"this score needs stats.{attr}, got stats=None")
    v = torch.as_tensor(getattr(stats, attr)).detach().to(device=weight.device, dtype=torch.float32)
    if v.shape != (weight.shape[1],):
        raise ValueError(f"stats.{attr} has shape {tuple(v.shape)}, expected ({weight.shape[1]},)")
    return v.reshape(1, -1)


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den where den > 0, else 0 (a zero row/column sum means every |W| in it is 0)."""
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(num))


# ---------------------------------------------------------------------------------------------- scores
@register("magnitude")
def magnitude(weight: torch.Tensor, stats: Any = None) -> torch.Tensor:
    """|W_ij|."""
    return _abs(weight)


@register("wanda", needs={"norm"})
def wanda(weight: torch.Tensor, stats: Any) -> torch.Tensor:
    """|W_ij| · ‖X_j‖₂ (Sun et al., 2023)."""
    return _abs(weight) * _channel(stats, "norm", weight)


def _relative_importance(a: torch.Tensor) -> torch.Tensor:
    col_sum = a.sum(dim=0, keepdim=True)  # Σ_k |W_kj|: over output rows, one per input column j
    row_sum = a.sum(dim=1, keepdim=True)  # Σ_k |W_ik|: over inputs, one per output row i
    return _safe_div(a, col_sum) + _safe_div(a, row_sum)


@register("ri")
def ri(weight: torch.Tensor, stats: Any = None) -> torch.Tensor:
    """Relative importance |W_ij| / Σ_k|W_kj| + |W_ij| / Σ_k|W_ik| (Zhang et al., 2024, RIA)."""
    return _relative_importance(_abs(weight))


@register("ria", needs={"norm"})
def ria(weight: torch.Tensor, stats: Any, a: float = 0.5) -> torch.Tensor:
    """RI · ‖X_j‖₂^a, a = 0.5 in the paper."""
    return _relative_importance(_abs(weight)) * _channel(stats, "norm", weight).pow(a)


@register("esparse", needs={"norm", "entropy"})
def esparse(weight: torch.Tensor, stats: Any, alpha: float | str = 70.0, form: str = "alpha_entropy") -> torch.Tensor:
    """|W_ij| · (α·H_j + ‖X_j‖₂) (``alpha_entropy``) or |W_ij| · (H_j + α·‖X_j‖₂) (``alpha_norm``).

    The paper's α = 70 "keeps entropy and norm at the same magnitude"; entropy ≤ ln 100 ≈ 4.6 while
    norms reach hundreds, so the default scales the entropy (docs/method.md §3.2).
    That balance depends on the norm scale (which grows with sqrt(seqlen) under Wanda's convention,
    and differs per model and layer), so ``alpha="auto"`` applies the paper's stated intent per
    layer: α = mean‖X‖/mean H (alpha_entropy) or mean H/mean‖X‖ (alpha_norm), making both terms
    equal on average.
    """
    if form not in ESPARSE_FORMS:
        raise ValueError(f"unknown esparse form {form!r}; expected one of {ESPARSE_FORMS}")
    h = _channel(stats, "entropy", weight)
    nrm = _channel(stats, "norm", weight)
    if alpha == "auto":
        num, den = (nrm.mean(), h.mean()) if form == "alpha_entropy" else (h.mean(), nrm.mean())
        alpha = float(num / den) if float(den) > 0 else 1.0
    elif isinstance(alpha, (str, bool)):
        raise ValueError(f"metric.alpha={alpha!r} must be a number or 'auto'")
    factor = alpha * h + nrm if form == "alpha_entropy" else h + alpha * nrm
    return _abs(weight) * factor


@register("sparsegpt", needs={"hessian"})
def sparsegpt(weight: torch.Tensor, stats: Any, percdamp: float = 0.01) -> torch.Tensor:
    """SparseGPT's saliency w² / U_jj², U the upper Cholesky factor of (H + damp·I)⁻¹.

    This is the quantity SparseGPT ranks by, on the unmodified weights (no error feedback); the real
    method, with updates, is :func:`esparse.sparsegpt.sparsegpt_prune`. Dead inputs (H_jj = 0) score 0.
    """
    if stats is None:
        raise ValueError("this score needs stats.hessian, got stats=None")
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D (out, in), got shape {tuple(weight.shape)}")
    hess = torch.as_tensor(stats.hessian).detach().to(weight.device)
    if tuple(hess.shape) != (weight.shape[1], weight.shape[1]):
        raise ValueError(f"stats.hessian has shape {tuple(hess.shape)}, expected {(weight.shape[1],) * 2}")
    upper, dead = inverse_hessian_factor(hess, percdamp, torch.float32)
    w = weight.detach().to(torch.float32)
    score = w.square() / upper.diagonal().square().reshape(1, -1)
    score[:, dead] = 0.0
    return score
