"""The objective every permutation is judged by: the retained N:M score, and its input checks.

A permutation ``perm`` reorders the input columns (the permuted score is ``score[:, perm]``); what it
is worth is the retained score: over rows and groups of m consecutive permuted columns, the sum of the
(m - n) largest entries. It is computed here with a sorting network in float32 rows and a float64
sum, the one measure the searches and the registry's never-worse guard agree on.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from esparse.finite import all_finite


def _check(score: Tensor, n: int, m: int) -> None:
    if not isinstance(score, Tensor) or score.ndim != 2:
        got = tuple(score.shape) if isinstance(score, Tensor) else type(score).__name__
        raise ValueError(f"score must be a 2-D tensor (rows=outputs, cols=inputs), got {got}")
    if not score.is_floating_point():
        raise ValueError(f"score must be floating point, got dtype {score.dtype}")
    if score.numel() == 0:
        raise ValueError(f"score is empty: shape {tuple(score.shape)}")
    if isinstance(n, bool) or isinstance(m, bool) or not isinstance(n, int) or not isinstance(m, int):
        raise ValueError(f"n and m must be ints, got n={n!r}, m={m!r}")
    if not 1 <= n < m:
        raise ValueError(f"N:M needs 1 <= n < m, got n={n}, m={m}")
    c = score.shape[1]
    if c % m:
        raise ValueError(f"input channels c={c} are not a multiple of m={m}")
    if not all_finite(score):
        raise ValueError("score contains NaN or inf")


def _check_perm(perm: Tensor, c: int) -> Tensor:
    if not isinstance(perm, Tensor) or perm.ndim != 1 or perm.numel() != c:
        got = tuple(perm.shape) if isinstance(perm, Tensor) else type(perm).__name__
        raise ValueError(f"perm must be a 1-D tensor of length c={c}, got {got}")
    perm = perm.long()
    if perm.min() < 0 or perm.max() >= c or torch.bincount(perm, minlength=c).max() != 1:
        raise ValueError(f"perm is not a permutation of range({c})")
    return perm


@functools.cache
def _network(m: int) -> tuple[tuple[int, int], ...]:
    """Comparators (i < j) of Batcher's odd-even merge sort on m wires: 3 for m=3, 5 for m=4, 19 for m=8.

    For m not a power of two, the network of the next power of two minus every comparator touching a
    wire >= m: those wires would hold -inf at the bottom, where such comparators do nothing.
    """
    size = 1 << max(m - 1, 0).bit_length()
    pairs = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p) and i + j + k < m:
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return tuple(pairs)


def _sorted_desc(x: Tensor | list[Tensor], dim: int = 0) -> list[Tensor]:
    """The m slices of ``x`` along ``dim`` (or the m given tensors), sorted descending elementwise.

    A sorting network: ``torch.sort`` over a length-4 dimension is ~8x slower than a few max/min.
    """
    xs = list(x) if isinstance(x, list) else list(x.unbind(dim))
    for i, j in _network(len(xs)):
        xs[i], xs[j] = torch.maximum(xs[i], xs[j]), torch.minimum(xs[i], xs[j])
    return xs


def _group_retained(groups: Tensor, k: int, dim: int) -> Tensor:
    """Sum of the k largest entries along ``dim`` (the N:M group), elementwise elsewhere."""
    xs = _sorted_desc(groups, dim)
    return functools.reduce(torch.add, xs[1:k], xs[0])


def _retained_many(score: Tensor, n: int, m: int, perms: list[Tensor | None]) -> list[float]:
    """Retained score under each permutation (None: identity), sharing one channel-major copy.

    Channel-major (c, r) makes every network operand a contiguous slice: ~3x faster than the
    stride-m slices of the row-major layout, for the same float operations per (row, group).
    """
    if score.dtype in (torch.float16, torch.bfloat16):  # half rounding would swamp real differences
        score = score.float()
    st = score.T.contiguous()
    c, r = st.shape
    out = []
    for perm in perms:
        x = st if perm is None else st.index_select(0, perm)
        out.append(float(_group_retained(x.view(c // m, m, r), m - n, -2).sum(dtype=torch.float64)))
    return out


def retained_score(score: Tensor, n: int, m: int, perm: Tensor | None = None) -> float:
    """Sum over rows and groups of m consecutive (permuted) columns of the m - n largest scores (float64)."""
    _check(score, n, m)
    if perm is not None:
        perm = _check_perm(perm, score.shape[1]).to(score.device)
    return _retained_many(score, n, m, [perm])[0]


def upper_bound(score: Tensor, n: int, m: int) -> float:
    """Unstructured bound: the sum of the top (1 - n/m)·c scores in each row (no permutation beats it)."""
    _check(score, n, m)
    c = score.shape[1]
    keep = c - c // m * n
    return float(score.topk(keep, dim=1).values.sum(dtype=torch.float64))
