"""DSnoT mask refinement (esparse/refine.py, docs/refine.md): hand-computed swaps, the pattern kept
after every step, each stopping rule, the config group, and a tiny-model prune."""

from __future__ import annotations

import pytest
import torch
import yaml
from conftest import tiny_llama
from helpers import ROOT, compose_cfg

from esparse.masks import Pattern, check, check_weights, make_mask
from esparse.pruning import PruneSpec, prune_model
from esparse.records.hashing import config_hash
from esparse.refine import OPTIONS, dsnot, skipped
from esparse.run.config import ConfigError, normalize, validate
from esparse.stats import ChannelStats

UNSTRUCTURED = {"name": "unstructured", "sparsity": 0.5}


def _row(values):
    return torch.tensor([values], dtype=torch.float32)


def _unstructured_layer():
    """One row of 8: the score keeps columns 3, 4, 5, 6; e = 0.3 - 0.2 + 0.25 + 0.01 = 0.36 > 0.

    Regrow (e > 0): the largest W·mean/var among the pruned: column 2 (0.25 / 0.25 = 1.0) beats
    column 0 (0.3). Prune: a kept weight with W·mean < 0 (columns 4: -0.09, 6: -0.3), the smallest
    score first: column 4. e after = 0.36 - 0.09 - 0.25 = 0.02 (same sign), then |e| <= 0.1 stops."""
    w = _row([0.3, -0.2, 0.25, 1.0, -0.9, 2.0, -3.0, 0.01])
    mean = torch.tensor([1, 1, 1, 1, 0.1, 1, 0.1, 1.0])
    var = torch.tensor([1, 1, 0.25, 1, 1, 1, 1, 1.0])
    score = w.abs()
    return w, make_mask(score, UNSTRUCTURED), mean, var, score


def _kept(mask):
    return mask[0].nonzero().flatten().tolist()


def test_one_unstructured_step_matches_the_hand_computed_pair():
    w, mask, mean, var, score = _unstructured_layer()
    assert _kept(mask) == [3, 4, 5, 6]
    new = dsnot(w, mask, mean, var, score, UNSTRUCTURED, max_cycle_time=50, update_threshold=0.1)
    assert _kept(new) == [2, 3, 5, 6]  # column 2 regrown, column 4 pruned, then the threshold stops it


def test_without_the_variance_the_other_weight_regrows_and_the_sign_rule_decides():
    w, mask, mean, var, score = _unstructured_layer()
    kw = dict(max_cycle_time=50, update_threshold=0.1, pow_of_var_regrowing=0.0)
    # regrow column 0 (0.3), prune column 4: e = 0.36 - 0.09 - 0.3 = -0.03 flips the sign
    assert torch.equal(dsnot(w, mask, mean, var, score, UNSTRUCTURED, same_sign=True, **kw), mask)
    assert _kept(dsnot(w, mask, mean, var, score, UNSTRUCTURED, same_sign=False, **kw)) == [0, 3, 5, 6]


def test_one_nm_step_prunes_in_the_regrown_weights_group():
    """2:4, groups 0-3 and 4-7: kept 2, 3 | 6, 7; e = 0.1 + 0.2 + 0.05 + 0.3 = 0.65. Regrow column 5
    (largest, 0.3); its group's kept weight of the smallest score is column 7 (0.32, W = -0.32):
    e after = 0.65 - 0.32 - 0.3 = 0.03, then the threshold stops the row."""
    w = _row([0.1, 0.2, 1.0, 1.5, 0.05, 0.3, 2.0, -0.32])
    ones = torch.ones(8)
    mask = make_mask(w.abs(), "2:4")
    assert _kept(mask) == [2, 3, 6, 7]
    one = dsnot(w, mask, ones, ones, w.abs(), "2:4", max_cycle_time=1, update_threshold=0.1)
    assert _kept(one) == [2, 3, 5, 6]
    assert torch.equal(dsnot(w, mask, ones, ones, w.abs(), "2:4", max_cycle_time=50), one)


def _ladder():
    """One row of 16: pruned 0-7 with W·mean = +0.1 each, kept 8-15 with W·mean = -0.01 each;
    e = 0.8 and every swap lowers it by 0.11: 0.69, 0.58, 0.47, 0.36, 0.25, 0.14, 0.03, then -0.08."""
    w = _row([0.1] * 8 + [-1.0] * 8)
    mean = torch.tensor([1.0] * 8 + [0.01] * 8)
    return w, make_mask(w.abs(), UNSTRUCTURED), mean, torch.ones(16), w.abs()


