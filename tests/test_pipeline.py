"""End to end on a tiny random model: record schema, resume/skip, failure records."""

from __future__ import annotations

import json

import pytest
from helpers import compose_cfg, tiny_overrides

from esparse.records import hashing, store
from esparse.run.config import normalize
from esparse.run.pipeline import run
from esparse.run.record import summary_row


@pytest.fixture
def overrides(tiny_model_dir, text_corpus, tmp_path):
    return tiny_overrides(tiny_model_dir, text_corpus, tmp_path / "results", tmp_path / "cache")


def test_run_writes_complete_record(overrides, tmp_path):
    rec = run(compose_cfg(overrides + ["metric=wanda", "pattern=2:4"]))
    assert rec["status"] == "done"
    path = tmp_path / "results" / "runs" / f"{rec['config_hash']}.json"
    on_disk = json.loads(path.read_text())
    assert on_disk["config_hash"] == hashing.config_hash(on_disk["config"])
    for key in ("config", "config_hash", "metrics", "timings", "env", "status"):
        assert key in on_disk
    m = on_disk["metrics"]
    assert m["sparsity/actual"] == pytest.approx(0.5)
    assert m["sparsity/pattern_ok"] is True
    assert m["ppl/wikitext2"] > 1 and m["dense/ppl/wikitext2"] > 1
    assert m["ppl/wikitext2"] != m["dense/ppl/wikitext2"]
    assert m["permutation/retained_before"] == m["permutation/retained_after"]
    assert m["permutation/fallbacks"] == 0
    for group in on_disk["details"]["groups"].values():  # what wanda read from the calibration pass
        assert group["x_norm_l2_mean"] > group["x_norm_wanda_mean"] > 0 and group["fell_back"] is False
    assert on_disk["env"]["versions"]["torch"]
    assert len(list((tmp_path / "results" / "runs").glob("*.json"))) == 2  # + the dense baseline record
    # every timed stage also has its peak memory; on CPU there is no device peak to claim
    assert set(on_disk["memory"]) == set(on_disk["timings"])
    for peaks in on_disk["memory"].values():
        assert peaks["host_peak_gb"] > 0.01 and peaks["device_peak_gb"] is None
    row = summary_row(on_disk)
    assert row["metric"] == "wanda" and row["pattern"] == "2:4"
    assert row["peak_host_gb"] == round(max(p["host_peak_gb"] for p in on_disk["memory"].values()), 2)
    assert "peak_device_gb" not in row


def test_finished_config_is_skipped_unless_forced(overrides):
    cfg = compose_cfg(overrides + ["metric=magnitude"])
    first = run(cfg)
    again = run(cfg)
    assert again["env"]["started_at"] == first["env"]["started_at"]  # not recomputed
    forced = run({**cfg, "force": True})
    assert forced["config_hash"] == first["config_hash"]
    assert forced["metrics"]["ppl/wikitext2"] == pytest.approx(first["metrics"]["ppl/wikitext2"], rel=1e-6)


def test_failure_leaves_failed_record(overrides, tmp_path, monkeypatch):
    import esparse.pruning as pruning

    def boom(*a, **k):
        raise RuntimeError("injected crash")

    monkeypatch.setattr(pruning, "prune_model", boom)
    cfg = compose_cfg(overrides + ["metric=wanda"])
    with pytest.raises(RuntimeError, match="injected"):
        run(cfg)
    rec = store.read_record(store.record_path(tmp_path / "results", hashing.config_hash(normalize(cfg))))
    assert rec["status"] == "failed" and "injected crash" in rec["error"]
    assert "dense/ppl/wikitext2" in rec["metrics"]  # what was computed before the crash is kept
    monkeypatch.undo()
    assert run(cfg)["status"] == "done"  # a re-run redoes the failed config


