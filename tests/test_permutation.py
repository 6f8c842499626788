"""Channel permutations: objective by hand, dealing orders by hand, bijections, never-worse guarantees,
brute-force optima on tiny matrices, and input validation."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from esparse import permutation as P

METHODS = ["none", "esparse_global", "esparse", "ria_cp", "ria_cp_lsa", "lsa_relabel", "greedy"]
# keep the slow reference quick in the property test
FAST_KW: dict[str, dict] = {"greedy": {"escapes": 2}}


def _retained(score: torch.Tensor, n: int, m: int, perm) -> float:
    """Independent objective: plain Python sorting of every group."""
    rows = score.tolist()
    c = len(rows[0])
    return sum(sum(sorted(row[perm[j]] for j in range(g, g + m))[n:]) for row in rows for g in range(0, c, m))


def _partitions(items: list[int], m: int):
    if not items:
        yield []
        return
    first = items[0]
    for comb in itertools.combinations(items[1:], m - 1):
        rest = [i for i in items[1:] if i not in comb]
        for part in _partitions(rest, m):
            yield [(first, *comb), *part]


def _brute_force_optimum(score: torch.Tensor, n: int, m: int) -> float:
    rows = score.tolist()
    return max(
        sum(sum(sorted(row[i] for i in grp)[n:]) for row in rows for grp in part)
        for part in _partitions(list(range(score.shape[1])), m)
    )


# ------------------------------------------------------------------------------ objective by hand
S28 = torch.tensor([[1.0, 2, 3, 4, 5, 6, 7, 8], [8, 1, 7, 2, 6, 3, 5, 4]])


def test_retained_score_by_hand():
    # 2:4 keeps the top 2 of each group: row0 (3+4)+(7+8)=22, row1 (8+7)+(6+5)=26
    assert P.retained_score(S28, 2, 4) == 48.0
    # 1:4 keeps 3: row0 9+21, row1 17+15; 3:4 keeps 1: row0 4+8, row1 8+6
    assert P.retained_score(S28, 1, 4) == 62.0
    assert P.retained_score(S28, 3, 4) == 26.0
    # permuted: groups (0,4,1,5),(2,6,3,7): row0 (5+6)+(7+8)=26, row1 (8+6)+(7+5)=26
    assert P.retained_score(S28, 2, 4, torch.tensor([0, 4, 1, 5, 2, 6, 3, 7])) == 52.0
    # the unstructured bound: top 4 per row = 26 + 26; the permutation above attains it
    assert P.upper_bound(S28, 2, 4) == 52.0
    assert P.upper_bound(S28, 1, 4) == 33.0 + 33.0
    assert P.retained_score(S28, 4, 8) == 26.0 + 26.0


def test_retained_score_matches_python_for_4_8_and_6_wide_groups():
    g = torch.Generator().manual_seed(3)
    for n, m in [(4, 8), (2, 6), (5, 6), (1, 2)]:
        score = torch.rand(5, 24, generator=g, dtype=torch.float64)
        perm = torch.randperm(24, generator=g)
        assert P.retained_score(score, n, m, perm) == pytest.approx(_retained(score, n, m, perm.tolist()), rel=1e-12)


@pytest.mark.parametrize("m", [2, 3, 4, 5, 6, 7, 8, 12])
def test_sorting_network_sorts_every_zero_one_input(m):
    # 0-1 principle: a comparator network sorting all 2^m binary inputs sorts everything
    bits = torch.tensor(list(itertools.product([0.0, 1.0], repeat=m)))  # (2^m, m)
    out = torch.stack(P._sorted_desc(bits, dim=1), 1)
    assert torch.equal(out, bits.sort(dim=1, descending=True).values)


# ------------------------------------------------------------------------------ dealing orders
def test_esparse_global_deals_round_robin_by_hand():
    score = torch.tensor([[1.0, 8, 3, 6, 5, 4, 7, 2]])
    # ranks by mean: ch1, ch6, ch3, ch4, ch5, ch2, ch7, ch0; K=2 groups; rank j -> group j % 2
    perm = P.get("esparse_global")(score, 2, 4)
    assert perm.tolist() == [1, 3, 5, 7, 6, 4, 2, 0]


def test_ria_cp_deals_in_snake_order_by_hand():
    score = torch.tensor([[1.0, 8, 3, 6, 5, 4, 7, 2]])
    # round 0: ch1->g0, ch6->g1; round 1 reversed: ch3->g1, ch4->g0; round 2: ch5->g0, ch2->g1;
    # round 3 reversed: ch7->g1, ch0->g0
    perm = P.get("ria_cp")(score, 2, 4)
    assert perm.tolist() == [1, 4, 5, 0, 6, 3, 2, 7]


def test_ria_cp_snake_over_four_groups():
    score = torch.arange(16, 0, -1, dtype=torch.float32)[None]  # column j has sum 16 - j: rank = j
    perm = P.get("ria_cp")(score, 2, 4)
    # groups get ranks (g, 7-g, 8+g, 15-g)
    assert perm.view(4, 4).tolist() == [[0, 7, 8, 15], [1, 6, 9, 14], [2, 5, 10, 13], [3, 4, 11, 12]]


# ------------------------------------------------------------------------------ RIA-style example
RIA_EXAMPLE = torch.tensor(
    [[6.0, 11, 12, 2, 9, 1, 8, 8], [12, 12, 12, 1, 7, 3, 5, 2], [5, 5, 9, 3, 1, 1, 0, 3]]
)  # heavy channels 0-2 adjacent


def test_ria_cp_lsa_beats_ria_cp_beats_none_on_clustered_channels():
    none = P.retained_score(RIA_EXAMPLE, 2, 4)
    cp = P.retained_score(RIA_EXAMPLE, 2, 4, P.get("ria_cp")(RIA_EXAMPLE, 2, 4))
    lsa = P.retained_score(RIA_EXAMPLE, 2, 4, P.get("ria_cp_lsa")(RIA_EXAMPLE, 2, 4))
    # by hand: none 23+17 + 24+12 + 14+4; ria_cp groups (2,4,6,5)|(1,0,7,3): 21+19+10 + 19+24+10;
    # the optimum (brute force) is 105, e.g. groups (2,0,6,5)|(1,4,7,3): 20+24+14 + 20+19+8
    assert (none, cp, lsa) == (94.0, 103.0, 105.0)
    assert _brute_force_optimum(RIA_EXAMPLE, 2, 4) == 105.0


def test_heavy_adjacent_channels_get_spread():
    score = torch.ones(4, 16)
    score[:, :4] = 10.0  # four heavy channels in one 2:4 group: two of them are lost
    assert P.retained_score(score, 2, 4) == 4 * (20 + 2 * 3)
    for name in ["esparse_global", "esparse", "ria_cp", "ria_cp_lsa", "lsa_relabel", "greedy"]:
        perm = P.get(name)(score, 2, 4)
        groups_of_heavy = {perm.tolist().index(h) // 4 for h in range(4)}
        assert len(groups_of_heavy) >= 2, name
        # optimum per row: one heavy per group (10+1 each) or two per group in two groups (20+20+2+2)
        assert P.retained_score(score, 2, 4, perm) == 4 * 44, name


# ------------------------------------------------------------------------------ properties
SHAPES = [(1, 8, 2, 4), (3, 16, 1, 4), (4, 24, 3, 4), (5, 32, 4, 8), (2, 12, 2, 4), (7, 32, 2, 4)]


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize(("r", "c", "n", "m"), SHAPES)
def test_every_method_returns_a_bijection(name, r, c, n, m):
    score = torch.rand(r, c, generator=torch.Generator().manual_seed(r * c + n))
    perm = P.get(name)(score, n, m, **FAST_KW.get(name, {}))
    assert perm.dtype == torch.long and perm.shape == (c,)
    assert sorted(perm.tolist()) == list(range(c))
    assert P.retained_score(score, n, m, perm) <= P.upper_bound(score, n, m) + 1e-4


@settings(max_examples=20, deadline=None)
@given(
    r=st.integers(1, 8),
    c=st.sampled_from([8, 16, 24, 32]),
    nm=st.sampled_from([(1, 4), (2, 4), (3, 4), (4, 8)]),
    seed=st.integers(0, 2**16),
    heavy=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.float16]),
)
def test_no_method_retains_less_than_identity(r, c, nm, seed, heavy, dtype):
    n, m = nm
    if c % m:
        return
    g = torch.Generator().manual_seed(seed)
    score = torch.rand(r, c, generator=g)
    if heavy:  # heavy-tailed columns, like |W|·||X||
        score = score * torch.exp(2 * torch.randn(c, generator=g))
    score = score.to(dtype)
    base = P.retained_score(score, n, m)
    got = {name: P.retained_score(score, n, m, P.get(name)(score, n, m, **FAST_KW.get(name, {}))) for name in METHODS}
    bound = P.upper_bound(score, n, m)
    for name, val in got.items():
        assert val >= base, name
        assert val <= bound * (1 + 1e-6), name
    # the refinements never undo their starting point
    assert got["ria_cp_lsa"] >= got["ria_cp"]
    assert got["lsa_relabel"] >= got["ria_cp_lsa"]
    assert got["esparse"] >= got["esparse_global"]


def test_greedy_reaches_the_brute_force_optimum_on_tiny_matrices():
    g = torch.Generator().manual_seed(1)
    for r, c, n, m in [(3, 8, 2, 4), (4, 12, 2, 4), (2, 12, 1, 4), (3, 12, 3, 4)]:
        score = torch.randint(0, 50, (r, c), generator=g).double()
        best = _brute_force_optimum(score, n, m)
        assert P.retained_score(score, n, m, P.get("greedy")(score, n, m)) == best
        for name in METHODS:
            assert P.retained_score(score, n, m, P.get(name)(score, n, m)) <= best


def test_search_methods_improve_real_looking_scores_and_are_deterministic():
    g = torch.Generator().manual_seed(0)
    score = torch.randn(16, 64, generator=g).abs() * torch.exp(torch.randn(64, generator=g))
    base = P.retained_score(score, 2, 4)
    for name, kw in [
        ("esparse", {}),
        ("esparse", {"block": 16, "passes": 2}),
        ("ria_cp_lsa", {}),
        ("ria_cp_lsa", {"communities": 4, "sweeps": 3}),
        ("lsa_relabel", {}),
        ("lsa_relabel", {"rounds": 2, "seed": 3, "community_size": 4}),
        ("greedy", {"seed": 5, "escapes": 2}),
    ]:
        first = P.get(name)(score, 2, 4, **kw)
        assert torch.equal(first, P.get(name)(score, 2, 4, **kw)), (name, kw)
        assert P.retained_score(score, 2, 4, first) > base, (name, kw)
    # the searches beat the plain dealing they start from on this matrix
    assert P.retained_score(score, 2, 4, P.get("ria_cp_lsa")(score, 2, 4)) > P.retained_score(
        score, 2, 4, P.get("ria_cp")(score, 2, 4)
    )
    assert P.retained_score(score, 2, 4, P.get("esparse")(score, 2, 4)) > P.retained_score(
        score, 2, 4, P.get("esparse_global")(score, 2, 4)
    )


def test_relabel_moves_members_inside_their_groups_only():
    from esparse.permutation.relabel import relabel

    score = torch.rand(6, 64, generator=torch.Generator().manual_seed(4))
    perm = P.get("ria_cp_lsa")(score, 2, 4)
    new = relabel(perm, 4, torch.Generator().manual_seed(0))
    assert [sorted(g) for g in new.view(-1, 4).tolist()] == [sorted(g) for g in perm.view(-1, 4).tolist()]
    assert not torch.equal(new, perm)  # 16 groups of 4: the same order everywhere is (1/24)^16 unlikely
    assert P.retained_score(score, 2, 4, new) == P.retained_score(score, 2, 4, perm)


def test_lsa_relabel_escapes_the_rank_bands_of_ria_cp_lsa():
    # after the snake deal every group holds one channel per rank band, and LSA per position only
    # trades within a band; relabelled positions let it trade across bands, and more rounds never lose
    g = torch.Generator().manual_seed(0)
    score = torch.randn(16, 64, generator=g).abs() * torch.exp(torch.randn(64, generator=g))
    lsa = P.retained_score(score, 2, 4, P.get("ria_cp_lsa")(score, 2, 4))
    by_rounds = [P.retained_score(score, 2, 4, P.get("lsa_relabel")(score, 2, 4, rounds=k)) for k in (1, 2, 4)]
    assert lsa < by_rounds[-1]
    assert lsa <= by_rounds[0] <= by_rounds[1] <= by_rounds[2]


def test_float64_and_half_scores_are_accepted():
    score = torch.rand(4, 16, generator=torch.Generator().manual_seed(2))
    for dtype in (torch.float64, torch.float16, torch.bfloat16):
        for name in METHODS:
            perm = P.get(name)(score.to(dtype), 2, 4, **FAST_KW.get(name, {}))
            assert sorted(perm.tolist()) == list(range(16))


def test_permute_and_report():
    rep = P.permute_and_report("ria_cp_lsa", RIA_EXAMPLE, 2, 4)
    assert set(rep) == {"perm", "fell_back", "retained_before", "retained_after", "upper_bound", "seconds"}
    assert rep["fell_back"] is False
    assert (rep["retained_before"], rep["retained_after"]) == (94.0, 105.0)
    # upper bound: top 4 per row: (12+11+9+8) + (12+12+12+7) + (9+5+5+3)
    assert rep["upper_bound"] == 40.0 + 43.0 + 22.0
    assert rep["seconds"] >= 0.0


# ------------------------------------------------------------------------------ blocks, registry, errors
def test_effective_block_rule():
    assert P._effective_block(64, 4, 64) == 64
    assert P._effective_block(24, 4, 16) == 12  # 16 does not divide 24: largest multiple of 4 that does
    assert P._effective_block(11008, 4, 64) == 64
    assert P._effective_block(8, 4, 64) == 8  # bigger than c: one block
    assert P._effective_block(40, 4, 30) == 20
    assert P._effective_block(40, 8, 30) == 8  # 24 and 16 do not divide 40
    with pytest.raises(ValueError, match="block"):
        P._effective_block(16, 4, 2)


def test_registry():
    assert set(METHODS) <= set(P.names())
    with pytest.raises(ValueError, match="unknown permutation method 'bogus'.*ria_cp_lsa"):
        P.get("bogus")
    with pytest.raises(ValueError, match="already registered"):
        P.register("none")(lambda score, n, m: torch.arange(score.shape[1]))


def test_fallback_to_identity_when_a_method_hurts():
    name = "_test_pair_up"
    if name not in P.names():
        # a fixed "method": even channels in group 0, odd ones in group 1
        P.register(name)(lambda score, n, m: torch.tensor([0, 2, 4, 6, 1, 3, 5, 7]))
    score = torch.tensor([[9.0, 1, 9, 1, 9, 1, 9, 1]])
    # identity keeps 9+9 per group = 36; the method's groups (9,9,9,9)|(1,1,1,1) keep 18 + 2 = 20
    assert P.get(name)(score, 2, 4).tolist() == list(range(8))
    # here identity keeps (9+9) + (1+1) = 20 and the method's groups (9,9,1,1)|(9,9,1,1) keep 36
    good = torch.tensor([[9.0, 9, 9, 9, 1, 1, 1, 1]])
    assert P.get(name)(good, 2, 4).tolist() == [0, 2, 4, 6, 1, 3, 5, 7]


@pytest.mark.parametrize(
    ("score", "n", "m", "needle"),
    [
        (torch.rand(2, 8), 0, 4, "n=0"),
        (torch.rand(2, 8), 4, 4, "n=4"),
        (torch.rand(2, 10), 2, 4, "c=10"),
        (torch.rand(8), 2, 4, r"\(8,\)"),
        (torch.ones(2, 8, dtype=torch.long), 2, 4, "int64"),
        (torch.full((2, 8), float("nan")), 2, 4, "NaN"),
        (torch.zeros(0, 8), 2, 4, "empty"),
    ],
)
def test_bad_input_raises_value_error(score, n, m, needle):
    with pytest.raises(ValueError, match=needle):
        P.get("ria_cp")(score, n, m)
    with pytest.raises(ValueError, match=needle):
        P.retained_score(score, n, m)


def test_bad_options_and_perms_raise_value_error():
    score = torch.rand(2, 16)
    with pytest.raises(ValueError, match="communities"):
        P.get("ria_cp_lsa")(score, 2, 4, communities=0)
    with pytest.raises(ValueError, match="sweeps"):
        P.get("ria_cp_lsa")(score, 2, 4, sweeps=0)
    with pytest.raises(ValueError, match="rounds must be an int >= 1, got 0"):
        P.get("lsa_relabel")(score, 2, 4, rounds=0)
    with pytest.raises(ValueError, match="seed must be an int >= 0, got -1"):
        P.get("lsa_relabel")(score, 2, 4, seed=-1)
    with pytest.raises(ValueError, match="block"):
        P.get("esparse")(score, 2, 4, block=3)
    with pytest.raises(ValueError, match="passes"):
        P.get("esparse")(score, 2, 4, passes=0)
    with pytest.raises(ValueError, match="not a permutation"):
        P.retained_score(score, 2, 4, torch.zeros(16, dtype=torch.long))
    with pytest.raises(ValueError, match="length c=16"):
        P.retained_score(score, 2, 4, torch.arange(8))