def _swaps(new, old):
    return int((new & ~old).sum())


@pytest.mark.parametrize(("cycles", "swaps"), [(0, 0), (1, 1), (3, 3), (50, 7)])
def test_max_cycle_time_then_the_sign_flip_stops(cycles, swaps):
    w, mask, mean, var, score = _ladder()
    new = dsnot(w, mask, mean, var, score, UNSTRUCTURED, max_cycle_time=cycles, update_threshold=0.0)
    assert _swaps(new, mask) == swaps  # 50 cycles: the 8th swap would take e from 0.03 to -0.08


def test_threshold_stops_and_without_the_sign_rule_the_row_goes_on():
    w, mask, mean, var, score = _ladder()
    new = dsnot(w, mask, mean, var, score, UNSTRUCTURED, update_threshold=0.2)
    assert _swaps(new, mask) == 6  # e = 0.14 <= 0.2 after six swaps
    free = dsnot(w, mask, mean, var, score, UNSTRUCTURED, update_threshold=0.0, same_sign=False)
    assert _swaps(free, mask) == 8  # e = -0.08 then: no kept weight with W·mean > 0 is left to prune


def _random_layer(rows=24, c=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, c, generator=g)
    return w, torch.randn(c, generator=g), torch.rand(c, generator=g) + 0.05, w.abs()


@pytest.mark.parametrize("pattern", ["2:4", "4:8", "1:4", "3:4"])
def test_nm_counts_are_kept_after_every_step(pattern):
    w, mean, var, score = _random_layer()
    p = Pattern.parse(pattern)
    mask = make_mask(score, p)
    groups = mask.view(w.shape[0], -1, p.m).sum(2)
    changed = 0
    for cycles in range(12):
        new = dsnot(w, mask, mean, var, score, p, max_cycle_time=cycles, update_threshold=0.0)
        assert torch.equal(new.view(w.shape[0], -1, p.m).sum(2), groups)
        assert check_weights([("w", w * new)], p).ok
        changed = max(changed, _swaps(new, mask))
    assert changed > 0


@pytest.mark.parametrize("scope", ["row", "layer"])
@pytest.mark.parametrize("same_sign", [True, False])
def test_unstructured_counts_are_kept_after_every_step(scope, same_sign):
    w, mean, var, score = _random_layer()
    p = Pattern.parse({"name": "unstructured", "sparsity": 0.5, "scope": scope})
    mask = make_mask(score, p)
    for cycles in range(12):
        new = dsnot(w, mask, mean, var, score, p, max_cycle_time=cycles, update_threshold=0.0, same_sign=same_sign)
        assert torch.equal(new.sum(1), mask.sum(1))
        assert check_weights([("w", w * new)], p).ok


def test_deterministic_and_the_input_mask_untouched():
    w, mean, var, score = _random_layer(seed=3)
    mask = make_mask(score, "2:4")
    before = mask.clone()
    a = dsnot(w, mask, mean, var, score, "2:4", update_threshold=0.0)
    b = dsnot(w, mask, mean, var, score, "2:4", update_threshold=0.0)
    assert torch.equal(a, b) and torch.equal(mask, before)


def test_channel_stats_mean_and_var_per_sample():
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(3, 10, 6, generator=g) + 2.0 for _ in range(2)]
    st = ChannelStats.from_inputs(xs, entropy=False, moments=True)
    x = torch.cat(xs).double()
    assert torch.allclose(st.mean.double(), x.mean(dim=(0, 1)), atol=1e-6)
    assert torch.allclose(st.var.double(), x.var(dim=1, unbiased=False).mean(0), atol=1e-6)
    split = ChannelStats.from_inputs([s for b in xs for s in b], entropy=False, moments=True)  # one sample a call
    assert torch.allclose(split.var, st.var) and torch.allclose(split.mean, st.mean)
    with pytest.raises(RuntimeError, match="moments=False"):
        ChannelStats.from_inputs(xs, entropy=False).mean  # noqa: B018


def test_skip_rules():
    assert skipped("mlp.down_proj") and skipped("fc1") and not skipped("self_attn.q_proj")
    assert skipped("self_attn.o_proj", "self_attn") and not skipped("mlp.up_proj", "self_attn")
    assert skipped("mlp.down_proj", "no_skip", "down_proj") and not skipped("mlp.up_proj", "no_skip")


