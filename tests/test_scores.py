"""Scores against values derived by hand from the formulas of docs/method.md §3."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from esparse import scores

# |W| = [[1, 2, 3, 4], [0.5, 1, 1, 2]]
W = torch.tensor([[1.0, -2.0, 3.0, -4.0], [0.5, 1.0, -1.0, 2.0]])
NORM = torch.tensor([1.0, 2.0, 0.5, 4.0])
ENTROPY = torch.tensor([0.1, 0.2, 0.0, 1.0])
STATS = SimpleNamespace(norm=NORM, entropy=ENTROPY)


def close(got: torch.Tensor, expected: list[list[float]]) -> None:
    assert got.dtype == torch.float32 and got.shape == W.shape
    torch.testing.assert_close(got, torch.tensor(expected), rtol=1e-6, atol=1e-6)


def test_registry():
    assert scores.names() == ["act_norm", "esparse", "magnitude", "ri", "ria", "sparsegpt", "w_in", "w_out", "wanda"]
    assert scores.get("magnitude").needs == frozenset()
    assert scores.get("ri").needs == frozenset()
    assert scores.get("wanda").needs == frozenset({"norm"})
    assert scores.get("ria").needs == frozenset({"norm"})
    assert scores.get("esparse").needs == frozenset({"norm", "entropy"})
    assert scores.get("sparsegpt").needs == frozenset({"hessian"})
    with pytest.raises(ValueError, match="'nope'.*act_norm, esparse, magnitude"):
        scores.get("nope")
    with pytest.raises(ValueError, match="already registered"):
        scores.register("wanda")(lambda w, s: w)
    with pytest.raises(ValueError, match="unknown needs"):
        scores.register("x", needs={"gradient"})


def test_magnitude():
    close(scores.get("magnitude")(W, None), [[1, 2, 3, 4], [0.5, 1, 1, 2]])


def test_wanda():
    # |W| · norm_j, norm = (1, 2, 0.5, 4)
    close(scores.get("wanda")(W, STATS), [[1, 4, 1.5, 16], [0.5, 2, 0.5, 8]])


def test_ri():
    # column sums Σ_k|W_kj| = (1.5, 3, 4, 6); row sums Σ_k|W_ik| = (10, 4.5)
    # row 0: 1/1.5+1/10 = 23/30, 2/3+2/10 = 13/15, 3/4+3/10 = 21/20, 4/6+4/10 = 16/15
    # row 1: .5/1.5+.5/4.5 = 4/9, 1/3+1/4.5 = 5/9, 1/4+1/4.5 = 17/36, 2/6+2/4.5 = 7/9
    close(scores.get("ri")(W, None), [[23 / 30, 13 / 15, 21 / 20, 16 / 15], [4 / 9, 5 / 9, 17 / 36, 7 / 9]])


def test_ria():
    # ri · norm^0.5 with sqrt(norm) = (1, √2, √0.5, 2)
    r2, rh = math.sqrt(2.0), math.sqrt(0.5)
    close(
        scores.get("ria")(W, STATS),
        [[23 / 30, 13 / 15 * r2, 21 / 20 * rh, 32 / 15], [4 / 9, 5 / 9 * r2, 17 / 36 * rh, 14 / 9]],
    )
    # a = 1: ri · norm
    close(
        scores.get("ria")(W, STATS, a=1.0),
        [[23 / 30, 26 / 15, 21 / 40, 64 / 15], [4 / 9, 10 / 9, 17 / 72, 28 / 9]],
    )


def test_ri_zero_sums_do_not_give_nan():
    # column 1 and row 1 are all zero: those terms are 0, not NaN.
    # row 0 = [2, 0, 2]: col sums (2, 0, 3), row sum 4 -> 2/2+2/4 = 1.5, 0, 2/3+2/4 = 7/6
    # row 2 = [0, 0, 1]: col 2 sum 3, row sum 1 -> 1/3 + 1 = 4/3
    w = torch.tensor([[2.0, 0.0, 2.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    got = scores.get("ri")(w, None)
    torch.testing.assert_close(got, torch.tensor([[1.5, 0, 7 / 6], [0, 0, 0], [0, 0, 4 / 3]]))


def test_esparse_alpha_entropy():
    # α = 70 (the paper's constant): 70·H + norm = (7+1, 14+2, 0+0.5, 70+4) = (8, 16, 0.5, 74)
    close(scores.get("esparse")(W, STATS, alpha=70.0), [[8, 32, 1.5, 296], [4, 16, 0.5, 148]])
    # the library default is conf/metric/esparse.yaml's: alpha=auto, form=alpha_entropy
    torch.testing.assert_close(scores.get("esparse")(W, STATS), scores.get("esparse")(W, STATS, alpha="auto"))
    # α = 2: 2·H + norm = (1.2, 2.4, 0.5, 6)
    close(scores.get("esparse")(W, STATS, alpha=2.0), [[1.2, 4.8, 1.5, 24], [0.6, 2.4, 0.5, 12]])


def test_esparse_alpha_norm():
    # H + 70·norm = (70.1, 140.2, 35, 281)
    close(
        scores.get("esparse")(W, STATS, alpha=70.0, form="alpha_norm"),
        [[70.1, 280.4, 105, 1124], [35.05, 140.2, 35, 562]],
    )
    with pytest.raises(ValueError, match="'alpha_both'"):
        scores.get("esparse")(W, STATS, form="alpha_both")


def test_sparsegpt_saliency():
    # H = diag(1, 2, 4, 1) -> (H⁻¹)'s Cholesky factor has U_jj² = 1/H_jj, so saliency = w² · H_jj.
    # with percdamp = 0.01: damp = 0.01 · mean(1,2,4,1) = 0.02 -> H_jj + 0.02 = (1.02, 2.02, 4.02, 1.02)
    st = SimpleNamespace(hessian=torch.diag(torch.tensor([1.0, 2.0, 4.0, 1.0])))
    close(
        scores.get("sparsegpt")(W, st),
        [[1.02, 4 * 2.02, 9 * 4.02, 16 * 1.02], [0.25 * 1.02, 2.02, 4.02, 4 * 1.02]],
    )
    close(scores.get("sparsegpt")(W, st, percdamp=0.0), [[1, 8, 36, 16], [0.25, 2, 4, 4]])
    # a correlated 2×2 H = [[2, 1], [1, 2]], no damping: H⁻¹ = [[2, -1], [-1, 2]] / 3,
    # U upper with UᵀU = H⁻¹: U_00² = 2/3, U_11² = H⁻¹_11 - U_01² = 2/3 - (1/3)²/(2/3) = 1/2
    st2 = SimpleNamespace(hessian=torch.tensor([[2.0, 1.0], [1.0, 2.0]]))
    got = scores.get("sparsegpt")(torch.tensor([[1.0, 2.0]]), st2, percdamp=0.0)
    torch.testing.assert_close(got, torch.tensor([[1.5, 8.0]]))
    # a dead input (H_jj = 0) scores 0
    st3 = SimpleNamespace(hessian=torch.diag(torch.tensor([1.0, 0.0, 4.0, 1.0])))
    assert scores.get("sparsegpt")(W, st3)[:, 1].tolist() == [0.0, 0.0]


def test_scores_with_real_stats_and_bad_shapes():
    from esparse.stats import ChannelStats

    st = ChannelStats(4, hessian=True)
    x = torch.tensor([[1.0, 2.0, 0.0, 4.0], [1.0, 0.0, 1.0, 0.0]])  # one sample: norm = (√2, 2, 1, 4)
    st.update(x)
    st.finalize()
    st.update(x)
    st.finalize()
    close(scores.get("wanda")(W, st), [[math.sqrt(2), 4, 3, 16], [0.5 * math.sqrt(2), 2, 1, 8]])
    with pytest.raises(ValueError, match=r"stats.norm has shape \(4,\), expected \(3,\)"):
        scores.get("wanda")(W[:, :3], st)
    with pytest.raises(ValueError, match="stats=None"):
        scores.get("wanda")(W, None)
    with pytest.raises(ValueError, match="2-D"):
        scores.get("magnitude")(torch.ones(4), None)
    with pytest.raises(TypeError):
        scores.get("wanda")(W, st, alpha=3)


def test_esparse_alpha_auto_balances_terms():
    """alpha='auto': alpha = mean||X|| / mean H, so both terms weigh the same on average."""
    w = torch.tensor([[1.0, -2.0]])
    st = SimpleNamespace(norm=torch.tensor([10.0, 30.0]), entropy=torch.tensor([1.0, 3.0]))
    # mean norm 20, mean H 2 -> alpha 10; factor_j = 10*H_j + norm_j = [20, 60]
    out = scores.get("esparse")(w, st, alpha="auto")
    torch.testing.assert_close(out, torch.tensor([[20.0, 120.0]]))
    # alpha_norm: alpha = 2/20 = 0.1; factor = H + 0.1*norm = [2, 6]
    out = scores.get("esparse")(w, st, alpha="auto", form="alpha_norm")
    torch.testing.assert_close(out, torch.tensor([[2.0, 12.0]]))
    with pytest.raises(ValueError, match="metric.alpha"):
        scores.get("esparse")(w, st, alpha="seventy")
    with pytest.raises(ValueError, match=r"metric.alpha: -1.0 must be a positive number or 'auto'"):
        scores.get("esparse")(w, st, alpha=-1.0)  # the library refuses what the config refuses


def test_the_ria_ablation_scores_by_hand():
    """RIA Table 2's rows: ‖X‖ alone, |W| over its input channel's sum, |W| over its output channel's sum."""
    w = torch.tensor([[1.0, -2.0], [3.0, 4.0]])
    st = SimpleNamespace(norm=torch.tensor([0.5, 2.0]))
    assert torch.equal(scores.get("act_norm")(w, st), torch.tensor([[0.5, 2.0], [0.5, 2.0]]))
    assert torch.allclose(scores.get("w_in")(w, None), torch.tensor([[1 / 4, 2 / 6], [3 / 4, 4 / 6]]))
    assert torch.allclose(scores.get("w_out")(w, None), torch.tensor([[1 / 3, 2 / 3], [3 / 7, 4 / 7]]))
    # RI is their sum
    assert torch.allclose(scores.get("ri")(w, None), scores.get("w_in")(w, None) + scores.get("w_out")(w, None))
    assert scores.get("act_norm").needs == frozenset({"norm"}) and not scores.get("w_in").needs


