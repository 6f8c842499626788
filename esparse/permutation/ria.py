"""RIA's channel permutation (RIA §4 and app. F): the heuristic channel allocation ``ria_cp``, then
linear sum assignment per in-group position ``ria_cp_lsa``."""

from __future__ import annotations

import math
from typing import Any

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from esparse.permutation.objective import _sorted_desc
from esparse.permutation.registry import register
from esparse.permutation.swaps import _REL_TOL, _by_column_key, _channel_major, _deal, _relu_gain

#: RIA's official code (``--fast``): contiguous communities in a fixed count by the linear's role
#: (the roles of :class:`esparse.models.adapters.Adapter`); ``shuffle.communities=official``
OFFICIAL_COMMUNITIES: dict[str, int] = {"attn_in": 4, "attn_out": 4, "mlp_in": 8, "mlp_out": 16}


@register("ria_cp")
def _ria_cp(score: Tensor, n: int, m: int) -> Tensor:
    """RIA heuristic channel allocation: channels by score column-sum, snake-dealt over the K groups."""
    return _deal(_by_column_key(score, mean=False), m, snake=True)


def official_communities(role: str | None) -> dict[str, Any]:
    """The ``_ria_cp_lsa`` options RIA's official code uses for a linear of ``role``: its fixed
    community count, contiguous chunks on every sweep."""
    if role not in OFFICIAL_COMMUNITIES:
        raise ValueError(
            f"communities='official' needs the linear's role, one of {sorted(OFFICIAL_COMMUNITIES)}; got {role!r}"
        )
    return {"communities": OFFICIAL_COMMUNITIES[role], "contiguous": True}


def _communities(num_groups: int, k: int, sweep: int, contiguous: bool = False) -> list[Tensor]:
    """Split the groups into k chunks, strided on even sweeps and contiguous on odd ones (always
    contiguous with ``contiguous=True``, as RIA's official code).

    Snake-dealt neighbours hold channels of nearly equal rank; strided chunks mix all rank bands
    (measured slightly better first), and alternating lets groups of different chunks trade.
    """
    ids = torch.arange(num_groups)
    if sweep % 2 == 0 and not contiguous:
        ids = torch.argsort(ids % k, stable=True)
    return [chunk for chunk in torch.tensor_split(ids, k) if chunk.numel() > 1]


def community_count(num_groups: int, community_size: int) -> int:
    """How many LSA communities of about ``community_size`` groups the groups split into (1..num_groups)."""
    return min(max(1, math.ceil(num_groups / community_size)), num_groups)


@register("ria_cp_lsa")
def _ria_cp_lsa(
    score: Tensor,
    n: int,
    m: int,
    communities: int | None = None,
    sweeps: int = 1,
    community_size: int = 64,
    contiguous: bool = False,
) -> Tensor:
    """RIA CP + linear sum assignment, per in-group position.

    Start from ``ria_cp``; for each position p in 0..m-1, the K channels sitting at position p are
    reassigned to the K groups by ``linear_sum_assignment(maximize=True)`` on the gain of each channel
    in each group (the group's other members fixed). The identity assignment is feasible, so each
    step can only improve; a community's assignment is kept only if its exact float64 gain is
    positive, so the result never retains less than ``ria_cp``. ``communities=k`` splits the groups
    into k chunks solved independently (RIA app. F.2; cost ∝ K²/k); ``None`` picks chunks of about
    ``community_size`` groups. ``sweeps`` repeats the pass over positions while it improves,
    alternating strided and contiguous chunks so that groups in different chunks can trade;
    ``contiguous=True`` keeps contiguous chunks throughout (RIA's code, :func:`official_communities`).
    """
    num_groups = score.shape[1] // m
    if communities is None:
        communities = community_count(num_groups, community_size)
    if communities == "official":
        raise ValueError("communities='official' is resolved by the linear's role: pass official_communities(role)")
    for key, val in (("communities", communities), ("sweeps", sweeps)):
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise ValueError(f"{key} must be a positive int, got {val!r}")
    perm = _deal(_by_column_key(score, mean=False), m, snake=True)
    return lsa_sweeps(_channel_major(score), perm, n, m, min(communities, num_groups), sweeps, contiguous)