def test_save_format_nm_writes_a_compressed_checkpoint_that_reloads_exactly(overrides, tmp_path):
    import torch

    from esparse.compressed import load_compressed
    from esparse.models import get_adapter
    from esparse.run.config import ConfigError, validate

    ckpt = tmp_path / "nm"
    cfg = compose_cfg(
        overrides + ["metric=wanda", "pattern=2:4", "shuffle=ria_cp", f"save_dir={ckpt}", "save_format=nm"]
    )
    rec = run(cfg)
    assert rec["metrics"]["save/file_bytes"] == (ckpt / "esparse-nm.safetensors").stat().st_size
    model, _, sidecar = load_compressed(ckpt)  # re-verifies 2:4 in each layer's permuted order
    assert sidecar["config_hash"] == rec["config_hash"] and sidecar["permutations"]
    assert all(
        torch.count_nonzero(lin.weight) * 2 == lin.weight.numel() for _, lin in get_adapter(model).named_linears(model)
    )
    bad = normalize(compose_cfg(overrides + ["pattern=unstructured", f"save_dir={ckpt}", "save_format=nm"]))
    with pytest.raises(ConfigError, match="save_format: 'nm' needs an N:M pattern"):
        validate(bad)


def test_dense_baseline_record_never_claims_zero_shot_it_did_not_run(overrides, tmp_path):
    from esparse.run.baseline import baseline_config

    zs = ["eval.zeroshot.tasks=[piqa_local]", "eval.zeroshot.limit=5"]
    cfg = normalize(compose_cfg(overrides + ["metric=wanda"] + zs))
    base = baseline_config(cfg)
    assert base["eval"]["zeroshot"]["tasks"] == [] and base["pattern"]["kind"] == "dense"
    # the ppl-only baseline is the same record whether or not the pruned run also asked for zero-shot
    ppl_only = normalize(compose_cfg(overrides + ["eval.zeroshot.limit=5"]))
    assert hashing.config_hash(base) == hashing.config_hash(baseline_config(ppl_only))
    # a zero-shot-only run (no perplexity datasets) writes no dense baseline record at all
    import esparse.evaluation.zeroshot as zmod

    def fake_zeroshot(model, tok, zcfg):
        return {"zeroshot/piqa_local/acc": 0.5, "zeroshot/avg/acc": 0.5}, {}

    mp = pytest.MonkeyPatch()
    mp.setattr(zmod, "evaluate_zeroshot", fake_zeroshot)
    try:
        rec = run(compose_cfg(overrides + ["metric=magnitude", "eval.ppl.datasets=[]"] + zs))
    finally:
        mp.undo()
    assert rec["metrics"]["zeroshot/avg/acc"] == 0.5
    assert [p.stem for p in (tmp_path / "results" / "runs").glob("*.json")] == [rec["config_hash"]]


def test_dense_baseline_is_reused_only_from_this_machine_kind_and_lock(overrides, tmp_path):
    from esparse.run.baseline import baseline_config

    cfg = compose_cfg(overrides + ["metric=magnitude", "pattern=2:4"])
    first = run(cfg)
    origin = first["details"]["dense_baseline"]
    assert origin["source"] == "computed" and origin["saved"] is True and origin["not_reused_because"] is None
    dense_path = store.record_path(tmp_path / "results", origin["config_hash"])
    assert origin["config_hash"] == hashing.config_hash(baseline_config(normalize(cfg)))
    # a second pruned config of the same model reuses the stored number, and says so
    second = run(compose_cfg(overrides + ["metric=wanda", "pattern=2:4"]))
    assert second["details"]["dense_baseline"]["source"] == "record"
    assert second["metrics"]["dense/ppl/wikitext2"] == first["metrics"]["dense/ppl/wikitext2"]
    # the stored dense record made on another machine kind: computed again, the stored one kept as it was
    stored = json.loads(dense_path.read_text())
    stored["env"]["cpu"]["model"] = "Some Other CPU"
    stored["metrics"]["ppl/wikitext2"] = 1e9  # so a reuse would show
    dense_path.write_text(json.dumps(stored))
    before = dense_path.read_bytes()
    third = run(compose_cfg(overrides + ["metric=wanda", "pattern=2:4", "force=true"]))
    origin = third["details"]["dense_baseline"]
    assert origin["source"] == "computed" and origin["saved"] is False
    assert "Some Other CPU" in origin["not_reused_because"]
    assert third["metrics"]["dense/ppl/wikitext2"] == first["metrics"]["dense/ppl/wikitext2"]
    assert dense_path.read_bytes() == before
