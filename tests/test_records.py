"""Records that cannot be read are moved aside, never crash or get silently replaced; a point being
computed is claimed, so two sweeps on one results dir split the work."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from helpers import compose_cfg, tiny_overrides

from esparse.records import claims, hashing, store
from esparse.run.config import normalize
from esparse.run.pipeline import run


@pytest.fixture
def cfg(tiny_model_dir, text_corpus, tmp_path):
    return compose_cfg(tiny_overrides(tiny_model_dir, text_corpus, tmp_path / "results", tmp_path / "cache"))


def _path(cfg):
    c = normalize(cfg)
    return store.record_path(c["results_dir"], hashing.config_hash(c))


@pytest.mark.parametrize(
    "bad",
    [b"\xff\xfe\x00 not utf-8", b"[1, 2, 3]", b'{"status": "do', "directory"],
    ids=["not-utf8", "not-an-object", "truncated", "directory"],
)
def test_unreadable_record_is_moved_aside_and_recomputed(cfg, bad, caplog):
    path = _path(cfg)
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
    path = _path(cfg)
    path.parent.mkdir(parents=True)
    claims.lock_path(path).write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))
    assert run(cfg) is None
    assert not path.exists()  # nothing computed, nothing written
