"""Quantization after (or before) pruning (esparse/quant.py, docs/quant.md): RTN on a hand-computed
grid, GPTQ against a naive OBS loop with the mask kept, AWQ's scale search on a planted salient
channel, both orders in the pruning loop, the config group, its validation, and a tiny-model run."""

from __future__ import annotations

import pytest
import torch
import yaml
from conftest import tiny_llama
from helpers import ROOT, compose_cfg, preflight_overrides, tiny_overrides

from esparse.masks import Pattern, check, check_weights, make_mask
from esparse.pruning import PruneSpec, prune_model
from esparse.quant import (
    OPTIONS,
    apply,
    awq,
    awq_scales,
    fake_quant,
    gptq,
    minmax_grid,
    output_error,
    rtn,
)
from esparse.records.hashing import config_hash
from esparse.run.baseline import dense_config
from esparse.run.config import ConfigError, normalize, validate
from esparse.run.pipeline import run
from esparse.stats import ChannelStats

F64 = torch.float64


def _row(values):
    return torch.tensor([values], dtype=F64)


# ------------------------------------------------------------------------------------------------- RTN
def test_rtn_on_a_hand_computed_grid():
    """[-1.5, 0.7, 6.0, 2.2] at 4 bits: scale = (6 + 1.5) / 15 = 0.5, zero = 3; 0.7 → 1.4 → 1 → 0.5,
    2.2 → 4.4 → 4 → 2.0; the ends are grid points."""
    assert torch.equal(rtn(_row([-1.5, 0.7, 6.0, 2.2]), bits=4, group_size=-1), _row([-1.5, 0.5, 6.0, 2.0]))
    # groups of 2: [-1.5, 0.7] and [6.0, 2.2] get grids of their own (0 always in the range)
    s1, s2 = 2.2 / 15, 6.0 / 15
    want = _row([-10 * s1, 5 * s1, 15 * s2, round(2.2 / s2) * s2])
    assert torch.allclose(rtn(_row([-1.5, 0.7, 6.0, 2.2]), bits=4, group_size=2), want)


def test_rtn_grid_spans_the_kept_weights_and_pruned_stay_zero():
    w, mask = _row([-1.5, 0.7, 6.0, 100.0]), torch.tensor([[True, True, True, False]])
    assert torch.equal(rtn(w, 4, -1, mask), _row([-1.5, 0.5, 6.0, 0.0]))  # the grid of [-1.5, 6]
    # without the mask 100 sets the scale (101.5 / 15): 0.7 rounds to 0
    assert rtn(w, 4, -1)[0, 1] == 0


def test_rtn_stays_on_at_most_2_to_the_bits_values_per_group():
    w = torch.randn(8, 64, generator=torch.Generator().manual_seed(0))
    for bits in (4, 8):
        q = rtn(w, bits, 16)
        assert all(len(torch.unique(g)) <= 2**bits for g in q.reshape(8, 4, 16).reshape(32, 16))
    assert (rtn(w, 8, 16) - w).abs().max() < (rtn(w, 4, 16) - w).abs().max()
    assert rtn(torch.zeros(2, 4), 4, -1).eq(0).all()  # an all-zero row: no 0/0


def test_a_kept_weight_that_rounds_to_zero_is_counted():
    w, mask = _row([-1.5, 0.1, 6.0, 2.2]).float(), torch.tensor([[True, True, False, True]])
    q, rounded = apply("rtn", w, mask, None, None, {"bits": 4, "group_size": -1})
    # grid of [-1.5, 2.2]: scale 3.7 / 15, 0.1 → 0.4 → 0
    assert q[0, 1] == 0 and q[0, 2] == 0 and rounded == 1


