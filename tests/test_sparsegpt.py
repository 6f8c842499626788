"""SparseGPT: hand cases, optimality of the OBS update, exact patterns, error vs mask-only scores."""

from __future__ import annotations

import math

import pytest
import torch

from esparse import scores
from esparse.masks import check_weights, make_mask
from esparse.sparsegpt import sparsegpt_prune
from esparse.stats import ChannelStats


def _err(w: torch.Tensor, w_hat: torch.Tensor, x: torch.Tensor) -> float:
    """‖WX − ŴX‖_F with X given as tokens × in."""
    return float(torch.linalg.norm((w.double() - w_hat.double()) @ x.double().T))


def _calibrated_layer(rows=64, cols=128, samples=4, tokens=128, seed=0):
    """Random layer and calibration inputs shaped like LLM activations: strongly correlated channels
    (low rank + noise) with very uneven per-channel scales."""
    g = torch.Generator().manual_seed(seed)
    rank = cols // 8
    z = torch.randn(samples, tokens, rank, generator=g)
    basis = torch.randn(rank, cols, generator=g) / math.sqrt(rank)
    noise = 0.3 * torch.randn(samples, tokens, cols, generator=g)
    x = (z @ basis + noise) * torch.exp(torch.randn(cols, generator=g))
    w = torch.randn(rows, cols, generator=g)
    st = ChannelStats(cols, entropy=False, hessian=True)
    st.update(x)
    st.finalize()
    return w, x.reshape(-1, cols), st


# -------------------------------------------------------------------------------------- hand cases
def test_hand_case_correlated_pair():
    # 1:2 on W = [1, 2], H = [[2, 1], [1, 2]], no damping.
    # H⁻¹ = [[2, -1], [-1, 2]] / 3; U (upper, UᵀU = H⁻¹): U00² = 2/3, U11² = 1/2.
    # saliency w²/U_jj² = (1/(2/3), 4/(1/2)) = (1.5, 8) -> prune column 0.
    # OBS update of column 1: w1 - w0 · H⁻¹_01 / H⁻¹_00 = 2 - 1 · (-1/3)/(2/3) = 2.5
    # (check: minimise Δ H Δᵀ with Δ0 = -1 -> H10·Δ0 + H11·Δ1 = 0 -> Δ1 = 0.5).
    w = torch.tensor([[1.0, 2.0]])
    h = torch.tensor([[2.0, 1.0], [1.0, 2.0]])
    new_w, keep = sparsegpt_prune(w, h, "1:2", blocksize=2, percdamp=0.0)
    assert keep.tolist() == [[False, True]]
    torch.testing.assert_close(new_w, torch.tensor([[0.0, 2.5]]))


def test_hand_case_diagonal_hessian_is_weighted_magnitude():
    # H diagonal -> U diagonal with U_jj² = 1/H_jj: no cross-updates, saliency = w² · H_jj.
    # W = [1, -2, 3, -4], H = diag(1, 4, 1, 1): saliency (1, 16, 9, 16) -> 2:4 prunes columns 0 and 2,
    # although magnitude alone would prune columns 0 and 1.
    w = torch.tensor([[1.0, -2.0, 3.0, -4.0]])
    h = torch.diag(torch.tensor([1.0, 4.0, 1.0, 1.0]))
    new_w, keep = sparsegpt_prune(w, h, "2:4", blocksize=4, percdamp=0.0)
    assert keep.tolist() == [[False, True, False, True]]
    assert new_w.tolist() == [[0.0, -2.0, 0.0, -4.0]]


def test_fixed_prefix_mask_matches_least_squares_optimum():
    # Pruning a prefix S of the columns with everything right of it free, the sequential OBS result is
    # the joint optimum: Ŵ_K = W_K + W_S H_SK H_KK⁻¹ (set the gradient of ΔHΔᵀ over Δ_K to zero).
    g = torch.Generator().manual_seed(4)
    f64 = torch.float64
    x = torch.randn(32, 8, generator=g, dtype=f64) @ torch.randn(8, 8, generator=g, dtype=f64)
    h = 2 * x.T @ x
    w = torch.randn(3, 8, generator=g, dtype=torch.float64)
    keep = torch.zeros(3, 8, dtype=torch.bool)
    keep[:, 4:] = True
    s, k = slice(0, 4), slice(4, 8)
    expected = torch.zeros_like(w)
    expected[:, k] = w[:, k] + torch.linalg.solve(h[k, k], (w[:, s] @ h[s, k]).T).T  # H symmetric
    for bs in (2, 4, 8):  # lazy updates across blocks must not change the result
        new_w, got_keep = sparsegpt_prune(w, h, "2:4", blocksize=bs, percdamp=0.0, mask=keep)
        assert torch.equal(got_keep, keep)
        torch.testing.assert_close(new_w, expected, rtol=1e-9, atol=1e-9)


# ----------------------------------------------------------------------------------- random layers
def test_2_4_beats_magnitude_and_wanda_and_is_exact():
    w, x, st = _calibrated_layer()
    new_w, keep = sparsegpt_prune(w, st.hessian, "2:4")
    rep = check_weights([("layer", new_w)], "2:4")
    assert rep.ok and rep.sparsity == 0.5
    assert bool(((~keep).reshape(64, 32, 4).sum(-1) == 2).all())
    assert bool((new_w[~keep] == 0).all())
    e_sgpt = _err(w, new_w, x)
    e_mag = _err(w, w * make_mask(scores.get("magnitude")(w, st), "2:4"), x)
    e_wanda = _err(w, w * make_mask(scores.get("wanda")(w, st), "2:4"), x)
    assert e_sgpt < e_wanda < e_mag
    assert e_sgpt < 0.8 * e_wanda  # the weight update is worth a clear margin, not noise


