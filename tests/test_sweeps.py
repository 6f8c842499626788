"""Real run.py subprocesses: two sweeps on one results dir split the work; Ctrl-C prints no
traceback and the same command resumes to the numbers of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import ROOT, tiny_overrides

POINTS = ("magnitude", "wanda", "ria", "ri")


def _cmd(over: list[str], sweep_dir) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "run.py"),
        "-m",
        f"metric={','.join(POINTS)}",
        *over,
        f"hydra.sweep.dir={sweep_dir}",
    ]


def _numbers(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if "seconds" not in k}  # wall times differ run to run


def _pruned(runs_dir) -> dict[str, dict]:
    recs = {p.name: json.loads(p.read_text()) for p in runs_dir.glob("*.json")}
    return {k: r for k, r in recs.items() if r["config"]["pattern"]["kind"] != "dense"}


@pytest.mark.slow
def test_two_sweeps_on_one_results_dir_split_the_work(tiny_model_dir, text_corpus, tmp_path):
    over = tiny_overrides(tiny_model_dir, text_corpus, tmp_path / "results", tmp_path / "cache")
    env = {**os.environ, "WANDB_MODE": "disabled"}
    out = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    procs = [subprocess.Popen(_cmd(over, tmp_path / f"m{i}"), cwd=tmp_path, env=env, **out) for i in range(2)]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), logs
    recs = _pruned(tmp_path / "results" / "runs")
    assert len(recs) == len(POINTS) and all(r["status"] == "done" for r in recs.values())
    computed = [len(POINTS) - log.count("skip: ") for log in logs]  # a point not skipped was computed
    assert sum(computed) == len(POINTS), logs  # every point computed once, by one of the two
    assert {r["env"]["pid"] for r in recs.values()} <= {p.pid for p in procs}
    assert not list((tmp_path / "results" / "runs").glob("*.lock"))


@pytest.mark.slow
def test_ctrl_c_prints_no_traceback_and_the_rerun_resumes(tiny_model_dir, text_corpus, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "ESPARSE_DEBUG")}
    env["WANDB_MODE"] = "disabled"
    ref_over = tiny_overrides(tiny_model_dir, text_corpus, tmp_path / "ref", tmp_path / "cache_ref")
    subprocess.run(
        _cmd(ref_over, tmp_path / "mref"), cwd=tmp_path, env=env, check=True, capture_output=True, timeout=600
    )
    reference = {r["config_hash"]: _numbers(r["metrics"]) for r in _pruned(tmp_path / "ref" / "runs").values()}

    over = tiny_overrides(tiny_model_dir, text_corpus, tmp_path / "results", tmp_path / "cache")
    cmd = _cmd(over, tmp_path / "m")
    out = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}  # Hydra logs to stdout
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, **out)
    deadline = time.time() + 300
    while time.time() < deadline and not list((tmp_path / "results" / "runs").glob("*.lock")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # while a point is claimed, i.e. being computed
    err, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "interrupted" in err

    subprocess.run(cmd, cwd=tmp_path, env=env, check=True, capture_output=True, timeout=600)
    after = {r["config_hash"]: _numbers(r["metrics"]) for r in _pruned(tmp_path / "results" / "runs").values()}
    assert after == reference  # every number as in the run that was never interrupted
