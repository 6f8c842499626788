"""Patterns, N:M and unstructured keep-masks (exact counts, tie rule), and the weight checker."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from esparse.masks import Pattern, check_weights, make_mask, nm_mask, unstructured_mask


# ------------------------------------------------------------------------------------------- Pattern
def test_parse_names_and_mappings():
    p = Pattern.parse("2:4")
    assert (p.kind, p.n, p.m, p.name, p.target_sparsity) == ("nm", 2, 4, "2:4", 0.5)
    assert Pattern.parse("4:8").target_sparsity == 0.5
    assert Pattern.parse("1:4").target_sparsity == 0.25
    assert Pattern.parse("3:4").target_sparsity == 0.75
    d = Pattern.parse("dense")
    assert (d.kind, d.name, d.target_sparsity) == ("dense", "dense", 0.0)
    u = Pattern.parse("unstructured")
    assert (u.kind, u.name, u.sparsity, u.scope) == ("unstructured", "unstructured", 0.5, "row")
    u6 = Pattern.parse({"name": "unstructured", "sparsity": 0.6, "scope": "layer"})
    assert (u6.target_sparsity, u6.scope) == (0.6, "layer")
    # explicit n/m win over the name (a `pattern=2:4 pattern.n=1` override)
    assert Pattern.parse({"name": "2:4", "n": 1, "m": 4}).name == "1:4"
    assert Pattern.parse({"kind": "nm", "n": 4, "m": 8}).name == "4:8"
    assert Pattern.parse(Pattern("nm", 2, 4)) == Pattern("nm", 2, 4)


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("0:4", "n >= 1"),
        ("4:4", "n < m"),
        ("5:4", "n < m"),
        ("2-4", "2-4"),
        ({"kind": "blocky"}, "blocky"),
        ({"name": "unstructured", "sparsity": 1.0}, "1.0"),
        ({"name": "unstructured", "sparsity": -0.1}, "-0.1"),
        ({"name": "unstructured", "scope": "column"}, "column"),
        ({"n": 2}, "name"),
    ],
)
def test_parse_rejects_bad_values(spec, needle):
    with pytest.raises(ValueError, match=needle):
        Pattern.parse(spec)


def test_validate_in_features():
    Pattern.parse("4:8").validate(in_features=64)
    with pytest.raises(ValueError, match="in_features=12 .*m=8"):
        Pattern.parse("4:8").validate(in_features=12)
    with pytest.raises(ValueError, match="in_features=6"):
        nm_mask(torch.rand(2, 6), 2, 4)


# --------------------------------------------------------------------------------------------- N:M
def test_nm_mask_hand_example():
    # row 0, group [0.9, 0.1, 0.5, 0.3]: prune the two lowest (0.1 @1, 0.3 @3) -> keep 1,0,1,0
    # row 0, group [4, 3, 2, 1]: prune 1 @3, 2 @2 -> keep 1,1,0,0
    # row 1, group [-1, 5, -2, 0]: prune -2 @2, -1 @0 -> keep 0,1,0,1
    score = torch.tensor([[0.9, 0.1, 0.5, 0.3, 4.0, 3.0, 2.0, 1.0], [-1.0, 5.0, -2.0, 0.0, 1, 2, 3, 4]])
    keep = nm_mask(score, 2, 4)
    assert keep.tolist() == [
        [True, False, True, False, True, True, False, False],
        [False, True, False, True, False, False, True, True],
    ]


@pytest.mark.parametrize(("n", "m"), [(2, 4), (4, 8), (1, 4), (3, 4)])
def test_nm_mask_exact_counts_random(n, m):
    g = torch.Generator().manual_seed(n * 10 + m)
    score = torch.rand(16, 64, generator=g)
    keep = nm_mask(score, n, m)
    assert keep.dtype == torch.bool and keep.shape == score.shape
    zeros_per_group = (~keep).reshape(16, 64 // m, m).sum(-1)
    assert bool((zeros_per_group == n).all())
    assert int((~keep).sum()) == 16 * 64 * n // m
    # every pruned score is <= every kept score of its group
    grp = score.reshape(16, -1, m)
    k = keep.reshape(16, -1, m)
    max_pruned = torch.where(~k, grp, torch.tensor(-1.0)).amax(-1)
    min_kept = torch.where(k, grp, torch.tensor(2.0)).amin(-1)
    assert bool((max_pruned <= min_kept).all())


def test_nm_tie_rule_lower_index_pruned_first():
    keep = nm_mask(torch.ones(2, 8), 2, 4)
    assert keep.tolist() == [[False, False, True, True] * 2] * 2
    keep = nm_mask(torch.zeros(1, 8), 3, 4)
    assert keep.tolist() == [[False, False, False, True] * 2]
    # a tie across the threshold: [1, 0, 1, 1] with 2:4 prunes 0 @1, then the tied 1 @0
    assert nm_mask(torch.tensor([[1.0, 0.0, 1.0, 1.0]]), 2, 4).tolist() == [[False, False, True, True]]


@settings(max_examples=40, deadline=None)
@given(
    nm=st.sampled_from([(1, 2), (2, 4), (1, 4), (3, 4), (4, 8), (5, 8)]),
    rows=st.integers(1, 5),
    groups=st.integers(1, 4),
    seed=st.integers(0, 10_000),
    ties=st.booleans(),
)
def test_nm_mask_property(nm, rows, groups, seed, ties):
    n, m = nm
    g = torch.Generator().manual_seed(seed)
    score = (
        torch.randint(0, 3, (rows, groups * m), generator=g).float()
        if ties
        else torch.randn(rows, groups * m, generator=g)
    )
    keep = nm_mask(score, n, m)
    assert bool(((~keep).reshape(rows, groups, m).sum(-1) == n).all())


def test_nm_mask_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        nm_mask(torch.tensor([[1.0, float("nan"), 0.0, 2.0]]), 2, 4)


# ------------------------------------------------------------------------------------ unstructured
def test_unstructured_row_exact_counts():
    g = torch.Generator().manual_seed(3)
    score = torch.rand(7, 30, generator=g)
    for s, k in [(0.5, 15), (0.3, 9), (0.29, 8), (0.0, 0), (0.99, 29)]:  # k = floor(s · 30)
        keep = unstructured_mask(score, s, "row")
        assert (~keep).sum(1).tolist() == [k] * 7, s
        if k:
            thr = score.sort(1).values[:, k - 1 : k]
            assert bool((score[~keep].reshape(7, k) <= thr).all())


def test_unstructured_layer_exact_counts_and_global_ranking():
    # column j has score j for every row -> layer scope prunes whole low columns, rows differ by nothing
    score = torch.arange(10.0).repeat(4, 1) + torch.arange(4.0)[:, None] * 0.01
    keep = unstructured_mask(score, 0.5, "layer")  # floor(0.5 · 40) = 20 = columns 0..4 of all rows
    assert int((~keep).sum()) == 20
    assert bool((~keep[:, :5]).all()) and bool(keep[:, 5:].all())
    # uneven rows are allowed in layer scope: row 0 gets everything pruned
    s2 = torch.tensor([[0.0, 0.1, 0.2], [5.0, 6.0, 0.3]])
    assert unstructured_mask(s2, 0.5, "layer").tolist() == [[False, False, False], [True, True, True]]


def test_unstructured_tie_rule():
    assert unstructured_mask(torch.ones(1, 5), 0.4, "row").tolist() == [[False, False, True, True, True]]
    # flat order: (0,0),(0,1),(0,2) pruned first
    assert unstructured_mask(torch.ones(2, 3), 0.5, "layer").tolist() == [[False] * 3, [True] * 3]


def test_unstructured_rejects_bad_values():
    with pytest.raises(ValueError, match="1.5"):
        unstructured_mask(torch.rand(2, 4), 1.5)
    with pytest.raises(ValueError, match="diag"):
        unstructured_mask(torch.rand(2, 4), 0.5, scope="diag")
    with pytest.raises(ValueError, match="2-D"):
        unstructured_mask(torch.rand(8), 0.5)


def test_make_mask_dispatch():
    score = torch.rand(4, 8, generator=torch.Generator().manual_seed(5))
    assert torch.equal(make_mask(score, "2:4"), nm_mask(score, 2, 4))
    assert bool(make_mask(score, "dense").all())
    u = make_mask(score, {"name": "unstructured", "sparsity": 0.25})
    assert (~u).sum(1).tolist() == [2, 2, 2, 2]
    with pytest.raises(ValueError, match="m=8"):
        make_mask(torch.rand(2, 12), "4:8")


# ----------------------------------------------------------------------------------------- checker
def test_check_weights_reports_and_catches_extra_nonzero():
    g = torch.Generator().manual_seed(7)
    w_a = torch.randn(4, 8, generator=g)
    w_b = torch.randn(2, 16, generator=g)
    w_a = w_a * nm_mask(w_a.abs(), 2, 4)
    w_b = w_b * nm_mask(w_b.abs(), 2, 4)
    rep = check_weights([("blk0.q", w_a), ("blk0.down", w_b)], "2:4")
    assert rep.ok and rep.sparsity == 0.5
    assert [(x.name, x.zeros, x.numel, x.violations) for x in rep.layers] == [
        ("blk0.q", 16, 32, 0),
        ("blk0.down", 16, 32, 0),
    ]
    rep.raise_if_bad()

    bad = w_b.clone()
    first_zero = 4 + int((bad[1, 4:8] == 0).nonzero()[0])
    bad[1, first_zero] = 3.0  # one extra nonzero: group (row 1, cols 4..7) now has 1 zero
    rep = check_weights([("blk0.q", w_a), ("blk0.down", bad)], "2:4")
    assert not rep.ok
    assert rep.layers[1].violations == 1 and rep.layers[1].zeros == 15
    assert rep.sparsity == 31 / 64
    with pytest.raises(ValueError, match=r"'blk0.down'.*1 4-groups"):
        rep.raise_if_bad()


def test_check_weights_other_patterns():
    w = torch.tensor([[0.0, 1.0, 0.0, 2.0], [3.0, 4.0, 5.0, 0.0]])  # row zeros: 2, 1
    assert check_weights([("l", w)], "dense").ok
    rep = check_weights([("l", w)], {"name": "unstructured", "sparsity": 0.5})  # needs 2 per row
    assert rep.layers[0].violations == 1 and not rep.ok
    rep = check_weights([("l", w)], {"name": "unstructured", "sparsity": 0.375, "scope": "layer"})
    assert rep.ok and rep.sparsity == 3 / 8  # floor(0.375 · 8) = 3 zeros needed, 3 present
    rep = check_weights([("l", w)], "1:4")  # group (1, 0) has one zero: fine; (0, 0) has two
    assert rep.ok
    rep = check_weights([("l", w)], "3:4")
    assert rep.layers[0].violations == 2
    with pytest.raises(ValueError, match="'l'.*m=8"):
        check_weights([("l", w)], "4:8")
