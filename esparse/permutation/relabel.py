"""LSA with relabelled positions (ours, beyond both papers): RIA's CP + LSA, then rounds of shuffling
which member of each group sits at which in-group position, and LSA again.

``ria_cp_lsa`` reassigns, one in-group position at a time, the channels at that position across
groups. After its snake deal, position p of every group holds a channel of the same rank band, so
LSA only ever trades channels of one band: each group keeps one channel per band. Position labels do
not change the retained score, so relabelling them at random costs nothing and lets the next LSA
trade channels of different bands. Each round is one more LSA pass (the same cost as
``ria_cp_lsa``), and, since every reassignment is kept only if it gains exactly, never loses.
"""

from __future__ import annotations

import torch
from torch import Tensor

from esparse.permutation.registry import get, register
from esparse.permutation.ria import community_count, lsa_sweeps
from esparse.permutation.swaps import _channel_major


def relabel(perm: Tensor, m: int, gen: torch.Generator) -> Tensor:
    """``perm`` with the members of every group of m consecutive slots in a random order (``gen``
    on the CPU): the same groups, so the same retained score, at other positions."""
    groups = perm.view(-1, m)
    order = torch.argsort(torch.rand(groups.shape, generator=gen), -1).to(perm.device)
    return torch.gather(groups, 1, order).reshape(-1)


@register("lsa_relabel")
def _lsa_relabel(score: Tensor, n: int, m: int, rounds: int = 4, seed: int = 0, community_size: int = 64) -> Tensor:
    """``ria_cp_lsa``, then ``rounds`` times: relabel the in-group positions (seeded by ``seed``) and
    run one LSA pass over the positions, in strided communities of about ``community_size`` groups."""
    for key, val, low in (("rounds", rounds, 1), ("seed", seed, 0), ("community_size", community_size, 1)):
        if isinstance(val, bool) or not isinstance(val, int) or val < low:
            raise ValueError(f"{key} must be an int >= {low}, got {val!r}")
    perm = get("ria_cp_lsa")(score, n, m, community_size=community_size)  # guarded: never below the identity
    communities = community_count(score.shape[1] // m, community_size)
    st = _channel_major(score)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(rounds):
        perm = lsa_sweeps(st, relabel(perm, m, gen), n, m, communities, 1, False)
    return perm