@pytest.mark.parametrize("spec", ["4:8", "1:4", "3:4"])
def test_other_nm_patterns_exact_and_better_than_wanda(spec):
    w, x, st = _calibrated_layer(rows=16, cols=64, seed=1)
    new_w, keep = sparsegpt_prune(w, st.hessian, spec)
    assert check_weights([("l", new_w)], spec).ok
    n, m = map(int, spec.split(":"))
    assert bool(((~keep).reshape(16, 64 // m, m).sum(-1) == n).all())
    e_wanda = _err(w, w * make_mask(scores.get("wanda")(w, st), spec), x)
    assert _err(w, new_w, x) < e_wanda


@pytest.mark.parametrize("scope", ["row", "layer"])
def test_unstructured_exact_counts_with_uneven_last_block(scope):
    w, _, st = _calibrated_layer(rows=16, cols=100, seed=2)
    pattern = {"name": "unstructured", "sparsity": 0.3, "scope": scope}
    # 100 columns = blocks of 32+32+32+4; per-block quotas telescope to the exact total:
    # row: floor(.3·32)=9, floor(.3·64)-9=10, floor(.3·96)-19=9, floor(.3·100)-28=2 -> 30 per row
    new_w, keep = sparsegpt_prune(w, st.hessian, pattern, blocksize=32)
    if scope == "row":
        assert (~keep).sum(1).tolist() == [30] * 16  # floor(0.3 · 100) per row
        assert (~keep[:, 96:]).sum(1).tolist() == [2] * 16
    else:
        assert int((~keep).sum()) == 480  # floor(0.3 · 1600)
    assert check_weights([("l", new_w)], pattern).ok


@pytest.mark.parametrize("scope", ["row", "layer"])
def test_unstructured_beats_wanda(scope):
    w, x, st = _calibrated_layer(rows=16, cols=256, seed=2)
    pattern = {"name": "unstructured", "sparsity": 0.5, "scope": scope}
    new_w, keep = sparsegpt_prune(w, st.hessian, pattern, blocksize=64)
    assert check_weights([("l", new_w)], pattern).ok
    e_wanda = _err(w, w * make_mask(scores.get("wanda")(w, st), pattern), x)
    assert _err(w, new_w, x) < e_wanda


def test_rec_keeps_given_mask_and_lowers_error():
    w, x, st = _calibrated_layer(seed=3)
    for metric in ("wanda", "magnitude"):
        keep = make_mask(scores.get(metric)(w, st), "2:4")
        new_w, got = sparsegpt_prune(w, st.hessian, "2:4", mask=keep)
        assert torch.equal(got, keep)
        assert bool((new_w[~keep] == 0).all())
        assert _err(w, new_w, x) < 0.9 * _err(w, w * keep, x)


def test_blocksize_does_not_change_the_result():
    w, _, st = _calibrated_layer(rows=8, cols=32, seed=5)
    h = st.hessian.double()
    ref_w, ref_keep = sparsegpt_prune(w.double(), h, "2:4", blocksize=32)
    for bs in (4, 8, 16):
        new_w, keep = sparsegpt_prune(w.double(), h, "2:4", blocksize=bs)
        assert torch.equal(keep, ref_keep)
        torch.testing.assert_close(new_w, ref_w, rtol=1e-10, atol=1e-10)


def test_dead_inputs_dtype_and_dense():
    w, x, _ = _calibrated_layer(rows=8, cols=16, seed=6)
    x = x.clone()
    x[:, 5] = 0.0  # input 5 never fires -> H_55 = 0
    h = 2 * x.T @ x / 4
    new_w, keep = sparsegpt_prune(w.to(torch.bfloat16), h, "2:4", blocksize=16)
    assert new_w.dtype == torch.bfloat16 and torch.isfinite(new_w.float()).all()
    assert bool((new_w[:, 5] == 0).all())
    assert check_weights([("l", new_w)], "2:4").ok
    same, all_keep = sparsegpt_prune(w, h, "dense")
    assert torch.equal(same, w) and bool(all_keep.all())


def test_errors():
    w = torch.randn(2, 8)
    with pytest.raises(ValueError, match=r"hessian shape \(4, 4\)"):
        sparsegpt_prune(w, torch.eye(4), "2:4")
    with pytest.raises(ValueError, match="blocksize=6"):
        sparsegpt_prune(w, torch.eye(8), "2:4", blocksize=6)
    with pytest.raises(ValueError, match="Cholesky.*percdamp=0.01"):
        sparsegpt_prune(w, -torch.eye(8), "2:4")
    with pytest.raises(ValueError, match="Cholesky"):
        sparsegpt_prune(w, torch.ones(8, 8), "2:4", percdamp=0.0)
    with pytest.raises(ValueError, match="mask must be a bool"):
        sparsegpt_prune(w, torch.eye(8), "2:4", mask=torch.ones(2, 8))
    with pytest.raises(ValueError, match="m=8"):
        sparsegpt_prune(torch.randn(2, 12), torch.eye(12), "4:8")