# ------------------------------------------------------------------------------- config and record
def test_conf_group_holds_the_official_defaults():
    dsnot_yaml = yaml.safe_load((ROOT / "conf" / "refine" / "dsnot.yaml").read_text())
    assert dsnot_yaml == {"name": "dsnot", **OPTIONS}
    assert yaml.safe_load((ROOT / "conf" / "refine" / "none.yaml").read_text()) == {"name": "none"}


def test_wanda_with_dsnot_composes_and_validates():
    cfg = normalize(compose_cfg(["metric=wanda", "refine=dsnot"]))
    validate(cfg)
    assert cfg["refine"]["name"] == "dsnot" and cfg["refine"]["max_cycle_time"] == 50
    plain = normalize(compose_cfg(["metric=wanda"]))
    assert plain["refine"] == {"name": "none"}
    without = {k: v for k, v in plain.items() if k != "refine"}
    assert config_hash(plain) == config_hash(without)  # refine=none is hash-neutral
    assert config_hash(cfg) != config_hash(plain)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("refine.max_cycle_time=-1", "refine.max_cycle_time"),
        ("refine.max_cycle_time=nan", "refine.max_cycle_time"),
        ("refine.update_threshold=nan", "refine.update_threshold"),
        ("refine.update_threshold=-0.1", "refine.update_threshold"),
        ("refine.pow_of_var_regrowing=-1", "refine.pow_of_var_regrowing"),
        ("refine.without_same_sign=maybe", "refine.without_same_sign"),
        ("refine.skip_layer=attn", "refine.skip_layer"),
        ("+refine.cycles=3", "refine.cycles"),
        ("metric=sparsegpt", "refine.name"),
    ],
)
def test_bad_values_fail_naming_the_key(override, key):
    cfg = normalize(compose_cfg(["metric=wanda", "refine=dsnot", override]))
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert any(p.startswith(key + ":") for p in err.value.problems), err.value.problems


def _prune_tiny(pattern, refine="dsnot", opts=(), **spec):
    model = tiny_llama()
    ids = torch.randint(0, 128, (4, 16), generator=torch.Generator().manual_seed(0))
    kw = {**OPTIONS, "skip_layer": "no_skip", "update_threshold": 0.0, **dict(opts)} if refine != "none" else {}
    spec = PruneSpec(metric="wanda", pattern=Pattern.parse(pattern), refine=refine, refine_kwargs=kw, **spec)
    report = prune_model(model, ids, spec, batch_size=2, progress=False)
    return model, report


@pytest.mark.parametrize(
    ("pattern", "spec"),
    [
        ("2:4", {}),
        ("4:8", {"shuffle": "esparse"}),
        ("2:4", {"reconstruct": True}),
        (UNSTRUCTURED, {}),
    ],
)
def test_tiny_model_prune_keeps_the_pattern_and_records_swaps(pattern, spec):
    from esparse.run.calibration import prune_fields

    model, report = _prune_tiny(pattern, **spec)
    assert check(model, Pattern.parse(pattern), permutations=report.layer_permutations()).ok
    assert report.refine["swaps"] > 0 and report.refine["seconds"] >= 0
    cfg = {"pattern": pattern if isinstance(pattern, dict) else {"name": pattern}, "refine": {"name": "dsnot"}}
    from esparse.models.adapters import get_adapter

    fields = prune_fields(cfg, model, get_adapter(model), report)
    assert fields["metrics"]["refine/swaps"] == report.refine["swaps"]
    assert fields["metrics"]["sparsity/pattern_ok"] is True
    again, report2 = _prune_tiny(pattern, **spec)
    assert report2.refine["swaps"] == report.refine["swaps"]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True))


def test_zero_cycles_is_the_plain_mask_and_records_zero_swaps():
    plain, none_report = _prune_tiny("2:4", refine="none")
    assert none_report.refine == {}
    model, report = _prune_tiny("2:4", opts={"max_cycle_time": 0})
    assert report.refine["swaps"] == 0
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), model.state_dict().values(), strict=True))


def test_refine_refuses_obs_selected_masks():
    with pytest.raises(ValueError, match="sparsegpt"):
        PruneSpec(metric="sparsegpt", pattern=Pattern.parse("2:4"), refine="dsnot")