# ------------------------------------------------------------------------------------------------ GPTQ
def _layer(rows=16, c=64, n=512, seed=0, salient=None):
    """A random layer and the Hessian of correlated calibration inputs (optionally one loud channel)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, generator=g, dtype=F64) @ torch.randn(c, c, generator=g, dtype=F64) * 0.3
    if salient is not None:
        x[:, salient] *= 30
    w = torch.randn(rows, c, generator=g, dtype=F64)
    return w, 2 * x.T @ x / n, x.abs().mean(0)


def _naive_gptq(w, h, bits, group_size, mask, percdamp=0.01):
    """OBS one column at a time with an explicit inverse Hessian, shrunk after every column."""
    w, h = w.clone(), h.clone()
    h += percdamp * h.diagonal().mean() * torch.eye(h.shape[0], dtype=F64)
    hinv = torch.linalg.inv(h)
    out = torch.zeros_like(w)
    for j in range(w.shape[1]):
        if j % group_size == 0:
            scale, zero = minmax_grid(torch.where(mask[:, j : j + group_size], w[:, j : j + group_size], 0.0), bits)
        q = torch.where(mask[:, j], fake_quant(w[:, j], scale[:, 0], zero[:, 0], bits), 0.0)
        out[:, j] = q
        w[:, j:] -= ((w[:, j] - q) / hinv[j, j])[:, None] * hinv[j, j:][None, :]
        hinv = hinv - torch.outer(hinv[:, j], hinv[j, :]) / hinv[j, j]
    return out


def test_gptq_equals_the_naive_obs_loop_with_blocks_and_groups():
    w, h, _ = _layer(rows=6, c=32)
    mask = make_mask(w.abs(), "2:4")
    want = _naive_gptq(w * mask, h, 4, 8, mask)
    got = gptq(w * mask, h, bits=4, group_size=8, mask=mask, blocksize=4)  # blocks rounded up to the group
    assert torch.allclose(got, want, atol=1e-9)


@pytest.mark.parametrize(("group_size", "act_order"), [(-1, False), (16, False), (-1, True), (16, True)])
def test_gptq_keeps_the_2_4_mask_and_beats_rtn(group_size, act_order):
    w, h, _ = _layer()
    mask = make_mask(w.abs(), "2:4")
    pruned = w * mask
    q = gptq(pruned, h, 4, group_size, mask, act_order=act_order)
    assert check_weights([("layer", q)], "2:4").ok
    assert q[~mask].eq(0).all() and int(q.eq(0).sum()) >= int((~mask).sum())
    if not (act_order and group_size != -1):  # act_order groups columns by H_jj, not RTN's contiguous groups
        assert output_error(q - pruned, h) <= output_error(rtn(pruned, 4, group_size, mask) - pruned, h)


def test_gptq_at_8_bits_is_nearly_lossless():
    w, h, _ = _layer()
    q4, q8 = gptq(w, h, 4, 16), gptq(w, h, 8, 16)
    assert output_error(q8 - w, h) < output_error(q4 - w, h) / 100


# ------------------------------------------------------------------------------------------------- AWQ
@pytest.mark.parametrize("group_size", [-1, 16])
def test_awq_scales_the_salient_channel_and_beats_rtn(group_size):
    w, h, absmean = _layer(salient=3)
    mask = make_mask(w.abs(), "2:4")
    pruned = w * mask
    s, a = awq_scales(pruned, absmean, h, 4, group_size, grid=20, mask=mask)
    assert a > 0 and int(s.argmax()) == 3
    q = awq(pruned, absmean, h, 4, group_size, 20, mask)
    assert q[~mask].eq(0).all() and check_weights([("layer", q)], "2:4").ok
    assert output_error(q - pruned, h) < output_error(rtn(pruned, 4, group_size, mask) - pruned, h)


def test_awq_without_a_salient_channel_may_keep_plain_rtn():
    w, h, absmean = _layer()
    s, a = awq_scales(w, torch.ones_like(absmean), h, 4, 16, grid=20)
    assert a == 0 and torch.equal(s, torch.ones_like(s))  # equal activations: every a is s = 1


def test_channel_stats_absmean_streams():
    xs = [torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    st = ChannelStats.from_inputs(xs, entropy=False, absmean=True)
    assert torch.allclose(st.absmean, torch.cat([x.reshape(-1, 8) for x in xs]).abs().mean(0))
    with pytest.raises(RuntimeError, match="absmean=False"):
        _ = ChannelStats.from_inputs(xs, entropy=False).absmean


# ---------------------------------------------------------------------------------- the pruning loop
def _prune_tiny(pattern, quant, metric="wanda", **opts):
    model = tiny_llama()
    ids = torch.randint(0, 128, (4, 16), generator=torch.Generator().manual_seed(0))
    kw = {**OPTIONS[quant], "group_size": 16, **opts}
    spec = PruneSpec(metric=metric, pattern=Pattern.parse(pattern), quant=quant, quant_kwargs=kw)
    return model, prune_model(model, ids, spec, batch_size=2, progress=False)


def _on_grid(model, bits, group_size):
    """Every group of every linear holds at most 2^bits distinct values."""
    from esparse.models.adapters import get_adapter

    for _, lin in get_adapter(model).named_linears(model):
        w = lin.weight.detach()
        groups = w.reshape(w.shape[0], -1, group_size).reshape(-1, group_size)
        assert max(len(torch.unique(g)) for g in groups) <= 2**bits
    return True


@pytest.mark.parametrize("quant", ["rtn", "gptq", "awq"])
@pytest.mark.parametrize("order", ["prune_first", "quantize_first"])
def test_both_orders_keep_the_pattern_and_the_grid(quant, order):
    model, report = _prune_tiny("2:4", quant, order=order)
    assert check(model, "2:4").ok and _on_grid(model, 4, 16)
    assert set(report.quant) == {"rounded_to_zero", "seconds"} and report.quant["rounded_to_zero"] >= 0


def test_the_orders_differ_and_obs_is_quantized_after_it():
    first, _ = _prune_tiny("2:4", "gptq")
    second, _ = _prune_tiny("2:4", "gptq", order="quantize_first")
    assert any(
        not torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True)
    )
    model, _ = _prune_tiny("4:8", "gptq", metric="sparsegpt")  # SparseGPT's own update, then GPTQ
    assert check(model, "4:8").ok and _on_grid(model, 4, 16)
    with pytest.raises(ValueError, match="quantize_first"):
        PruneSpec(metric="wanda", pattern=Pattern.parse("2:4"), reconstruct=True, quant="rtn",
                  quant_kwargs={"order": "quantize_first"})  # fmt: skip


def test_dense_quantization_alone_is_the_reference_row():
    dense = tiny_llama()
    model, report = _prune_tiny("dense", "gptq", metric="magnitude")
    assert _on_grid(model, 4, 16)
    changed = [
        not torch.equal(a, b) for a, b in zip(dense.state_dict().values(), model.state_dict().values(), strict=True)
    ]
    assert any(changed) and report.quant["rounded_to_zero"] >= 0


# ------------------------------------------------------------------------------------ config and runs
def test_conf_group_holds_the_library_defaults():
    for name, opts in OPTIONS.items():
        assert yaml.safe_load((ROOT / "conf" / "quant" / f"{name}.yaml").read_text()) == {"name": name, **opts}
    assert yaml.safe_load((ROOT / "conf" / "quant" / "none.yaml").read_text()) == {"name": "none"}


def test_quant_none_is_hash_neutral_and_dense_quant_keeps_its_prune_stage():
    plain = normalize(compose_cfg(["metric=wanda"]))
    assert plain["quant"] == {"name": "none"}
    assert config_hash(plain) == config_hash({k: v for k, v in plain.items() if k != "quant"})
    gptq_cfg = normalize(compose_cfg(["metric=wanda", "quant=gptq"]))
    validate(gptq_cfg)
    assert config_hash(gptq_cfg) != config_hash(plain)
    dense = normalize(compose_cfg(["pattern=dense", "quant=rtn"]))
    validate(dense)
    assert "prune" in dense["stages"] and dense["calibration"] is not None
    assert dense_config(gptq_cfg)["quant"] == {"name": "none"}  # the baseline is the unquantized model
    assert config_hash(dense_config(gptq_cfg)) == config_hash(dense_config(plain))


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("quant.bits=3", "quant.bits"),
        ("quant.bits=16", "quant.bits"),
        ("quant.bits=4.0", "quant.bits"),
        ("quant.group_size=0", "quant.group_size"),
        ("quant.group_size=-2", "quant.group_size"),
        ("quant.order=after", "quant.order"),
        ("quant.name=int4", "quant.name"),
        ("quant.percdamp=-0.1", "quant.percdamp"),
        ("quant.blocksize=0", "quant.blocksize"),
        ("quant.act_order=maybe", "quant.act_order"),
        ("+quant.sym=true", "quant.sym"),
        ("metric.reconstruct=true quant.order=quantize_first", "quant.order"),
        ("pattern=dense quant.bits=2", "quant.bits"),
    ],
)
def test_bad_values_fail_naming_the_key(override, key):
    cfg = normalize(compose_cfg(["metric=wanda", "quant=gptq", *override.split()]))
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert any(p.startswith(key + ":") for p in err.value.problems), err.value.problems


def test_awq_grid_is_checked():
    with pytest.raises(ConfigError, match=r"quant\.grid: 0 must be an integer >= 1"):
        validate(normalize(compose_cfg(["quant=awq", "quant.grid=0"])))


def test_a_bad_value_fails_before_the_model_loads(tiny_model_dir, text_corpus, tmp_path, monkeypatch):
    overrides = preflight_overrides(tiny_model_dir, text_corpus, tmp_path, monkeypatch)
    with pytest.raises(ConfigError) as err:
        run(compose_cfg([*overrides, "quant=rtn", "quant.bits=3", "quant.group_size=0"]))
    assert sorted(err.value.problems) == [
        "quant.bits: 3 must be 4 or 8",
        "quant.group_size: 0 must be -1 (per output channel) or an integer >= 1",
    ]


@pytest.mark.parametrize("extra", [["metric=wanda", "pattern=2:4"], ["pattern=dense"]])
def test_tiny_run_with_gptq_keeps_nm_and_says_fake_quant(tiny_model_dir, text_corpus, tmp_path, extra):
    overrides = tiny_overrides(tiny_model_dir, text_corpus, tmp_path / "results", tmp_path / "cache")
    rec = run(compose_cfg([*overrides, *extra, "quant=gptq", "quant.group_size=16"]))
    assert rec["status"] == "done" and "prune" in rec["stages_done"]
    assert rec["metrics"]["sparsity/pattern_ok"] is True and rec["metrics"]["ppl/wikitext2"] > 1
    details = rec["details"]["quant"]
    assert details["name"] == "gptq" and details["bits"] == 4 and details["group_size"] == 16
    assert details["order"] == "prune_first" and details["form"] == "fake-quant (dequantized weights)"
    assert details["rounded_to_zero"] == rec["metrics"]["quant/rounded_to_zero"]
    if "pattern=2:4" in extra:
        assert rec["metrics"]["sparsity/actual"] >= 0.5
