"""ChannelStats: norm/Hessian conventions, two-pass entropy, streaming invariance, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from esparse.stats import ChannelStats


def _run(stats: ChannelStats, xs: list[torch.Tensor]) -> ChannelStats:
    """Drive the documented protocol: pass 1, finalize, pass 2 if needed, finalize."""
    for x in xs:
        stats.update(x)
    stats.finalize()
    if stats.needs_second_pass:
        for x in xs:
            stats.update(x)
        stats.finalize()
    assert not stats.needs_second_pass
    return stats


X1 = torch.tensor([[1.0, 2.0], [3.0, 0.0]])  # sample 1: 2 tokens × 2 channels
X2 = torch.tensor([[0.0, 1.0], [1.0, 1.0]])  # sample 2


def test_norm_is_wanda_convention_for_two_samples():
    # Σ_tokens x² per channel over both samples: ch0 = 1+9+0+1 = 11, ch1 = 4+0+1+1 = 6; nsamples = 2
    st = _run(ChannelStats(2, entropy=False), [X1, X2])
    assert st.nsamples == 2 and st.ntokens == 4
    torch.testing.assert_close(st.norm, torch.tensor([math.sqrt(5.5), math.sqrt(3.0)]))
    torch.testing.assert_close(st.min, torch.tensor([0.0, 0.0]))
    torch.testing.assert_close(st.max, torch.tensor([3.0, 2.0]))
    assert st.norm.dtype == torch.float32


def test_batched_3d_input_counts_batch_samples():
    st = _run(ChannelStats(2, entropy=False), [torch.stack([X1, X2])])
    assert st.nsamples == 2
    torch.testing.assert_close(st.norm, torch.tensor([math.sqrt(5.5), math.sqrt(3.0)]))


def test_hessian_is_sparsegpt_convention():
    # all tokens: [1,2],[3,0],[0,1],[1,1]; XᵀX = [[1+9+0+1, 2+0+0+1], [3, 4+0+1+1]] = [[11,3],[3,6]]
    # H = 2/nsamples · XᵀX with nsamples = 2  ->  [[11,3],[3,6]]
    st = _run(ChannelStats(2, entropy=False, hessian=True), [X1, X2])
    torch.testing.assert_close(st.hessian, torch.tensor([[11.0, 3.0], [3.0, 6.0]]))
    # one sample only: H = 2/1 · X1ᵀX1 = 2 · [[1+9, 2+0], [2, 4+0]] = [[20,4],[4,8]]
    st1 = _run(ChannelStats(2, entropy=False, hessian=True), [X1])
    torch.testing.assert_close(st1.hessian, torch.tensor([[20.0, 4.0], [4.0, 8.0]]))


def test_entropy_uniform_is_ln_bins_and_constant_is_zero():
    n = 100_000
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n  # evenly spread: ~1000 per bin
    x = torch.stack([u, torch.full_like(u, 3.25), 7.0 * u - 3.0], dim=1).float()
    st = _run(ChannelStats(3), [x[: n // 2], x[n // 2 :]])
    ent = st.entropy
    assert abs(ent[0].item() - math.log(100)) < 1e-3
    assert ent[1].item() == 0.0  # zero-range channel: 0, not NaN
    assert abs(ent[2].item() - math.log(100)) < 1e-3
    assert not torch.isnan(ent).any()


def test_entropy_hand_values():
    # ch0 = [0,0,0,1]: only the first and last bins are hit, p = (3/4, 1/4)
    #   H = -(0.75 ln 0.75 + 0.25 ln 0.25) = 0.2157615543 + 0.3465735903 = 0.5623351446
    # ch1 = [0,1,2,3] with bins=2 over [0,3]: edges 0,1.5,3 -> counts (2, 2) (3 == max -> last bin): ln 2
    x = torch.tensor([[0.0, 0.0], [0.0, 1.0], [0.0, 2.0], [1.0, 3.0]])
    st = _run(ChannelStats(2), [x])
    assert abs(st.entropy[0].item() - 0.5623351446) < 1e-6
    st2 = _run(ChannelStats(2, bins=2), [x])
    assert abs(st2.entropy[1].item() - 0.6931471806) < 1e-6
    assert st2.histogram[1].tolist() == [2, 2]
    assert st2.histogram[0].tolist() == [3, 1]


def test_entropy_matches_numpy_histogram():
    g = torch.Generator().manual_seed(0)
    scales = torch.tensor([0.01, 1.0, 5.0, 100.0, 1.0, 3.0])
    x = torch.randn(3, 400, 6, generator=g) * scales
    x[..., 4] = x[..., 4].abs() ** 3  # a skewed channel
    st = _run(ChannelStats(6), [x[0], x[1:]])
    allx = x.reshape(-1, 6).double().numpy()
    for j in range(6):
        col = allx[:, j]
        counts, _ = np.histogram(col, bins=100, range=(col.min(), col.max()))
        assert st.histogram[j].tolist() == counts.tolist()
        p = counts[counts > 0] / counts.sum()
        ref = float(-(p * np.log(p)).sum())
        assert abs(st.entropy[j].item() - ref) < 1e-6


def test_streaming_equals_one_call():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 50, 8, generator=g) * torch.linspace(0.1, 4.0, 8)
    one = _run(ChannelStats(8, hessian=True), [x])
    many = _run(ChannelStats(8, hessian=True), [x[0], x[1:3], x[3]])
    assert one.nsamples == many.nsamples == 4
    torch.testing.assert_close(one.norm, many.norm, rtol=0, atol=0)
    torch.testing.assert_close(one.entropy, many.entropy, rtol=0, atol=0)
    torch.testing.assert_close(one.hessian, many.hessian, rtol=1e-5, atol=0)  # fp32 products
    assert torch.equal(one.histogram, many.histogram)


def test_without_entropy_no_second_pass():
    st = ChannelStats(2, entropy=False)
    st.update(X1)
    assert not st.needs_second_pass
    st.finalize()
    assert st.finalized
    with pytest.raises(RuntimeError, match="entropy=False"):
        _ = st.entropy


def test_errors():
    st = ChannelStats(3)
    with pytest.raises(ValueError, match="width 2"):
        st.update(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="2-D"):
        st.update(torch.zeros(3))
    with pytest.raises(ValueError, match="NaN/Inf"):
        st.update(torch.tensor([[1.0, float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="NaN/Inf"):
        st.update(torch.tensor([[1.0, float("inf"), 0.0]]))
    with pytest.raises(RuntimeError, match="finalize"):
        _ = st.norm
    with pytest.raises(ValueError, match="before any tokens"):
        st.finalize()
    st.update(torch.ones(2, 3))
    st.finalize()
    assert st.needs_second_pass
    _ = st.norm  # readable after pass 1
    with pytest.raises(RuntimeError, match="second pass|finalize"):
        _ = st.entropy
    st.update(torch.ones(1, 3))  # replay with the wrong number of tokens
    with pytest.raises(ValueError, match="second pass saw 1 tokens"):
        st.finalize()
    with pytest.raises(RuntimeError, match="hessian=False"):
        _ = st.hessian
    with pytest.raises(ValueError, match="in_features"):
        ChannelStats(0)
    with pytest.raises(ValueError, match="bins"):
        ChannelStats(4, bins=0)


def test_from_inputs_equals_the_two_pass_protocol():
    g = torch.Generator().manual_seed(3)
    xs = [torch.randn(2, 40, 6, generator=g) * torch.linspace(0.2, 5.0, 6), torch.randn(40, 6, generator=g)]
    ref = _run(ChannelStats(6, bins=50, hessian=True), xs)
    for source in (xs, iter(xs), (x for x in xs)):  # a list, or an iterator read once
        got = ChannelStats.from_inputs(source, bins=50, hessian=True)
        assert got.finalized and not got.needs_second_pass
        assert (got.in_features, got.bins, got.nsamples, got.ntokens) == (6, 50, 3, 120)
        for attr in ("norm", "min", "max", "entropy", "histogram", "hessian"):
            assert torch.equal(getattr(got, attr), getattr(ref, attr)), attr


def test_from_inputs_single_tensor_and_options():
    x = torch.randn(3, 16, 4, generator=torch.Generator().manual_seed(4))
    one = ChannelStats.from_inputs(x)  # one batch of 3 samples
    ref = _run(ChannelStats(4), [x])
    assert one.nsamples == 3 and torch.equal(one.entropy, ref.entropy) and torch.equal(one.norm, ref.norm)
    plain = ChannelStats.from_inputs([x[0], x[1]], entropy=False)  # no entropy: one pass is enough
    assert plain.finalized and plain.ntokens == 32
    with pytest.raises(RuntimeError, match="entropy=False"):
        _ = plain.entropy
    with pytest.raises(ValueError, match="at least one batch"):
        ChannelStats.from_inputs([])
    with pytest.raises(TypeError, match="tensors"):
        ChannelStats.from_inputs([[1.0, 2.0]])
    with pytest.raises(ValueError, match="width 3"):
        ChannelStats.from_inputs([torch.zeros(2, 4), torch.zeros(2, 3)])


def test_statistics_never_write_into_the_callers_inputs():
    """The passes work in place on float64 copies of each chunk; a float64 input is not one of them."""
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(2, 64, 24, generator=g, dtype=torch.float64) for _ in range(2)]
    before = [x.clone() for x in xs]
    st = ChannelStats.from_inputs(xs, entropy=True, moments=True, absmean=True)
    assert all(torch.equal(x, b) for x, b in zip(xs, before, strict=True))
    flat = torch.cat([b.reshape(-1, 24) for b in before])
    assert torch.allclose(st.norm.double(), (flat.square().sum(0) / 4).sqrt().float().double())
