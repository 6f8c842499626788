"""E-Sparse's channel shuffle (E-Sparse §3.3): the global naive shuffle, then the local block shuffle."""

from __future__ import annotations

import torch
from torch import Tensor

from esparse.permutation.registry import register
from esparse.permutation.swaps import _by_column_key, _channel_major, _deal, _effective_block, _swap_search


@register("esparse_global")
def _esparse_global(score: Tensor, n: int, m: int) -> Tensor:
    """E-Sparse global naive shuffle: channels sorted by mean score (descending) dealt round-robin.

    Rank j goes to group j mod K (K = c/m), so the K strongest channels sit in K different groups.
    """
    return _deal(_by_column_key(score, mean=True), m, snake=False)


@register("esparse")
def _esparse(score: Tensor, n: int, m: int, block: int = 64, max_iters: int = 100, passes: int = 1) -> Tensor:
    """E-Sparse: global naive shuffle, then local block shuffle (greedy swaps inside channel blocks).

    ``block`` channels per block (default 64; the paper's value is lost). If ``block`` is not a
    multiple of m dividing c, the largest multiple of m that divides c and is <= ``block`` is used.
    After the round-robin deal, consecutive groups hold channels of nearly the same ranks, leaving a
    swap little to gain; since the order of groups does not change the retained score, a block is
    made of groups strided over the whole group range (every rank band present). ``passes`` > 1
    alternates strided and contiguous blocks so channels can leave their first block. ``max_iters``
    bounds the swap rounds per pass (each round applies a matching of improving swaps per block).
    """
    c = score.shape[1]
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
        raise ValueError(f"passes must be a positive int, got {passes!r}")
    perm = _deal(_by_column_key(score, mean=True), m, snake=False)
    b = _effective_block(c, m, block)
    if b == m:  # one group per block: nothing to swap
        return perm
    num_groups, per_block = c // m, b // m
    st = _channel_major(score)
    strided = torch.arange(num_groups).view(per_block, -1).T.reshape(-1)
    for ps in range(passes):
        order = (strided if ps % 2 == 0 else torch.arange(num_groups)).to(perm.device)
        found, _ = _swap_search(st, perm.view(num_groups, m)[order].reshape(-1), n, m, b, max_iters, True)
        perm = torch.empty_like(perm)
        perm.view(num_groups, m)[order] = found.view(num_groups, m)
    return perm
