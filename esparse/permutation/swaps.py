"""Building blocks the searches share: dealing channels over groups, the relu-gain identity, and
the greedy swap search inside channel blocks (Pool & Yu 2021).

For a group with one member removed, let ``thr`` be the (m - n)-th largest score of the rest in a
row; inserting a channel with score x into that slot adds ``relu(x - thr)`` on top of the rest's
retained score. Summed over rows, ``sum_r relu(x_r - thr_r) = (|x - thr|_1 + sum x - sum thr) / 2``,
i.e. one ``torch.cdist(p=1)`` gives the gain of every (channel, slot) pair at once. The float32
estimates only *propose* moves; every move is re-checked with float64 accumulation and kept only if
it gains more than float32 rounding could fake.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from esparse.permutation.objective import _sorted_desc

# Float32 gain estimates below this fraction of a group's retained score are treated as noise.
_REL_TOL = 1e-6


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
