"""The layer-wise loop on tiny random models: exact patterns, sequential correctness, determinism."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_llama, tiny_opt

from esparse.masks import Pattern
from esparse.models import get_adapter
from esparse.pruning import PruneSpec, prune_model
from esparse.stats import ChannelStats


def _calib(n: int = 8, t: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 128, (n, t), generator=torch.Generator().manual_seed(seed))


def _linears(model):
    return list(get_adapter(model).named_linears(model))


@pytest.mark.parametrize("metric", ["magnitude", "wanda"])
@pytest.mark.parametrize("nm", [(2, 4), (4, 8)])
def test_exact_nm_counts_every_row(tiny_model, metric, nm):
    n, m = nm
    prune_model(tiny_model, _calib(), PruneSpec(metric, Pattern.parse(f"{n}:{m}")), progress=False)
    for name, lin in _linears(tiny_model):
        groups = (lin.weight == 0).reshape(lin.out_features, -1, m).sum(-1)
        assert torch.equal(groups, torch.full_like(groups, n)), name


def test_unstructured_ratio_exact_per_row(tiny_model):
    pattern = Pattern.parse({"kind": "unstructured", "sparsity": 0.5, "scope": "row"})
    prune_model(tiny_model, _calib(), PruneSpec("wanda", pattern), progress=False)
    for name, lin in _linears(tiny_model):
        zeros = (lin.weight == 0).sum(1)
        assert torch.equal(zeros, torch.full_like(zeros, lin.in_features // 2)), name


@pytest.mark.parametrize("make", [tiny_llama, tiny_opt], ids=["llama", "opt"])
def test_blockwise_equals_full_forward_reference(make):
    """Block i calibrated on the outputs of the already-pruned blocks < i, as a full forward sees them."""
    calib = _calib()
    spec = PruneSpec("wanda", Pattern.parse("2:4"))
    fast = make()
    prune_model(fast, calib, spec, batch_size=8, progress=False)

    ref = make()
    adapter = get_adapter(ref)
    for block in adapter.blocks(ref):
        # like the loop: all of a block's statistics come from its dense weights, in one forward
        groups = adapter.linear_groups(block)
        stats = [ChannelStats(g[0][1].in_features, entropy=False) for g in groups]
        hooks = [
            g[0][1].register_forward_hook(lambda mod, a, o, st=st: st.update(a[0]))
            for g, st in zip(groups, stats, strict=True)
        ]
        with torch.no_grad():
            ref(input_ids=calib, use_cache=False)  # full forward through the pruned earlier blocks
        for h in hooks:
            h.remove()
        for group, st in zip(groups, stats, strict=True):
            st.finalize()
            for _, lin in group:
                w = lin.weight.data
                score = w.abs() * st.norm  # wanda, written out independently of esparse.scores
                keep = torch.ones_like(w, dtype=torch.bool)
                order = torch.sort(score.reshape(w.shape[0], -1, 4), dim=-1, stable=True).indices[..., :2]
                keep.reshape(w.shape[0], -1, 4).scatter_(-1, order, False)
                lin.weight.data = w * keep
    for (name, a), (_, b) in zip(_linears(fast), _linears(ref), strict=True):
        assert torch.equal(a.weight == 0, b.weight == 0), name
        torch.testing.assert_close(a.weight, b.weight, rtol=0, atol=0)


def test_deterministic_masks():
    masks = []
    for _ in range(2):
        model = tiny_llama()
        prune_model(model, _calib(), PruneSpec("wanda", Pattern.parse("2:4")), progress=False)
        masks.append([lin.weight == 0 for _, lin in _linears(model)])
    assert all(torch.equal(a, b) for a, b in zip(*masks, strict=True))


def test_nonfinite_activations_named():
    model = tiny_llama()
    with torch.no_grad():
        model.model.layers[1].input_layernorm.weight[0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"model\.layers\.1\.self_attn\.q_proj"):
        prune_model(model, _calib(), PruneSpec("wanda", Pattern.parse("2:4")), progress=False)


def test_one_permutation_per_linear_keeps_at_least_the_groups_retained_score_on_every_linear():
    """shuffle.share=linear gives each linear of a shared-input group its own permutation, chosen on
    its own score: on every linear it keeps at least what the group's shared permutation keeps."""
    from esparse import permutation, scores

    calib = _calib()
    model = tiny_llama(intermediate_size=128)  # the unpruned weights (the same seed as the pruned copies)

    def perms(share: str) -> dict[str, list[int]]:
        spec = PruneSpec("magnitude", Pattern.parse("2:4"), shuffle="ria_cp_lsa", share=share)
        return prune_model(tiny_llama(intermediate_size=128), calib, spec, progress=False).layer_permutations()

    group_perms, linear_perms = perms("group"), perms("linear")
    assert set(group_perms) == set(linear_perms)
    for name, lin in _linears(model):
        if name not in linear_perms:
            continue
        s = scores.get("magnitude")(lin.weight.data, None)
        own = permutation.retained_score(s, 2, 4, torch.as_tensor(linear_perms[name]))
        shared = permutation.retained_score(s, 2, 4, torch.as_tensor(group_perms[name]))
        assert own >= shared * (1 - 1e-6), name
    q = [n for n in linear_perms if n.endswith("q_proj")]
    assert any(linear_perms[n] != linear_perms[n.replace("q_proj", "k_proj")] for n in q)


