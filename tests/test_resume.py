"""Kill -9 a real sweep subprocess mid-way; the same command then finishes only what is missing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import ROOT, tiny_overrides


def _sweep(overrides: list[str]) -> list[str]:
    return [sys.executable, str(ROOT / "run.py"), "-m", "metric=magnitude,wanda,ria", "pattern=2:4", *overrides]


def _done(runs_dir) -> dict[str, dict]:
    out = {}
    for p in runs_dir.glob("*.json"):
        rec = json.loads(p.read_text())  # every file on disk must parse: no half-written records
        if rec["status"] == "done" and rec["config"]["pattern"]["kind"] != "dense":
            out[p.name] = rec
    return out


@pytest.mark.slow
def test_kill_and_resume(tiny_model_dir, text_corpus, tmp_path):
    results = tmp_path / "results"
    cmd = _sweep(tiny_overrides(tiny_model_dir, text_corpus, results, tmp_path / "cache"))
    cmd += [f"hydra.sweep.dir={tmp_path / 'multirun'}"]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and not _done(results / "runs") and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)  # mid-sweep: one run finished, the next one under way
    proc.wait()
    first = _done(results / "runs")
    assert len(first) == 1
    ((name, rec),) = first.items()

    subprocess.run(cmd, cwd=tmp_path, env=env, check=True, capture_output=True, timeout=300)
    after = _done(results / "runs")
    assert len(after) == 3  # magnitude, wanda, ria
    assert after[name]["env"]["started_at"] == rec["env"]["started_at"]  # the finished run was not redone
    assert {r["config"]["metric"]["name"] for r in after.values()} == {"magnitude", "wanda", "ria"}
    assert not list((results / "runs").glob(".*.tmp"))


@pytest.mark.slow
def test_submitit_local_launcher_runs_each_point_as_a_job(tiny_model_dir, text_corpus, tmp_path):
    """The cluster path without a cluster: submitit pickles the task function, runs each sweep point
    in its own process, and every point writes its record."""
    results = tmp_path / "results"
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", "hydra/launcher=local_submitit", "metric=magnitude,wanda"]
    cmd += tiny_overrides(tiny_model_dir, text_corpus, results, tmp_path / "cache")
    cmd += ["pattern=2:4", f"hydra.sweep.dir={tmp_path / 'multirun'}"]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert {r["config"]["metric"]["name"] for r in _done(results / "runs").values()} == {"magnitude", "wanda"}
    assert list((tmp_path / "multirun").rglob("*_submitted.pkl"))  # really went through submitit
