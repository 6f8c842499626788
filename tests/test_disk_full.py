"""A full disk names the file and the config key that chose it, ends the record ``failed`` with that
error where the record can still be written, and leaves no half-written file behind."""

from __future__ import annotations

import errno
import json

import pytest
from helpers import compose_cfg, tiny_overrides

from esparse.records import store
from esparse.records.store import WriteError
from esparse.run import pipeline


@pytest.fixture
def overrides(tiny_model_dir, text_corpus, tmp_path):
    return tiny_overrides(tiny_model_dir, text_corpus, tmp_path / "results", tmp_path / "cache")


def test_a_full_disk_at_a_record_write_names_the_record_and_results_dir(overrides, tmp_path, monkeypatch):
    real, full = store.write_json_atomic, {"left": 1}

    def write(path, data, compact=False):
        if "prune" in (data.get("stages_done") or []) and full["left"]:  # once, after the prune
            full["left"] -= 1
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data, compact)

    monkeypatch.setattr(store, "write_json_atomic", write)
    with pytest.raises(WriteError) as e:
        pipeline.run(compose_cfg([*overrides, "metric=wanda", "pattern=2:4"]))
    runs = tmp_path / "results" / "runs"
    assert str(e.value).startswith(f"results_dir={tmp_path / 'results'}: cannot write {runs}/")
    assert str(e.value).endswith(".json: No space left on device") and e.value.errno == errno.ENOSPC
    recs = [json.loads(p.read_text()) for p in runs.glob("*.json")]
    (rec,) = [r for r in recs if r["config"]["pattern"]["kind"] != "dense"]  # not the dense baseline
    assert rec["status"] == "failed" and "No space left on device" in rec["error"]
    assert not list(runs.glob(".*.tmp"))  # nothing half-written


def test_a_full_disk_at_the_checkpoint_names_save_dir(overrides, tmp_path, monkeypatch):
    import esparse.checkpoint

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(esparse.checkpoint, "save_pruned", full)
    save = tmp_path / "ckpt"
    with pytest.raises(WriteError, match=rf"save_dir={save}: cannot write {save}: No space left on device"):
        pipeline.run(compose_cfg([*overrides, "metric=wanda", "pattern=2:4", f"save_dir={save}"]))
    recs = [json.loads(p.read_text()) for p in (tmp_path / "results" / "runs").glob("*.json")]
    (rec,) = [r for r in recs if r["config"]["save_dir"]]  # not the dense baseline
    assert rec["status"] == "failed" and rec["stage"] == "save" and "prune" in rec["stages_done"]
