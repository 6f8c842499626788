"""Input-channel permutations for N:M sparsity (docs/method.md §5; RIA §4 and app. F; E-Sparse §3.3).

N:M zeroes n of every m consecutive input columns in each row, so *which* columns share a group decides
what survives. A permutation ``perm`` reorders the columns (the permuted score is ``score[:, perm]``);
its quality is the retained score: over rows and groups of m consecutive permuted columns, the sum of
the (m - n) largest entries. Every method here returns a ``perm`` that maximises it heuristically.

All methods share two exact identities, which make them vectorisable. For a group with one member
removed, let ``thr`` be the (m - n)-th largest score of the rest in a row; inserting a channel with
score x into that slot adds ``relu(x - thr)`` on top of the rest's retained score. Summed over rows,
``sum_r relu(x_r - thr_r) = (|x - thr|_1 + sum x - sum thr) / 2``, i.e. one ``torch.cdist(p=1)`` gives
the gain of every (channel, slot) pair at once. The float32 estimates only *propose* moves; every
move is re-checked with float64 accumulation and kept only if it gains more than float32 rounding
could fake, so the searches never lower the retained score that ``retained_score`` measures.

Methods are registered by config name (``shuffle=<name>``); ``get(name)(score, n, m, **kw)`` returns
a LongTensor permutation of ``range(c)``, never worse than the identity (see ``register``).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import Any

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

PermFn = Callable[..., Tensor]
_REGISTRY: dict[str, PermFn] = {}

# Float32 gain estimates below this fraction of a group's retained score are treated as noise.
_REL_TOL = 1e-6


# --------------------------------------------------------------------------- validation / registry


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
    # a finite total implies finite entries (NaN/inf propagate); only on overflow pay the full scan
    if not bool(torch.isfinite(score.sum())) and not bool(torch.isfinite(score).all()):
        raise ValueError("score contains NaN or inf")


def _check_perm(perm: Tensor, c: int) -> Tensor:
    if not isinstance(perm, Tensor) or perm.ndim != 1 or perm.numel() != c:
        got = tuple(perm.shape) if isinstance(perm, Tensor) else type(perm).__name__
        raise ValueError(f"perm must be a 1-D tensor of length c={c}, got {got}")
    perm = perm.long()
    if perm.min() < 0 or perm.max() >= c or torch.bincount(perm, minlength=c).max() != 1:
        raise ValueError(f"perm is not a permutation of range({c})")
    return perm


def register(name: str) -> Callable[[PermFn], PermFn]:
    """Register ``fn(score, n, m, **kw) -> perm`` under ``name``.

    The stored callable validates the inputs (ValueError naming the bad value), checks that ``fn``
    returned a bijection, and falls back to the identity when ``fn``'s permutation retains less than
    the identity: a permutation can only be worth deploying if it does not hurt, so no registered
    method ever returns a permutation worse than ``none``.
    """

    def deco(fn: PermFn) -> PermFn:
        if name in _REGISTRY:
            raise ValueError(f"permutation method {name!r} is already registered")

        @functools.wraps(fn)
        def guarded(score: Tensor, n: int, m: int, **kw: Any) -> Tensor:
            _check(score, n, m)
            c = score.shape[1]
            perm = _check_perm(fn(score, n, m, **kw), c).to(score.device)
            identity = torch.arange(c, device=score.device)
            if not torch.equal(perm, identity):
                after, before = _retained_many(score, n, m, [perm, None])
                if after < before:
                    return identity
            return perm

        _REGISTRY[name] = guarded
        return guarded

    return deco


def get(name: str) -> PermFn:
    """The permutation method registered as ``name``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown permutation method {name!r}; known: {', '.join(names())}")
    return _REGISTRY[name]


def names() -> list[str]:
    return sorted(_REGISTRY)


# --------------------------------------------------------------------------- objective


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


# --------------------------------------------------------------------------- building blocks


