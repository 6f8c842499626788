"""The readings that decide RIA's permutation results, made explicit: RIA's official community
layout (``shuffle.communities=official``, counts by the adapter's group role) and the registry's
fallback to the identity, counted per group and per run."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_llama, tiny_opt

from esparse import permutation as P
from esparse.masks import Pattern
from esparse.models.adapters import ADAPTERS, ROLES, Adapter
from esparse.pruning import PruneSpec, _shuffle_kwargs, block_summary, prune_model


def _score(seed: int, c: int = 128) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(8, c, generator=g) * torch.exp(torch.randn(c, generator=g))


def _group_of(perm: torch.Tensor, m: int) -> torch.Tensor:
    """Channel -> the N:M group it sits in under ``perm``."""
    out = torch.empty_like(perm)
    out[perm] = torch.arange(len(perm)) // m
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_official_communities_are_contiguous_chunks_counted_by_role(seed):
    score = _score(seed)  # 128 channels, 2:4: K = 32 groups
    start = P.get("ria_cp")(score, 2, 4)
    before = _group_of(start, 4)
    for role, count in {"attn_in": 4, "attn_out": 4, "mlp_in": 8, "mlp_out": 16}.items():
        kw = P.official_communities(role)
        assert kw == {"communities": count, "contiguous": True}
        perm, fell_back = P.get_checked("ria_cp_lsa")(score, 2, 4, **kw)
        assert not fell_back
        after = _group_of(perm, 4)
        size = 32 // count  # groups per contiguous chunk
        assert bool((before != after).any()), role  # groups did trade...
        assert torch.equal(before // size, after // size), role  # ...only inside their contiguous chunk
        assert P.retained_score(score, 2, 4, perm) >= P.retained_score(score, 2, 4, start), role
    # the default layout (strided chunks on the first sweep) lets groups of different contiguous chunks trade
    strided = _group_of(P.get("ria_cp_lsa")(score, 2, 4, communities=4), 4)
    assert bool((before // 8 != strided // 8).any())


def test_official_needs_a_role():
    with pytest.raises(ValueError, match="official.*role.*'bogus'"):
        P.official_communities("bogus")
    with pytest.raises(ValueError, match="official"):
        P.get("ria_cp_lsa")(_score(0), 2, 4, communities="official")
    spec = PruneSpec(
        "magnitude", Pattern.parse("2:4"), shuffle="ria_cp_lsa", shuffle_kwargs={"communities": "official"}
    )
    with pytest.raises(ValueError, match="role"):
        _shuffle_kwargs(spec, None)
    assert _shuffle_kwargs(spec, "mlp_out") == {"communities": 16, "contiguous": True}
    plain = PruneSpec("magnitude", Pattern.parse("2:4"), shuffle="ria_cp_lsa", shuffle_kwargs={"communities": 3})
    assert _shuffle_kwargs(plain, "mlp_out") == {"communities": 3}


def test_every_adapter_names_a_role_per_group():
    for adapter in ADAPTERS.values():
        assert adapter.roles == ROLES and len(adapter.roles) == len(adapter.groups)
    with pytest.raises(ValueError, match="roles"):
        Adapter("x", "layers", (("a",), ("b",)))
    with pytest.raises(ValueError, match="roles"):
        Adapter("x", "layers", (("a",), ("b",)), roles=("attn_in", "bogus"))


_CALLS: list[dict] = []


def _recording(score: torch.Tensor, n: int, m: int, **kw) -> torch.Tensor:
    _CALLS.append(kw)
    return torch.arange(score.shape[1])


def _worst_or_best_of_random(score: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """The least-retaining (even calls) or the most-retaining (odd calls) of a few seeded random
    permutations, noting whether it loses to the identity."""
    g = torch.Generator().manual_seed(score.shape[1])
    perms = [torch.randperm(score.shape[1], generator=g) for _ in range(8)]
    pick = max if len(_CALLS) % 2 else min
    perm = pick(perms, key=lambda p: P.retained_score(score, n, m, p))
    _CALLS.append({"worse": P.retained_score(score, n, m, perm) < P.retained_score(score, n, m)})
    return perm


for _name, _fn in (("_test_recording", _recording), ("_test_worst_or_best_of_random", _worst_or_best_of_random)):
    if _name not in P.names():
        P.register(_name)(_fn)


@pytest.mark.parametrize("make", [tiny_llama, tiny_opt], ids=["llama", "opt"])
def test_the_pruning_loop_passes_each_groups_role_from_the_adapter(make):
    _CALLS.clear()
    spec = PruneSpec(
        "magnitude", Pattern.parse("2:4"), shuffle="_test_recording", shuffle_kwargs={"communities": "official"}
    )
    prune_model(make(), torch.zeros(1, 4, dtype=torch.long), spec, progress=False)
    assert [c["communities"] for c in _CALLS] == [4, 4, 8, 16] * 2  # two blocks: q/k/v, o, gate/up | fc1, down | fc2
    assert all(c["contiguous"] for c in _CALLS)


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


def test_official_is_a_valid_config_value_read_into_the_spec():
    from helpers import compose_cfg

    from esparse.run.calibration import prune_spec
    from esparse.run.config import normalize, validate

    cfg = normalize(compose_cfg(["metric=wanda", "pattern=2:4", "shuffle=ria_cp_lsa", "shuffle.communities=official"]))
    validate(cfg)  # no ConfigError
    assert prune_spec(cfg).shuffle_kwargs["communities"] == "official"