def test_input_summary_reads_both_norm_conventions_and_the_entropy_by_hand():
    """Two samples of three tokens, two channels: Σx² = 25 and 100, so Wanda's norms are 5/√2 and
    10/√2 and the plain ℓ2 norms 5 and 10; with 2 bins the channels split 3/3 and 4/2."""
    import math

    from esparse.stats import input_summary

    x = torch.tensor([[[1.0, 0], [2, 0], [2, 6]], [[0, 8], [4, 0], [0, 0]]])
    s = input_summary(ChannelStats.from_inputs(x, bins=2))
    assert s["x_norm_wanda_mean"] == pytest.approx((5 + 10) / 2 / math.sqrt(2))
    assert s["x_norm_l2_mean"] == pytest.approx(7.5)
    assert s["x_norm_l2_mean"] == pytest.approx(math.sqrt(2) * s["x_norm_wanda_mean"])
    h1 = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert s["entropy_mean"] == pytest.approx((math.log(2) + h1) / 2)
    assert "entropy_mean" not in input_summary(ChannelStats.from_inputs(x, entropy=False))


@pytest.mark.parametrize(
    ("metric", "pattern", "keys"),
    [
        ("esparse", "2:4", {"x_norm_wanda_mean", "x_norm_l2_mean", "entropy_mean"}),
        ("wanda", "2:4", {"x_norm_wanda_mean", "x_norm_l2_mean"}),
        ("wanda", {"kind": "unstructured", "sparsity": 0.5, "scope": "row"}, {"x_norm_wanda_mean", "x_norm_l2_mean"}),
        ("magnitude", "2:4", set()),
    ],
)
def test_each_group_reports_what_its_score_read_from_the_calibration_pass(metric, pattern, keys):
    calib = _calib()
    report = prune_model(tiny_llama(), calib, PruneSpec(metric, Pattern.parse(pattern)), progress=False)
    readings = {"x_norm_wanda_mean", "x_norm_l2_mean", "entropy_mean"}
    assert len(report.groups) == 8  # 2 blocks x 4 shared-input groups, unstructured included
    for g in report.groups.values():
        assert set(g) & readings == keys
        if keys:
            assert g["x_norm_l2_mean"] == pytest.approx(calib.shape[0] ** 0.5 * g["x_norm_wanda_mean"])


@pytest.mark.parametrize("shuffle", ["none", "esparse"])
def test_entropy_pass_replayed_from_kept_inputs_equals_running_the_block_again(shuffle):
    """E-Sparse's second statistics pass: replaying the kept linear inputs (budget large enough) and
    running each block again (budget 0) give the same weights bit for bit; the report says which ran."""
    calib, spec = _calib(), PruneSpec("esparse", Pattern.parse("2:4"), shuffle=shuffle)
    models = [tiny_llama(intermediate_size=128), tiny_llama(intermediate_size=128)]
    reports = [prune_model(m, calib, spec, progress=False, replay_budget=b)
               for m, b in zip(models, (1e12, 0.0), strict=True)]  # fmt: skip
    for a, b in zip(models[0].state_dict().values(), models[1].state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert reports[0].passes["replayed"] == reports[1].passes["rerun"] == 2  # the tiny model's two blocks
    assert "rerun" not in reports[0].passes and "replayed" not in reports[1].passes
    tokens, widths = calib.numel(), 32 * 3 + 128  # q/k/v, o, gate/up read the hidden size; down the intermediate
    assert reports[0].passes["block_inputs_bytes"] == tokens * widths * 4


def test_a_score_without_entropy_takes_one_statistics_pass():
    report = prune_model(tiny_llama(), _calib(), PruneSpec("wanda", Pattern.parse("2:4")), progress=False,
                         replay_budget=1e12)  # fmt: skip
    assert report.passes == {}
