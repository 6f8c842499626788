"""Tie-break rules: identical masks without ties, hand-computed masks with them, exact N:M counts for
every rule, a seeded and unbiased ``random``, and the rule reaching SparseGPT's selection."""

from __future__ import annotations

import pytest
import torch

from esparse.masks import TIE_BREAKS, TieBreak, nm_mask, prune_lowest_mask, unstructured_mask
from esparse.sparsegpt import sparsegpt_prune

RULES = [TieBreak(rule) for rule in TIE_BREAKS]


@pytest.mark.parametrize("tie", RULES, ids=TIE_BREAKS)
def test_without_ties_every_rule_gives_the_default_mask(tie):
    score = torch.randn(6, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(nm_mask(score, 2, 4, tie), nm_mask(score, 2, 4))
    for scope in ("row", "layer"):
        assert torch.equal(unstructured_mask(score, 0.3, scope, tie), unstructured_mask(score, 0.3, scope))


def test_a_tie_across_the_threshold_by_hand():
    # 2:4 on [1, 2, 2, 3]: the 1 goes, then one of the tied 2s (index 1 or 2)
    score = torch.tensor([[1.0, 2.0, 2.0, 3.0]])
    assert nm_mask(score, 2, 4, TieBreak("low_index")).tolist() == [[False, False, True, True]]
    assert nm_mask(score, 2, 4, TieBreak("high_index")).tolist() == [[False, True, False, True]]
    # unstructured, 2 of 5 per row, all tied: the two lowest or the two highest indices
    ones = torch.ones(1, 5)
    assert unstructured_mask(ones, 0.4, "row", TieBreak("high_index")).tolist() == [[True, True, True, False, False]]
    # layer scope over the flat order: the last 3 of 6
    flat = prune_lowest_mask(torch.ones(2, 3), 3, "layer", TieBreak("high_index"))
    assert flat.tolist() == [[True] * 3, [False] * 3]


@pytest.mark.parametrize("tie", RULES, ids=TIE_BREAKS)
def test_exact_counts_under_heavy_ties(tie):
    score = torch.randint(0, 2, (50, 64), generator=torch.Generator().manual_seed(1)).float()
    for n, m in [(2, 4), (4, 8), (1, 4)]:
        keep = nm_mask(score, n, m, tie)
        assert bool(((~keep).reshape(50, 64 // m, m).sum(-1) == n).all())
    assert ((~unstructured_mask(score, 0.5, "row", tie)).sum(1) == 32).all()
    assert int((~unstructured_mask(score, 0.5, "layer", tie)).sum()) == 1600


def test_random_is_seeded_and_unbiased():
    ties = torch.ones(4000, 4)  # every weight of every group tied: which 2 of 4 go is pure tie-break
    a = nm_mask(ties, 2, 4, TieBreak("random", 0))
    assert torch.equal(a, nm_mask(ties, 2, 4, TieBreak("random", 0)))
    assert not torch.equal(a, nm_mask(ties, 2, 4, TieBreak("random", 1)))
    pruned_share = (~a).float().mean(0)  # each position pruned half the time, rows independent
    assert bool(((pruned_share - 0.5).abs() < 0.04).all()), pruned_share.tolist()
    assert len({tuple(r) for r in a.tolist()}) == 6  # all C(4,2) choices occur


def test_derive_gives_each_layer_its_own_stream_only_under_random():
    assert TieBreak("low_index", 3).derive("blocks.0.q") == TieBreak("low_index", 3)
    r = TieBreak("random", 3)
    assert r.derive("blocks.0.q") == r.derive("blocks.0.q")
    assert r.derive("blocks.0.q").seed != r.derive("blocks.1.q").seed


def test_bad_rules_and_seeds_are_refused():
    with pytest.raises(ValueError, match="unknown tie_break 'coin'"):
        TieBreak("coin")
    with pytest.raises(ValueError, match="tie_seed must be an integer"):
        TieBreak("random", 0.5)  # type: ignore[arg-type]
    assert TieBreak.from_cfg({"name": "2:4"}) == TieBreak()


def test_sparsegpt_selection_follows_the_rule():
    # identity Hessian: saliency w² / 1, so [1, 2, 2, 3] ties at index 1 and 2 exactly as above
    w = torch.tensor([[1.0, 2.0, 2.0, 3.0]], dtype=torch.float64)
    h = torch.eye(4, dtype=torch.float64)
    _, low = sparsegpt_prune(w, h, "2:4", blocksize=4, percdamp=0.0)
    _, high = sparsegpt_prune(w, h, "2:4", blocksize=4, percdamp=0.0, tie=TieBreak("high_index"))
    assert low.tolist() == [[False, False, True, True]]
    assert high.tolist() == [[False, True, False, True]]


def test_the_rule_reaches_every_layer_of_a_pruned_model():
    """On a tiny random LLaMA (tests only) with weights rounded to a coarse grid, as dequantised
    4-bit weights are, the two deterministic rules prune different weights, both to exact 2:4."""
    from conftest import tiny_llama

    from esparse.masks import Pattern, check
    from esparse.pruning import PruneSpec, prune_model

    calib = torch.randint(0, 128, (4, 16), generator=torch.Generator().manual_seed(0))
    zeros = {}
    for rule in ("low_index", "high_index"):
        model = tiny_llama()
        with torch.no_grad():
            for p in model.parameters():
                p.copy_((p * 100).round() / 100)  # std 0.02 -> a few levels: many exact ties
        spec = PruneSpec("magnitude", Pattern.parse("2:4"), tie=TieBreak(rule))
        prune_model(model, calib, spec, progress=False)
        assert check(model, "2:4").ok
        zeros[rule] = torch.cat([lin.weight.flatten() == 0 for _, lin in _linears(model)])
    assert not torch.equal(zeros["low_index"], zeros["high_index"])


def _linears(model):
    from esparse.models import get_adapter

    return list(get_adapter(model).named_linears(model))
