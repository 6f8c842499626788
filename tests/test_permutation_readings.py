"""The registry's fallback to the identity, made explicit: counted per group, per block and per run."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_llama

from esparse import permutation as P
from esparse.masks import Pattern
from esparse.pruning import PruneSpec, block_summary, prune_model


_CALLS: list[dict] = []


def _worst_or_best_of_random(score: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """The least-retaining (even calls) or the most-retaining (odd calls) of a few seeded random
    permutations, noting whether it loses to the identity."""
    g = torch.Generator().manual_seed(score.shape[1])
    perms = [torch.randperm(score.shape[1], generator=g) for _ in range(8)]
    pick = max if len(_CALLS) % 2 else min
    perm = pick(perms, key=lambda p: P.retained_score(score, n, m, p))
    _CALLS.append({"worse": P.retained_score(score, n, m, perm) < P.retained_score(score, n, m)})
    return perm


if "_test_worst_or_best_of_random" not in P.names():
    P.register("_test_worst_or_best_of_random")(_worst_or_best_of_random)


def test_registry_reports_its_fallback():
    name = "_test_pair_up_checked"
    if name not in P.names():
        P.register(name)(lambda score, n, m: torch.tensor([0, 2, 4, 6, 1, 3, 5, 7]))
    bad, good = torch.tensor([[9.0, 1, 9, 1, 9, 1, 9, 1]]), torch.tensor([[9.0, 9, 9, 9, 1, 1, 1, 1]])
    perm, fell_back = P.get_checked(name)(bad, 2, 4)
    assert (perm.tolist(), fell_back) == (list(range(8)), True)
    perm, fell_back = P.get_checked(name)(good, 2, 4)
    assert (perm.tolist(), fell_back) == ([0, 2, 4, 6, 1, 3, 5, 7], False)
    assert P.get(name)(good, 2, 4).tolist() == perm.tolist()  # the plain callable is the same method
    assert P.permute_and_report(name, bad, 2, 4)["fell_back"] is True
    with pytest.raises(ValueError, match="unknown permutation method"):
        P.get_checked("bogus")


def test_fallbacks_are_counted_per_group_per_block_and_per_run():
    _CALLS.clear()
    spec = PruneSpec("magnitude", Pattern.parse("2:4"), shuffle="_test_worst_or_best_of_random")
    report = prune_model(tiny_llama(intermediate_size=128), torch.zeros(1, 4, dtype=torch.long), spec, progress=False)
    worse = [c["worse"] for c in _CALLS]
    assert 0 < sum(worse) < len(worse)  # both cases occur: the method lost on some groups, not on others
    assert [g["fell_back"] for g in report.groups.values()] == worse
    assert report.fallbacks == sum(worse)
    blocks = [block_summary(report, f"model.layers.{i}", i, 0.0)["perm_fallbacks"] for i in range(2)]
    assert sum(blocks) == sum(worse)
    for g in report.groups.values():  # a group that fell back kept the identity's score
        assert (
            (g["retained_after"] == g["retained_before"])
            if g["fell_back"]
            else g["retained_after"] >= g["retained_before"]
        )
    plain = prune_model(
        tiny_llama(), torch.zeros(1, 4, dtype=torch.long), PruneSpec("magnitude", Pattern.parse("2:4")), progress=False
    )
    assert plain.fallbacks == 0 and all(g["fell_back"] is False for g in plain.groups.values())
