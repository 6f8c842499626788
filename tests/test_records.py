"""Records that cannot be read are moved aside, never crash or get silently replaced; a point being
computed is claimed, so two sweeps on one results dir split the work."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from helpers import record_path_of, tiny_cfg

from esparse.records import claims, hashing, store
from esparse.run.config import normalize
from esparse.run.pipeline import run


@pytest.fixture
def cfg(tiny_model_dir, text_corpus, tmp_path):
    return tiny_cfg(tiny_model_dir, text_corpus, tmp_path)


@pytest.mark.parametrize(
    "bad",
    [b"\xff\xfe\x00 not utf-8", b"[1, 2, 3]", b'{"status": "do', "directory"],
    ids=["not-utf8", "not-an-object", "truncated", "directory"],
)
def test_unreadable_record_is_moved_aside_and_recomputed(cfg, bad, caplog):
    path = record_path_of(cfg)
    path.parent.mkdir(parents=True)
    if bad == "directory":
        path.mkdir()
        (path / "inside").write_text("kept")
    else:
        path.write_bytes(bad)
    rec = run(cfg)
    assert rec["status"] == "done" and json.loads(path.read_text())["status"] == "done"
    (aside,) = path.parent.glob(f"{path.name}.corrupt-*")
    assert (aside / "inside").read_text() == "kept" if bad == "directory" else aside.read_bytes() == bad
    assert "moved aside" in caplog.text


def test_claim_is_exclusive_and_released(tmp_path):
    rec = tmp_path / "runs" / "abc.json"
    first = claims.claim(rec, "t0")
    assert first is not None and claims.owner(rec)["pid"] == os.getpid()
    assert claims.claim(rec, "t1") is None  # held by a live process (this one)
    first.release()
    assert claims.owner(rec) is None and claims.claim(rec, "t2") is not None


def test_stale_claim_of_a_dead_process_is_taken_over(tmp_path):
    rec = tmp_path / "runs" / "abc.json"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    rec.parent.mkdir(parents=True)
    claims.lock_path(rec).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    assert claims.claim(rec, "t") is not None
    claims.lock_path(rec).write_text(json.dumps({"pid": 1, "host": "another-host"}))
    assert claims.claim(rec, "t") is None  # another host: trusted


def test_a_point_claimed_by_a_live_process_is_skipped(cfg):
    path = record_path_of(cfg)
    path.parent.mkdir(parents=True)
    claims.lock_path(path).write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))
    assert run(cfg) is None
    assert not path.exists()  # nothing computed, nothing written


def _fake_done(cfg, **fields) -> dict:
    """A done record of ``cfg`` as the pipeline writes it, without computing anything."""
    c = normalize(cfg)
    rec = {"config": c, "config_hash": hashing.config_hash(c), "status": "done", "metrics": {"ppl/wikitext2": 1.0}}
    return {**rec, "timings": {}, "env": {}, "details": {}, "stages_done": ["prune", "eval"], **fields}


def test_another_configs_record_under_this_hash_is_moved_aside_and_recomputed(cfg, caplog):
    path = record_path_of(cfg)
    other = _fake_done({**cfg, "metric": {"name": "magnitude", "reconstruct": False}})
    assert other["config_hash"] != path.stem
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(other))
    rec = run(cfg)
    assert rec["config_hash"] == path.stem and rec["config"]["metric"]["name"] == cfg["metric"]["name"]
    assert json.loads(path.read_text())["config_hash"] == path.stem and rec["metrics"]["ppl/wikitext2"] != 1.0
    (aside,) = path.parent.glob(f"{path.name}.corrupt-*")
    assert json.loads(aside.read_text()) == other
    assert f"config_hash '{other['config_hash']}' is not its file name's '{path.stem}'" in caplog.text


@pytest.mark.parametrize(
    "fields, why",
    [
        ({"metrics": [1.0]}, "whose 'metrics' is a list, not an object"),
        ({"status": "finished"}, "with status 'finished', not one of"),
        ({"stages_done": "prune"}, "whose 'stages_done' is 'prune'"),
    ],
    ids=["metrics-list", "unknown-status", "stages-not-a-list"],
)
def test_a_malformed_done_record_is_moved_aside_not_trusted(cfg, caplog, fields, why):
    path = record_path_of(cfg)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(_fake_done(cfg, **fields)))
    rec = run(cfg)
    assert rec["status"] == "done" and isinstance(rec["metrics"], dict) and rec["metrics"]["ppl/wikitext2"] != 1.0
    assert len(list(path.parent.glob(f"{path.name}.corrupt-*"))) == 1
    assert why in caplog.text and "moved aside" in caplog.text
    from esparse.run.record import summary_row

    summary_row(rec)  # what run.py prints at the end: no traceback


def test_a_record_whose_config_is_not_its_hash_is_not_one():
    c = {"model": {"name": "x"}, "metric": {"name": "wanda"}}
    h = hashing.config_hash(c)
    assert store.invalid_why({"config": c, "config_hash": h, "status": "done"}, h) is None
    edited = {"config": {**c, "metric": {"name": "ria"}}, "config_hash": h, "status": "done"}
    assert "hashes to" in store.invalid_why(edited, h)
