"""Records: stable semantic hash, atomic writes that survive a crash mid-write."""

from __future__ import annotations

import json

import pytest

from esparse.records import hashing, memory, store, wandb_logger


def test_hash_ignores_non_semantic_keys():
    a = {"model": {"name": "x"}, "metric": {"name": "wanda"}, "results_dir": "r1", "logger": {"name": "none"}}
    b = {
        "metric": {"name": "wanda"},
        "model": {"name": "x"},
        "results_dir": "r2",
        "logger": {"name": "wandb"},
    }
    c = {"model": {"name": "x"}, "metric": {"name": "esparse"}}
    assert hashing.config_hash(a) == hashing.config_hash(b)
    assert hashing.config_hash(a) != hashing.config_hash(c)
    assert len(hashing.config_hash(a)) == 12


def test_atomic_write_survives_crash(tmp_path, monkeypatch):
    path = tmp_path / "runs" / "abc.json"
    store.write_json_atomic(path, {"status": "done", "metrics": {"ppl": 1.0}})

    real_dump = json.dump

    def crashing_dump(obj, fh, **kw):
        fh.write('{"status": "half')  # part of the file is written, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(json, "dump", crashing_dump)
    with pytest.raises(KeyboardInterrupt):
        store.write_json_atomic(path, {"status": "running"})
    monkeypatch.setattr(json, "dump", real_dump)
    assert json.loads(path.read_text()) == {"status": "done", "metrics": {"ppl": 1.0}}
    assert [p.name for p in path.parent.iterdir()] == ["abc.json"]  # no temp file left behind
    assert store.is_done(path)


def test_unreadable_record_is_not_done(tmp_path):
    p = tmp_path / "x.json"
    p.write_text('{"status": "do')
    assert store.read_record(p) is None and not store.is_done(p)


def test_flatten():
    assert wandb_logger.flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a.b": 1, "a.c.d": 2, "e": 3}


@pytest.mark.skipif(memory.host_rss_bytes() is None, reason="needs /proc/self/statm")
def test_peak_memory_sees_a_transient_allocation():
    """A 256 MB buffer allocated, touched and freed inside the block shows in the peak, not after."""
    import time

    import torch

    before = memory.host_rss_bytes()
    with memory.PeakMemory("cpu", interval=0.005) as pm:
        buf = torch.ones(64 * 2**20, dtype=torch.float32)  # 256 MiB, written so the pages are resident
        time.sleep(0.1)
        del buf
    assert pm.device_peak is None  # CPU: no accelerator peak is claimed
    assert pm.host_peak - before >= 200 * 2**20
    assert pm.as_dict()["host_peak_gb"] == round(pm.host_peak / 1e9, 4)


def test_a_run_logs_one_wandb_history_step_per_pruned_block(tiny_model_dir, text_corpus, tmp_path, monkeypatch):
    """The dashboard has something to browse: the offline run's file holds a ``block/*`` step per
    decoder block (sparsity, retained score against its bound, seconds), read back from disk."""
    from helpers import compose_cfg, tiny_overrides, wandb_history

    from esparse.run.pipeline import run

    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = tiny_overrides(tiny_model_dir, text_corpus, tmp_path / "results", tmp_path / "cache")
    cfg = [o for o in cfg if not o.startswith("logger")] + ["logger=wandb", f"logger.dir={tmp_path / 'wb'}"]
    rec = run(compose_cfg([*cfg, "metric=wanda", "pattern=2:4", "shuffle=ria_cp_lsa"]))
    (run_file,) = (tmp_path / "wb").glob("wandb/offline-run-*/run-*.wandb")
    steps = [s for s in wandb_history(run_file) if "block/sparsity" in s]
    blocks = rec["details"]["loaded_arch"]["num_hidden_layers"]
    assert [int(s["_step"]) for s in steps] == list(range(blocks))
    for s in steps:
        assert float(s["block/sparsity"]) == pytest.approx(0.5)
        after, bound = float(s["block/retained_after"]), float(s["block/upper_bound"])
        assert float(s["block/retained_before"]) <= after <= bound + 1e-6
        assert float(s["block/retained_after_of_bound"]) == pytest.approx(after / bound)
        assert float(s["block/seconds"]) > 0
