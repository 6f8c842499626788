"""Figures from synthetic observation JSON, records and bench files: the pure helpers against hand
computations, every figure drawn when its data exists, a placeholder (never made-up data) when not."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from analysis import records as rec_io
from analysis.figures import catalogue as figures
from analysis.figures import from_records as record_figures
from analysis.figures import observations as observation_figures
from esparse.bench import bench_record

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _record(runs: Path, h: str, model: str, metric: str, pattern: dict, shuffle: str = "none", **metrics) -> None:
    cfg = {"model": {"name": model}, "metric": {"name": metric, "reconstruct": False}, "pattern": pattern,
           "shuffle": {"name": shuffle}, "calibration": {"name": "bundled_wiki", "nsamples": 32},
           "experiment": None}  # fmt: skip
    rec = {"config": cfg, "config_hash": h, "status": "done", "metrics": metrics,
           "env": {"device": "cpu", "finished_at": "2026-01-01T00:00:00+00:00"}}  # fmt: skip
    runs.mkdir(parents=True, exist_ok=True)
    (runs / f"{h}.json").write_text(json.dumps(rec))


def _uns(s: float) -> dict:
    return {"name": "unstructured", "kind": "unstructured", "n": 0, "m": 0, "sparsity": s}


NM24 = {"name": "2:4", "kind": "nm", "n": 2, "m": 4, "sparsity": 0.5}


def _observation(path: Path) -> None:
    """Two layers of 8 channels over 4 output rows; numbers chosen by hand, not by any model."""
    layers = []
    for block, linear in ((0, "q_proj"), (3, "down_proj")):
        ch = {"norm": [0.5, 1, 2, 4, 8, 16, 32, 64], "std": [0.4, 1, 1.5, 3, 2, 9, 20, 5],
              "mean": [0.0] * 8, "entropy": [4.0, 3.9, 3.5, 3.0, 2.0, 2.5, 1.0, 0.5],
              "min": [-1.0] * 8, "max": [1.0] * 8}  # fmt: skip
        deg = {"rows": 4, "wanda/unstructured_50": [0, 0, 1, 2, 3, 4, 4, 2], "wanda/2:4": [2] * 8,
               "ria/unstructured_50": [1, 1, 2, 2, 2, 3, 3, 2], "ria/2:4": [2] * 8,
               "ria/2:4+ria_cp_lsa": [1, 3, 2, 2, 2, 2, 3, 1]}  # fmt: skip
        share = {k: 0.8 for k in deg if k != "rows"}
        layers.append({"name": f"model.layers.{block}.{linear}", "block": block, "linear": linear,
                       "in_features": 8, "out_features": 4, "tokens": 64, "channels": ch, "degree": deg,
                       "retained_share": share})  # fmt: skip
    config = {"model": "tiny", "calibration": {"name": "bundled_wiki", "nsamples": 2, "seqlen": 32}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(bench_record("observations", config, layers, what="observations")))


@pytest.fixture
def full_results(tmp_path) -> Path:
    r = tmp_path / "results"
    _observation(r / "observations" / "tiny.json")
    runs = r / "runs"
    for i, (s, ppl) in enumerate(((0.25, 30.0), (0.5, 60.0), (0.75, 900.0))):
        _record(runs, f"w{i}", "tiny", "wanda", _uns(s), **{"ppl/bundled_wiki": ppl, "dense/ppl/bundled_wiki": 25.0})
    _record(runs, "a1", "tiny", "wanda", NM24, **{"ppl/bundled_wiki": 90.0})
    _record(runs, "a2", "tiny", "esparse", NM24, **{"ppl/bundled_wiki": 80.0})
    _record(
        runs,
        "a3",
        "tiny",
        "esparse",
        NM24,
        "esparse_global",
        **{
            "ppl/bundled_wiki": 75.0,
            "permutation/retained_before": 2.0,
            "permutation/retained_after": 2.5,
            "permutation/seconds": 3.0,
        },
    )
    case = {"case": "synthetic 64x64", "model": "synthetic", "rows": 64, "cols": 64, "n": 2, "m": 4, "kwargs": {},
            "device": "cpu", "threads": 1}  # fmt: skip
    rows = [
        {**case, "method": "none", "label": "none", "retained_over_bound": 0.9, "seconds": 0.001},
        {**case, "method": "ria_cp_lsa", "label": "ria_cp_lsa", "retained_over_bound": 0.95, "seconds": 0.2},
    ]
    (r / "bench").mkdir(parents=True)
    (r / "bench" / "permutation.json").write_text(json.dumps(bench_record("permutation", {}, rows, what="perm")))
    scaling = [  # made-up seconds, only for drawing: one fitted case at two token counts, one bf16 row
        {"case": "smollm2_135m", "linear_params": 1e8, "eval_params": 1.3e8, "dtype": "float32", "offload": False,
         "calib_tokens": tok, "eval_tokens": tok // 2, "prune_seconds": tok / 100, "eval_seconds": tok / 400,
         "host_peak_gb": 1.2} for tok in (2048, 8192)
    ] + [{"case": "llama7b_blocks_bf16", "linear_params": 4e8, "eval_params": 6e8, "dtype": "bfloat16",
          "offload": False, "calib_tokens": 8192, "eval_tokens": 4096, "prune_seconds": 50.0, "eval_seconds": 9.0,
          "host_peak_gb": 2.5}]  # fmt: skip
    fit = {"per_param": 1e-8, "per_param_token": 1e-12, "rows": 2, "ratio_to_fit": {}}
    extra = {"prune_fit": fit, "eval_fit": fit, "projection": {"wanda_prune_seconds": 7200, "calib_tokens": 262144}}
    (r / "bench" / "scaling.json").write_text(json.dumps(bench_record("scaling", {}, scaling, what="s", extra=extra)))
    return r


# ------------------------------------------------------------------------------- pure helpers


def test_adjacent_vs_distant_by_hand():
    # adjacent |diffs| 1,2,3,4,5 -> median 3; pairs c/2 apart: |1-7|, |2-11|, |4-16| = 6, 9, 12 -> 9
    assert observation_figures.adjacent_vs_distant([1, 2, 4, 7, 11, 16]) == (3.0, 9.0)
    with pytest.raises(ValueError, match="at least 4"):
        observation_figures.adjacent_vs_distant([1, 2, 3])


def test_degree_summary_by_hand():
    s = observation_figures.degree_summary([0, 2, 4, 10], rows=30)
    assert s["mean"] == 4.0
    assert math.isclose(s["std"], math.sqrt((16 + 4 + 0 + 36) / 4))
    assert s["zero_share"] == 0.25
    assert s["low_share"] == 0.5  # below 10 % of 30 rows: 0 and 2
    with pytest.raises(ValueError, match="rows"):
        observation_figures.degree_summary([1], rows=0)


def test_ppl_points_and_retained_gains(full_results):
    recs = rec_io.load_records(full_results)
    pts = record_figures.ppl_points(recs)
    uns = pts[(pts["metric"] == "wanda") & (pts["pattern_kind"] == "unstructured")].sort_values("sparsity")
    assert uns["sparsity"].tolist() == [0.25, 0.5, 0.75]
    assert uns["ppl"].tolist() == [30.0, 60.0, 900.0]
    dense = pts[pts["metric"] == "dense"]
    assert dense["ppl"].tolist() == [25.0] and dense["sparsity"].tolist() == [0.0]  # one dense point
    assert set(pts["key"]) == {"ppl/bundled_wiki"}
    gains = record_figures.retained_gains(recs)
    assert gains["shuffle"].tolist() == ["esparse_global"]
    assert math.isclose(gains["gain"].iloc[0], 0.25)


# ------------------------------------------------------------------------------- figures


def test_every_figure_draws_from_data(full_results, tmp_path):
    out = tmp_path / "figs"
    status = figures.build_all(full_results, out, dpi=40)
    assert set(status) == set(figures.FIGURES)
    assert {n: s["status"] for n, s in status.items()} == {n: "ok" for n in figures.FIGURES}
    for name in figures.FIGURES:
        data = (out / f"{name}.png").read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 2000
    index = (out / "index.md").read_text()
    assert all(f"[{n}]({n}.png)" in index for n in figures.FIGURES)


def test_missing_data_gives_placeholders_not_figures(tmp_path, capsys):
    out = tmp_path / "figs"
    status = figures.build_all(tmp_path / "empty", out, dpi=40)
    no_data = {n for n, s in status.items() if s["status"] == "no data"}
    # the ablation chart still has the paper's transcribed numbers; everything else lacks data
    assert no_data == set(figures.FIGURES) - {"esparse_ablation"}
    assert "observations.py" in status["ria_fig5_degree"]["reason"]
    assert "ria_t10_local" in status["ria_fig4a_ppl_vs_sparsity"]["reason"]
    for name in figures.FIGURES:
        assert (out / f"{name}.png").read_bytes().startswith(PNG_MAGIC)
    printed = capsys.readouterr().out
    assert "ria_fig5_degree: no data" in printed


def test_one_sparsity_is_not_a_curve(tmp_path):
    r = tmp_path / "results"
    _record(r / "runs", "w0", "tiny", "wanda", _uns(0.5), **{"ppl/bundled_wiki": 60.0})
    status = figures.build_all(r, tmp_path / "figs", ["ria_fig4a_ppl_vs_sparsity"])
    assert status["ria_fig4a_ppl_vs_sparsity"]["status"] == "no data"


def test_unknown_figure_name_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown figure 'nope'"):
        figures.build_all(tmp_path, tmp_path / "figs", ["nope"])
    from analysis.__main__ import main

    assert main(["figures", "--results", str(tmp_path), "--only", "nope"]) == 2


@pytest.mark.slow
def test_tables_wandb_logs_offline(full_results, tmp_path, monkeypatch):
    """`python -m analysis tables --wandb` writes an offline run holding every table and figure."""
    from analysis.__main__ import main

    monkeypatch.setenv("WANDB_MODE", "offline")
    figs = tmp_path / "figs"
    figures.build_all(full_results, figs, ["ria_fig5_degree", "esparse_ablation"])
    assert main(["tables", "--results", str(full_results), "--only", "esparse_ablation,ria_t1",
                 "--wandb", "--figures", str(figs)]) == 0  # fmt: skip
    runs = list((full_results / "wandb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    media = runs[0] / "files" / "media"
    assert sorted(p.name.split("_")[0] for p in (media / "table" / "tables").glob("*.table.json")) == ["esparse", "ria"]
    assert len(list((media / "images" / "figures").glob("*.png"))) == 2
    table = json.loads(next((media / "table" / "tables").glob("esparse_ablation*.table.json")).read_text())
    assert table["columns"][:4] == ["row", "column", "paper", "ours"]
    g = json.loads(next((media / "table" / "grids").glob("esparse_ablation*.table.json")).read_text())
    # the paper's grid: its rows down the side, its models across (then any local model's column)
    assert g["columns"][1:5] == ["LLaMA-7B", "LLaMA-13B", "LLaMA-30B", "LLaMA-65B"]
    assert [r[0] for r in g["data"]] == [
        "norm (= Wanda)",
        "norm + entropy",
        "+ global naive shuffle",
        "+ local block shuffle",
    ]