def lsa_sweeps(st: Tensor, perm: Tensor, n: int, m: int, communities: int, sweeps: int, contiguous: bool) -> Tensor:
    """Improve ``perm`` in place by LSA per in-group position (``ria_cp_lsa`` after its deal).

    ``st`` is the (c, r) channel-major float32 score; ``communities`` <= the number of groups. Each
    position's reassignment is kept per community only if its exact float64 gain is positive, so the
    result never retains less than ``perm``. Returns ``perm``.
    """
    c, k = st.shape[0], m - n
    num_groups = c // m
    dev, r = st.device, st.shape[1]
    slots = perm.view(num_groups, m)
    groups = st.index_select(0, perm).view(num_groups, m, r)  # kept in sync with perm
    ids = torch.arange(num_groups, device=dev)
    mass = st.sum(-1, dtype=torch.float64)  # per channel: bounds the retained score it can carry
    # retained_score rows (float32) carry <= (k-1) ulps each and the float32 relu one more per row:
    # a gain must beat that to be kept
    tol = max(_REL_TOL, 4 * k * torch.finfo(torch.float32).eps)
    for sweep in range(sweeps):
        by_size: dict[int, list[Tensor]] = {}
        for ch in _communities(num_groups, communities, sweep, contiguous):
            by_size.setdefault(len(ch), []).append(ch.to(dev))
        batches = [torch.stack(chs) for chs in by_size.values()]  # (chunks, size) per chunk size
        chunk_of = torch.zeros(num_groups, dtype=torch.long, device=dev)  # community id of each group
        first = 0
        for bt in batches:
            chunk_of[bt] = torch.arange(first, first + len(bt), device=dev)[:, None]
            first += len(bt)
        gained = 0.0
        for p in range(m):
            cand = groups[:, p]
            thr = _sorted_desc([groups[:, q] for q in range(m) if q != p])[k - 1]  # k-th largest of the rest
            target = ids.clone()  # target[g]: new group of the channel now at (g, p)
            for bt in batches:
                flat = bt.view(-1)
                a, t = (v.index_select(0, flat).view(*bt.shape, r) for v in (cand, thr))
                gains = _relu_gain(a, t).cpu().numpy()  # (chunks, size, size)
                for ch, gain in zip(bt, gains, strict=True):
                    _, col = linear_sum_assignment(gain, maximize=True)
                    target[ch] = ch[torch.as_tensor(col, device=dev)]
            mv = (target != ids).nonzero().squeeze(1)
            if mv.numel() == 0:
                continue
            # gain per community with float64 sums: a group's retained is rest + relu(member - thr)
            dest = target[mv]
            a = cand[mv]
            delta = (a - thr[dest]).clamp_min_(0).sum(-1, dtype=torch.float64) - (a - thr[mv]).clamp_min_(0).sum(
                -1, dtype=torch.float64
            )
            per_chunk = torch.zeros(first, dtype=torch.float64, device=dev)
            per_chunk.index_add_(0, chunk_of[mv], delta)
            at_stake = torch.zeros_like(per_chunk).index_add_(
                0, chunk_of[mv], mass[slots[dest]].sum(-1) + mass[slots[mv, p]]
            )
            ok = per_chunk > tol * at_stake
            acc = ok[chunk_of[mv]]
            if not bool(acc.any()):
                continue
            gained += float(per_chunk[ok].sum())
            src, dest = mv[acc], dest[acc]
            slots[dest, p] = slots[src, p].clone()
            groups[dest, p] = cand[src]
        if gained <= _REL_TOL * float(mass.sum()):
            break
    return perm
