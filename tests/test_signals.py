"""SIGTERM and SIGHUP stop a run as Ctrl-C does (record ``interrupted`` with its stage, claim released,
exit 143/129, a resume hint); claims carry a heartbeat, and a lock whose heartbeat is old is taken
over, whichever host wrote it, so no point is skipped forever."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from helpers import ROOT, compose_cfg, record_path_of, tiny_cfg, tiny_overrides

from esparse.records import claims
from esparse.run.config import normalize
from esparse.run.pipeline import run

#: run.py with the prune slowed down, so a signal reliably lands inside it
SLOW_PRUNE = """
import runpy, sys, time
import esparse.run.calibration as cal
real = cal.prune
def slow(*a, **k):
    print("PRUNING", flush=True)
    time.sleep(120)
    return real(*a, **k)
cal.prune = slow
sys.argv = [sys.argv[1], *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.fixture
def cfg(tiny_model_dir, text_corpus, tmp_path):
    return tiny_cfg(tiny_model_dir, text_corpus, tmp_path)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_mid_prune_ends_the_record_interrupted_and_releases_the_claim(
    tiny_model_dir, text_corpus, tmp_path, sig, code
):
    over = tiny_overrides(tiny_model_dir, text_corpus, tmp_path / "results", tmp_path / "cache")
    script = tmp_path / "slow_run.py"
    script.write_text(SLOW_PRUNE)
    cmd = [sys.executable, str(script), str(ROOT / "run.py"), *over, f"hydra.run.dir={tmp_path / 'out'}"]
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "ESPARSE_DEBUG")}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = ""
    while "PRUNING" not in seen:
        line = proc.stdout.readline()
        assert line or proc.poll() is None, seen
        seen += line
    proc.send_signal(sig)
    out = seen + proc.communicate(timeout=120)[0]
    assert proc.returncode == code, out[-3000:]
    assert "Traceback" not in out
    (hint,) = [ln for ln in out.splitlines() if "interrupted by" in ln]
    assert f"interrupted by {sig.name}" in hint and "re-run the same command to resume" in hint
    rec = json.loads(record_path_of(compose_cfg(over)).read_text())
    assert rec["status"] == "interrupted"
    assert rec["interrupted"]["by"] == sig.name and rec["interrupted"]["stage"] == "prune"
    assert not list((tmp_path / "results" / "runs").glob("*.lock"))
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # this process's handlers are untouched


def test_an_interrupted_record_is_resumed_by_the_same_command(cfg, monkeypatch):
    import esparse.run.calibration as cal
    from esparse.run.record import Interrupted

    def stopped(*a, **k):
        raise Interrupted(signal.SIGTERM)

    real = cal.prune
    monkeypatch.setattr(cal, "prune", stopped)
    with pytest.raises(Interrupted):
        run(cfg)
    path = record_path_of(cfg)
    stopped_rec = json.loads(path.read_text())
    assert stopped_rec["status"] == "interrupted"
    assert (stopped_rec["interrupted"]["by"], stopped_rec["interrupted"]["stage"]) == ("SIGTERM", "prune")
    assert not claims.lock_path(path).exists()
    monkeypatch.setattr(cal, "prune", real)
    assert run(cfg)["status"] == "done"


def _lock(path, age_s: float, host: str = "another-host", pid: int = 1, heartbeat: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {"pid": pid, "host": host, "started_at": "t"}
    if heartbeat:
        info["heartbeat"] = time.time() - age_s
    claims.lock_path(path).write_text(json.dumps(info))
    if not heartbeat:
        os.utime(claims.lock_path(path), (time.time() - age_s, time.time() - age_s))


def test_a_lock_of_another_host_with_an_old_heartbeat_is_taken_over(tmp_path, monkeypatch, caplog):
    rec = tmp_path / "runs" / "abc.json"
    _lock(rec, age_s=60)
    assert claims.claim(rec, "t") is None  # another host, heartbeat a minute old: alive
    _lock(rec, age_s=claims.DEFAULT_STALE_S + 60)
    c = claims.claim(rec, "t")
    assert c is not None and claims.owner(rec)["host"] == socket.gethostname()
    assert "no heartbeat for" in caplog.text and "taking it over" in caplog.text
    c.release()
    _lock(rec, age_s=claims.DEFAULT_STALE_S + 60, heartbeat=False)  # an old-format lock: its mtime counts
    assert claims.claim(rec, "t") is not None
    monkeypatch.setenv("ESPARSE_LOCK_STALE_S", "30")
    _lock(rec, age_s=60)
    assert claims.claim(rec, "t") is not None
    monkeypatch.setenv("ESPARSE_LOCK_STALE_S", "nan")
    with pytest.raises(ValueError, match="ESPARSE_LOCK_STALE_S='nan': expected a positive number of seconds"):
        claims.stale_s()


def test_a_held_lock_gets_a_heartbeat_and_is_removed_on_release(tmp_path, monkeypatch):
    monkeypatch.setenv("ESPARSE_LOCK_HEARTBEAT_S", "0.05")
    rec = tmp_path / "runs" / "abc.json"
    c = claims.claim(rec, "t")
    first = claims.owner(rec)["heartbeat"]
    deadline = time.time() + 10
    while claims.owner(rec)["heartbeat"] == first and time.time() < deadline:
        time.sleep(0.02)
    assert claims.owner(rec)["heartbeat"] > first and claims.owner(rec)["age_s"] < 5
    c.release()
    assert claims.owner(rec) is None and not c._thread.is_alive()
    assert not list(rec.parent.glob(".*.tmp"))


@pytest.mark.parametrize("status", ["running", "interrupted"])
def test_an_unfinished_record_whose_lock_is_left_over_is_recomputed(cfg, status):
    """A run killed (-9) or on a host that died leaves a record and its lock: not skipped forever."""
    path = record_path_of(cfg)
    c = normalize(cfg)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"config": c, "config_hash": path.stem, "status": status, "metrics": {}}))
    _lock(path, age_s=claims.DEFAULT_STALE_S + 1)
    rec = run(cfg)
    assert rec is not None and rec["status"] == "done" and "ppl/wikitext2" in rec["metrics"]
    assert not claims.lock_path(path).exists()