def test_esparse_l2_norm_is_sqrt_nsamples_times_wandas_and_alpha_70_reads_it_by_hand():
    """E-Sparse's text defines ‖X_j‖ over the channel's tokens (plain ℓ2); Wanda's code divides by
    nsamples first. On a hand-built batch: 2 samples of 2 tokens, 2 channels."""
    from esparse.stats import ChannelStats

    x = torch.tensor([[[1.0, 0.0], [2.0, 2.0]], [[2.0, 0.0], [0.0, 1.0]]])  # (samples, tokens, channels)
    st = ChannelStats.from_inputs([x], bins=4)
    sum_sq = torch.tensor([1 + 4 + 4 + 0, 0 + 4 + 0 + 1.0])
    assert torch.allclose(st.norm, (sum_sq / 2).sqrt())  # Wanda: sqrt(Σx² / nsamples)
    w = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    l2 = sum_sq.sqrt()  # sqrt(Σx²) = sqrt(nsamples) · Wanda's
    assert torch.allclose(l2, math.sqrt(2) * st.norm)
    want = w.abs() * (70.0 * st.entropy.reshape(1, -1) + l2.reshape(1, -1))
    got = scores.get("esparse")(w, st, alpha=70.0, norm="l2")
    assert torch.allclose(got, want)
    assert not torch.allclose(got, scores.get("esparse")(w, st, alpha=70.0, norm="wanda"))
    # with alpha = auto the factor moves alpha with it: the same ranking up to that factor
    auto_l2 = scores.get("esparse")(w, st, norm="l2")
    assert torch.allclose(auto_l2, math.sqrt(2) * scores.get("esparse")(w, st))
    with pytest.raises(ValueError, match="metric.norm"):
        scores.get("esparse")(w, SimpleNamespace(norm=st.norm, entropy=st.entropy), alpha=70.0, norm="l2")