def _deal(order: Tensor, m: int, snake: bool) -> Tensor:
    """Deal channels ranked by ``order`` over K = c/m groups, one rank-round of K at a time.

    Round q hands ranks qK..qK+K-1 to groups 0..K-1 (snake: odd rounds to K-1..0), so channels with
    close ranks land in different groups. Slot g*m + q of the result holds group g's round-q channel.
    """
    rounds = order.view(m, -1).clone()
    if snake:
        rounds[1::2] = rounds[1::2].flip(-1)
    return rounds.T.reshape(-1)


def _by_column_key(score: Tensor, mean: bool) -> Tensor:
    key = score.float().mean(0) if mean else score.float().sum(0)
    return torch.sort(key, descending=True, stable=True).indices


def _relu_gain(x: Tensor, thr: Tensor) -> Tensor:
    """``out[..., i, j] = sum_r relu(x[..., i, r] - thr[..., j, r])`` via one L1 cdist (no r x i x j tensor)."""
    l1 = torch.cdist(x, thr, p=1)
    return (l1 + x.sum(-1).unsqueeze(-1) - thr.sum(-1).unsqueeze(-2)) * 0.5


def _leave_one_out(groups: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per group member, the slot threshold and the loss of removing it.

    ``groups``: (..., m, r) member scores (channel-major). Returns ``top`` (..., r), the group's
    retained per row; ``thr`` (..., m, r), the k-th largest score of the *other* members; ``loss``
    (..., m), the retained score lost (summed over rows) when the member leaves.
    """
    xs = _sorted_desc(groups, -2)
    top = functools.reduce(torch.add, xs[1:k], xs[0])
    kth, nxt = xs[k - 1], xs[k]
    # a kept member (>= kth) leaves its slot to the (k+1)-th and costs member - nxt; the others
    # (<= nxt) cost nothing and see kth as their threshold: thr = kth + nxt - clamp(member, nxt, kth).
    # Slice by slice into preallocated outputs (torch.where and >32 MB temporaries are slow on CPU).
    thr = torch.empty_like(groups)
    loss = groups.new_empty(groups.shape[:-1])
    for i, member in enumerate(groups.unbind(-2)):
        t = thr.select(-2, i)
        torch.clamp(member, nxt, kth, out=t)
        t.neg_().add_(kth).add_(nxt)
        torch.sum((member - nxt).clamp_min_(0), -1, out=loss.select(-1, i))
    return top, thr, loss


def _effective_block(c: int, m: int, block: int) -> int:
    """Largest multiple of m that divides c and is <= ``block`` (so blocks tile c exactly)."""
    if isinstance(block, bool) or not isinstance(block, int) or block < m:
        raise ValueError(f"block must be an int >= m={m}, got {block!r}")
    b = min(block, c) // m * m
    while c % b:
        b -= m
    return b


def _swap_search(
    st: Tensor, perm: Tensor, n: int, m: int, block: int, max_iters: int, multi: bool
) -> tuple[Tensor, int]:
    """Greedy channel swaps inside each block of ``block`` consecutive slots (Pool & Yu 2021).

    ``st`` is the (c, r) channel-major float32 score. Per block, the gain of every cross-group swap is
    ``R[i,j] + R[j,i] - loss_i - loss_j`` with ``R[i,j]`` the relu gain of channel i in slot j's place;
    all blocks are searched at once. ``multi`` applies, per iteration, a greedy matching of the best
    swap per group pair (disjoint group pairs have independent gains); otherwise only the single best
    swap (the classic greedy). A proposed swap is kept only if the two groups' retained score,
    recomputed as ``retained_score`` does (float32 rows, float64 sum), goes up by more than float32
    rounding could fake, so the search never loses; a block stops when it has nothing left to apply.
    Returns (perm, iterations used).
    """
    c, r = st.shape
    nb, g, k = c // block, block // m, m - n
    dev = st.device
    perm = perm.clone()
    slots = perm.view(nb, block)
    x = st.index_select(0, perm).view(nb, block, r)
    xg = x.view(nb, g, m, r)
    x_flat = x.view(-1, r)
    top, thr, loss = _leave_one_out(xg, k)
    total = top.sum(-1, dtype=torch.float64)  # (nb, g) retained per group
    thr, loss = thr.view(nb, block, r), loss.view(nb, block)
    thr_flat = thr.view(-1, r)
    gain_in = _relu_gain(x, thr)  # gain_in[b, i, j]: channel in slot i placed in slot j's group
    grp = torch.arange(block, device=dev) // m
    same_group = grp[:, None] == grp[None, :]
    offs = torch.arange(m, device=dev)
    # float32 rows carry <= (k-1) ulps (plus one from a float64 input): a kept gain must beat that
    exact_tol = max(_REL_TOL, 4 * k * torch.finfo(torch.float32).eps)
    live = torch.ones(nb, dtype=torch.bool, device=dev)
    its = 0
    while its < max_iters and bool(live.any()):
        its += 1
        blk = live.nonzero().squeeze(1)
        tol = _REL_TOL * total[blk].abs().mean(-1).float()
        gb_in = gain_in if len(blk) == nb else gain_in[blk]
        gain = gb_in + gb_in.transpose(1, 2) - loss[blk, :, None] - loss[blk, None, :]
        gain.masked_fill_(same_group, float("-inf"))
        pair = gain.view(-1, g, m, g, m).permute(0, 1, 3, 2, 4).reshape(-1, g, g, m * m)
        best, where = pair.max(-1)  # best swap for every group pair
        picks: list[tuple[Tensor, Tensor, Tensor]] = []
        for _ in range(g // 2 if multi else 1):
            val, idx = best.view(len(blk), -1).max(-1)
            ok = (val > tol).nonzero().squeeze(1)
            if ok.numel() == 0:
                break
            ga, gb = idx[ok] // g, idx[ok] % g
            w = where[ok, ga, gb]
            picks.append((ok, ga * m + w // m, gb * m + w % m))
            for side in (ga, gb):
                best[ok, side, :] = float("-inf")
                best[ok, :, side] = float("-inf")
        if not picks:
            live[blk] = False
            break
        b = blk[torch.cat([p[0] for p in picks])]
        si, sj = torch.cat([p[1] for p in picks]), torch.cat([p[2] for p in picks])
        # the two groups after the swap (flat slot ids, si and sj exchanged), and their exact retained
        ga, gb = si // m, sj // m
        ids = torch.stack([ga[:, None] * m + offs, gb[:, None] * m + offs], 1)  # (ns, 2, m) in-block slots
        rows = torch.arange(len(b), device=dev)
        ids[rows, 0, si % m], ids[rows, 1, sj % m] = sj, si
        src = (b[:, None, None] * block + ids).view(-1)
        new = x_flat.index_select(0, src).view(len(b), 2, m, r)
        n_top, n_thr, n_loss = _leave_one_out(new, k)
        n_total = n_top.sum(-1, dtype=torch.float64)  # (ns, 2)
        before = total[b, ga] + total[b, gb]
        keep = (n_total.sum(1) - before > exact_tol * before.abs()).nonzero().squeeze(1)
        moved = torch.zeros(nb, dtype=torch.bool, device=dev)
        moved[b[keep]] = True
        live[blk] &= moved[blk]
        if keep.numel() == 0:
            continue
        b, si, sj, ga, gb = b[keep], si[keep], sj[keep], ga[keep], gb[keep]
        slots[b, si], slots[b, sj] = slots[b, sj].clone(), slots[b, si].clone()
        gain_in[b, si], gain_in[b, sj] = gain_in[b, sj].clone(), gain_in[b, si].clone()
        if len(keep) < len(new):
            new, n_total, n_thr, n_loss = new[keep], n_total[keep], n_thr[keep], n_loss[keep]
        # write back the two changed groups of each swap: their slots, in slot order
        dst = (b[:, None, None] * block + torch.stack([ga[:, None] * m + offs, gb[:, None] * m + offs], 1)).view(-1)
        x_flat.index_copy_(0, dst, new.view(-1, r))
        thr_flat.index_copy_(0, dst, n_thr.view(-1, r))
        loss.view(-1).index_copy_(0, dst, n_loss.view(-1))
        total[b, ga], total[b, gb] = n_total[:, 0], n_total[:, 1]
        cb, cg = torch.cat([b, b]), torch.cat([ga, gb])  # the changed (block, group) pairs
        # refresh the gain columns of every slot in a changed group (padded to the busiest block)
        ub = moved.nonzero().squeeze(1)
        changed = torch.zeros(nb, g, dtype=torch.bool, device=dev)
        changed[cb, cg] = True
        col_changed = changed[ub].repeat_interleave(m, dim=1)  # (len(ub), block)
        width = int(col_changed.sum(1).max())
        cols = torch.sort(col_changed.to(torch.int8), dim=1, descending=True, stable=True).indices[:, :width]
        fresh = _relu_gain(x if len(ub) == nb else x[ub], thr[ub[:, None], cols])  # (len(ub), block, width)
        gain_in[ub[:, None, None], torch.arange(block, device=dev)[None, :, None], cols[:, None, :]] = fresh
    return perm, its


def _channel_major(score: Tensor) -> Tensor:
    return score.detach().to(torch.float32).T.contiguous()


# --------------------------------------------------------------------------- methods


@register("none")
def _none(score: Tensor, n: int, m: int) -> Tensor:
    """The identity: N:M groups are the original consecutive input channels."""
    return torch.arange(score.shape[1], device=score.device)


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


@register("ria_cp")
def _ria_cp(score: Tensor, n: int, m: int) -> Tensor:
    """RIA heuristic channel allocation: channels by score column-sum, snake-dealt over the K groups."""
    return _deal(_by_column_key(score, mean=False), m, snake=True)


def _communities(num_groups: int, k: int, sweep: int) -> list[Tensor]:
    """Split the groups into k chunks, strided on even sweeps and contiguous on odd ones.

    Snake-dealt neighbours hold channels of nearly equal rank; strided chunks mix all rank bands
    (measured slightly better first), and alternating lets groups of different chunks trade.
    """
    ids = torch.arange(num_groups)
    if sweep % 2 == 0:
        ids = torch.argsort(ids % k, stable=True)
    return [chunk for chunk in torch.tensor_split(ids, k) if chunk.numel() > 1]


@register("ria_cp_lsa")
def _ria_cp_lsa(
    score: Tensor, n: int, m: int, communities: int | None = None, sweeps: int = 1, community_size: int = 32
) -> Tensor:
    """RIA CP + linear sum assignment, per in-group position.

    Start from ``ria_cp``; for each position p in 0..m-1, the K channels sitting at position p are
    reassigned to the K groups by ``linear_sum_assignment(maximize=True)`` on the gain of each channel
    in each group (the group's other members fixed). The identity assignment is feasible, so each
    step can only improve; a community's assignment is kept only if its exact float64 gain is
    positive, so the result never retains less than ``ria_cp``. ``communities=k`` splits the groups
    into k chunks solved independently (RIA app. F.2; cost ∝ K²/k); ``None`` picks chunks of about
    ``community_size`` groups. ``sweeps`` repeats the pass over positions while it improves,
    alternating strided and contiguous chunks so that groups in different chunks can trade.
    """
    c, k = score.shape[1], m - n
    num_groups = c // m
    if communities is None:
        communities = max(1, math.ceil(num_groups / community_size))
    for key, val in (("communities", communities), ("sweeps", sweeps)):
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise ValueError(f"{key} must be a positive int, got {val!r}")
    communities = min(communities, num_groups)
    perm = _deal(_by_column_key(score, mean=False), m, snake=True)
    st = _channel_major(score)
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
        for ch in _communities(num_groups, communities, sweep):
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


# --------------------------------------------------------------------------- reporting


def permute_and_report(name: str, score: Tensor, n: int, m: int, **kw: Any) -> dict[str, Any]:
    """Run method ``name`` and report what it bought: perm, retained before/after, bound, seconds."""
    fn = get(name)
    t0 = time.perf_counter()
    perm = fn(score, n, m, **kw)
    seconds = time.perf_counter() - t0
    return {
        "perm": perm,
        "retained_before": retained_score(score, n, m),
        "retained_after": retained_score(score, n, m, perm),
        "upper_bound": upper_bound(score, n, m),
        "seconds": seconds,
    }
