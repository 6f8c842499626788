"""mean ± std over seeds and paired comparisons, against values computed by hand."""

from __future__ import annotations

import math

import pytest

from analysis.stats import seeds

WANDA = {0: 183.10, 1: 191.46, 2: 176.57}
RIA = {0: 172.28, 1: 166.27, 2: 168.24}


def test_summary_mean_and_sample_std():
    s = seeds.summarize(WANDA)
    assert s.n == 3
    assert s.mean == pytest.approx(551.13 / 3)
    # deviations -0.61, 7.75, -7.14 (to 2 dp): sum of squares 111.41 / (3 - 1) -> std 7.46
    assert s.std == pytest.approx(7.4641, abs=1e-3)
    assert s.format(1) == "183.7 ± 7.5 (3)"


def test_one_seed_claims_nothing():
    s = seeds.summarize({0: 183.1})
    assert s.format(1) == "183.1 (n=1)" and math.isnan(s.std)
    p = seeds.paired(s, seeds.summarize({0: 172.3}))
    assert p.n == 1 and not p.significant and p.verdict("ria", "wanda") == "n=1: no claim"


def test_paired_t_test_by_hand():
    # RIA - Wanda per seed: -10.82, -25.19, -8.33; mean -14.78, sd 9.10, t = mean / (sd / sqrt 3) = -2.81,
    # two-sided p with 2 degrees of freedom = 0.107: three wins of three are not significant at 0.05
    p = seeds.paired(seeds.summarize(RIA), seeds.summarize(WANDA))
    assert p.diffs == pytest.approx({0: -10.82, 1: -25.19, 2: -8.33})
    assert p.mean == pytest.approx(-14.78, abs=1e-2)
    assert p.p == pytest.approx(0.1067, abs=2e-3)
    assert p.verdict("ria", "wanda") == "ria vs wanda: not separable (p=0.11, n=3)"


def test_a_consistent_large_difference_is_significant_and_pairs_only_common_seeds():
    a = seeds.summarize({0: 100.0, 1: 110.0, 2: 90.0, 7: 1.0})  # seed 7 has no partner: ignored
    b = seeds.summarize({0: 150.0, 1: 161.0, 2: 139.0})
    p = seeds.paired(a, b)
    assert p.n == 3 and p.diffs == {0: -50.0, 1: -51.0, 2: -49.0}
    assert p.significant and p.p < 1e-3
    assert p.verdict("a", "b").startswith("a < b (p=")


def test_holm_adjustment_by_hand():
    # sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04, raised to 0.06 (monotone)
    assert seeds.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert seeds.holm([0.5, 0.6]) == [1.0, 1.0]  # 0.5 x 2 caps at 1; the larger cannot fall below it
    assert seeds.holm([0.02]) == [0.02] and seeds.holm([]) == []


def test_grid_aggregates_seeds_and_refuses_other_differences(tmp_path):
    import json

    from analysis.tables import browser

    def rec(h, metric, seed, ppl, nsamples=32):
        cfg = {
            "model": {"name": "m"},
            "metric": {"name": metric},
            "pattern": {"name": "2:4", "n": 2, "m": 4},
            "shuffle": {"name": "none"},
            "calibration": {"name": "c", "nsamples": nsamples, "seed": seed},
        }
        return {"config_hash": h, "status": "done", "config": cfg, "metrics": {"ppl/x": ppl}, "env": {}}

    runs = tmp_path / "runs"
    runs.mkdir()
    for i, (metric, vals) in enumerate((("wanda", WANDA), ("ria", RIA))):
        for seed, v in vals.items():
            (runs / f"{i}{seed}.json").write_text(json.dumps(rec(f"{i}{seed}", metric, seed, v)))
    grid = browser.runs_grid(tmp_path, "metric", "shuffle", "pattern", "ppl/x")["2:4"]
    assert grid.loc["wanda", "none"].format(1) == "183.7 ± 7.5 (3)"
    assert grid.loc["ria", "none"].n == 3
    assert browser.grid_comparisons(grid) == ["none: ria vs wanda: not separable (p=0.11, n=3)"]
    # another tie rule at a seed the cell has is not a fourth seed: it is refused until filtered
    tie = rec("t", "wanda", 0, 190.0)
    tie["config"]["pattern"]["tie_break"] = "high_index"
    (runs / "t.json").write_text(json.dumps(tie))
    with pytest.raises(browser.GridError, match="differ in \\['tie_break'\\]"):
        browser.runs_grid(tmp_path, "metric", "shuffle", "pattern", "ppl/x")
    only = browser.runs_grid(tmp_path, "metric", "shuffle", "pattern", "ppl/x", where={"tie_break": "low_index"})
    assert only["2:4"].loc["wanda", "none"].format(1) == "183.7 ± 7.5 (3)"
    (runs / "t.json").unlink()
    (runs / "x.json").write_text(json.dumps(rec("x", "wanda", 5, 180.0, nsamples=64)))
    with pytest.raises(browser.GridError, match="differ in \\['nsamples'\\]"):
        browser.runs_grid(tmp_path, "metric", "shuffle", "pattern", "ppl/x")
