"""Every numeric key has a finite range, checked before the model loads, every problem at once; sizes
the host cannot hold are refused with the projection; sizes a corpus caps are recorded."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import ROOT, compose_cfg, preflight_overrides, tiny_overrides

from esparse.run import preflight_memory
from esparse.run.config import ConfigError
from esparse.run.pipeline import run


@pytest.fixture
def overrides(tiny_model_dir, text_corpus, tmp_path, monkeypatch):
    return preflight_overrides(tiny_model_dir, text_corpus, tmp_path, monkeypatch)


def _problems(overrides: list[str]) -> list[str]:
    with pytest.raises(ConfigError) as e:
        run(compose_cfg(overrides))
    return e.value.problems


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["metric=ria", "metric.a=nan"], "metric.a: nan is not a finite number"),
        (["metric=ria", "metric.a=-inf"], "metric.a: -inf is not a finite number"),
        (["metric=esparse", "metric.alpha=inf"], "metric.alpha: inf is not a finite number"),
        (["reconstruction.percdamp=nan"], "reconstruction.percdamp: nan is not a finite number"),
        (
            ["shuffle=esparse", "shuffle.block=2"],
            "shuffle.block: 2 is smaller than pattern.m=4; a block holds whole groups of m channels",
        ),
        (["shuffle=ria_cp_lsa", "shuffle.communities=0"], "shuffle.communities: 0 must be an integer >= 1"),
        (
            ["shuffle=ria_cp_lsa", "shuffle.communities=fast"],
            "shuffle.communities: 'fast' must be an integer >= 1, null or 'official'",
        ),
        (["shuffle=ria_cp_lsa", "shuffle.community_size=0"], "shuffle.community_size: 0 must be an integer >= 1"),
        (["shuffle=lsa_relabel", "shuffle.rounds=0"], "shuffle.rounds: 0 must be an integer >= 1"),
        (["shuffle=lsa_relabel", "shuffle.seed=-1"], "shuffle.seed: -1 must be an integer >= 0"),
        (["eval.ppl.seqlen=1"], "eval.ppl.seqlen: 1 must be >= 2 (a window of one token predicts nothing)"),
        (["pattern.tie_seed=-1"], "pattern.tie_seed: -1 must be an integer >= 0"),
    ],
)
def test_a_number_out_of_its_range_is_refused_naming_key_and_value(overrides, extra, expected):
    assert _problems(overrides + extra) == [expected]


def test_every_range_problem_is_reported_at_once(overrides):
    problems = _problems(overrides + ["metric=ria", "metric.a=nan", "reconstruction.percdamp=inf", "eval.ppl.seqlen=1"])
    assert sorted(problems) == [
        "eval.ppl.seqlen: 1 must be >= 2 (a window of one token predicts nothing)",
        "metric.a: nan is not a finite number",
        "reconstruction.percdamp: inf is not a finite number",
    ]


def test_the_cli_exits_2_naming_the_key(tmp_path):
    cmd = [sys.executable, str(ROOT / "run.py"), "metric=ria", "metric.a=nan", "logger=none", f"results_dir={tmp_path}"]
    cmd += [f"hydra.run.dir={tmp_path / 'out'}"]
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "ESPARSE_DEBUG")}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2 and "metric.a: nan is not a finite number" in out.stdout + out.stderr
    assert "Traceback" not in out.stderr


def test_calibration_the_host_cannot_hold_is_refused_with_the_projection(overrides, monkeypatch):
    monkeypatch.setattr(preflight_memory, "available_host_bytes", lambda: 30_000)
    problems = _problems(overrides + ["stages=[prune]"])
    assert problems == [
        "calibration.nsamples × calibration.seqlen: 4 × 32 = 128 tokens: their activations need 2 × 128 × 32 "
        "(hidden) × 4 bytes = 3.28e-05 GB on the host, more than its 3e-05 GB available (MemAvailable); lower "
        "calibration.nsamples or calibration.seqlen"
    ]
    monkeypatch.setattr(preflight_memory, "available_host_bytes", lambda: 40_000)  # enough for the calibration ...
    (problem,) = _problems(overrides + ["stages=[eval]", "eval.ppl.batch_size=1"])  # ... not for the logits
    assert problem.startswith("eval.ppl.batch_size × eval.ppl.seqlen: 1 × 32 = 32 tokens per batch need 32 × 4 × 32")
    # 32 x 4 x 32 x 4 bytes of hidden states + 2 x 32 tokens (one head chunk: the window) x 49152 x 4 bytes of logits
    assert "(vocab) × 4 bytes of logits = 0.0126 GB on the host, more than its 4e-05 GB available" in problem


def test_a_corpus_shorter_than_eval_nsamples_is_recorded_and_warned(tiny_model_dir, text_corpus, tmp_path, caplog):
    over = tiny_overrides(tiny_model_dir, text_corpus, tmp_path / "results", tmp_path / "cache")
    rec = run(compose_cfg(over + ["stages=[eval]", "eval.ppl.nsamples=100000"]))
    used = rec["details"]["eval_used"]["wikitext2"]
    assert used["nsamples_requested"] == 100000 and 1 <= used["nsamples"] < 100000 and used["seqlen"] == 32
    assert f"eval.ppl.nsamples=100000 but corpus 'wikitext2' has only {used['nsamples']} windows" in caplog.text


def test_a_sweep_with_one_bad_point_fails_before_any_point_runs(tiny_model_dir, text_corpus, tmp_path):
    over = tiny_overrides(tiny_model_dir, text_corpus, tmp_path / "results", tmp_path / "cache")
    over = [o for o in over if not o.startswith("calibration.nsamples=")]
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", "calibration.nsamples=4,0", *over]
    cmd += [f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "ESPARSE_DEBUG")}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    text = out.stdout + out.stderr
    assert out.returncode == 2, text[-3000:]
    assert "invalid sweep (no point was run)" in text
    assert "point calibration.nsamples=0" in text and "calibration.nsamples: 0 must be an integer >= 1" in text
    assert "Traceback" not in text
    assert not list((tmp_path / "results" / "runs").glob("*.json"))  # the good first point did not run
    cmd[3] = "calibration.nsamples=4,2"  # a clean sweep: validated up front, then run
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert out.returncode == 0 and "not validated up front" not in out.stdout + out.stderr, out.stderr[-3000:]
    assert len(list((tmp_path / "results" / "runs").glob("*.json"))) == 3  # two points and their dense baseline
