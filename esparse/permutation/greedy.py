"""Pool & Yu 2021's greedy channel swaps with random escapes: the slow quality reference."""

from __future__ import annotations

import torch
from torch import Tensor

from esparse.permutation.objective import retained_score
from esparse.permutation.registry import register
from esparse.permutation.swaps import _channel_major, _swap_search


@register("greedy")
def _greedy(
    score: Tensor,
    n: int,
    m: int,
    max_iters: int = 2000,
    escapes: int = 10,
    escape_swaps: int = 2,
    seed: int = 0,
) -> Tensor:
    """Pool & Yu 2021 greedy: best single swap over all channel pairs until stuck, then random escapes.

    The slow quality reference (O(c² r) per start). Starting from the identity, each escape applies
    ``escape_swaps`` random cross-group swaps to the best permutation so far and searches again;
    ``max_iters`` bounds the total number of swaps; ``seed`` makes the escapes reproducible.
    """
    c = score.shape[1]
    if c // m < 2:
        return torch.arange(c, device=score.device)
    st = _channel_major(score)
    gen = torch.Generator().manual_seed(seed)
    best = torch.arange(c, device=score.device)
    best_val = retained_score(score, n, m)
    perm, budget = best, max_iters
    for attempt in range(escapes + 1):
        perm, used = _swap_search(st, perm, n, m, c, budget, multi=False)
        budget -= used
        val = retained_score(score, n, m, perm)
        if val > best_val:
            best, best_val = perm, val
        if attempt == escapes or budget <= 0:
            break
        perm = best.clone()
        for _ in range(escape_swaps):
            i = int(torch.randint(c, (1,), generator=gen))
            other = (i // m + int(torch.randint(1, c // m, (1,), generator=gen))) % (c // m)
            j = other * m + int(torch.randint(m, (1,), generator=gen))
            perm[i], perm[j] = perm[j].clone(), perm[i].clone()
    return best
