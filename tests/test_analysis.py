"""analysis/: our cells filled from the right records (newest finished one), "not run" everywhere
else, bad files reported, not fatal. Every expected number is computed by hand from the synthetic
records these tests write.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python -m pytest` has it; a bare `pytest` may not
    sys.path.insert(0, str(ROOT))

from analysis import benches  # noqa: E402
from analysis import records as rec_io  # noqa: E402
from analysis.tables import browser, matching, paper_tables, render, selection  # noqa: E402

PATTERNS = {
    "2:4": {"name": "2:4", "kind": "nm", "n": 2, "m": 4, "sparsity": 0.5, "scope": "row"},
    "4:8": {"name": "4:8", "kind": "nm", "n": 4, "m": 8, "sparsity": 0.5, "scope": "row"},
    "unstructured": {"name": "unstructured", "kind": "unstructured", "n": 0, "m": 0, "sparsity": 0.5},
    "dense": {"name": "dense", "kind": "dense", "n": 0, "m": 0, "sparsity": 0.0},
}


#: each corpus's default calibration size (conf/calibration/*.yaml)
CAL_SIZES = {"c4": {"nsamples": 128, "seqlen": 2048}, "bundled_wiki": {"nsamples": 32, "seqlen": 512}}


def make_record(
    chash,
    model,
    metric="esparse",
    pattern="2:4",
    shuffle="none",
    calibration="c4",
    metrics=None,
    finished="2025-01-01T00:00:00+00:00",
    status="done",
    reconstruct=False,
    device="NVIDIA A100",
    scope=None,
    shuffle_kw=None,
    **metric_kw,
):
    """A record in the INTERFACES.md schema (as esparse.run.pipeline writes it; a paper model's
    E-Sparse reads the l2 norm and its RIA permutations run as RIA's code, as its model config sets)."""
    dense = pattern == "dense"
    paper_model = model not in ("smollm2_135m", "gemma3_270m")
    if paper_model and metric == "esparse":
        metric_kw = {"norm": "l2", **metric_kw}
    layout = {"ria_cp": {"share": "linear"}, "ria_cp_lsa": {"share": "linear", "communities": "official"}}
    shuffle_kw = (layout.get(shuffle, {}) if paper_model else {}) if shuffle_kw is None else shuffle_kw
    cfg = {
        "model": {"name": model, "family": "llama"},
        "metric": {"name": "dense"} if dense else {"name": metric, "reconstruct": reconstruct, **metric_kw},
        "pattern": {**PATTERNS[pattern], **({"scope": scope} if scope else {})},
        "shuffle": {"name": "none"} if dense else {"name": shuffle, **shuffle_kw},
        "calibration": None if dense else {"name": calibration, **CAL_SIZES.get(calibration, CAL_SIZES["c4"])},
        "experiment": None,
    }
    return {
        "config": cfg,
        "config_hash": chash,
        "status": status,
        "metrics": metrics or {},
        "timings": {},
        "env": {"device": device, "finished_at": finished},
        "details": {},
    }


def write(results: Path, *recs) -> Path:
    runs = results / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    for r in recs:
        (runs / f"{r['config_hash']}.json").write_text(json.dumps(r))
    return results


def cell(df: pd.DataFrame, row: str, column: str, model: str | None = None) -> pd.Series:
    sel = df[(df["row"] == row) & (df["column"] == column)]
    if model is not None:
        sel = sel[sel["ours_model"] == model]
    assert len(sel) == 1, (row, column, model, len(sel))
    return sel.iloc[0]


# ---------------------------------------------------------------------------------- records


def test_read_records_flattens_and_reports_bad_files(tmp_path):
    r = make_record(
        "aaaaaaaaaaaa",
        "llama7b",
        metric="ria",
        pattern="4:8",
        a=1.0,
        metrics={"ppl/wikitext2": 9.0, "zeroshot/piqa/acc": 0.7},
    )
    r["config"]["pattern"] = "4:8"  # a bare name still gives kind/n/m
    write(tmp_path, r, make_record("bbbbbbbbbbbb", "llama7b", status="failed"))
    (tmp_path / "runs" / "broken.json").write_text("{not json")
    (tmp_path / "runs" / "list.json").write_text("[1, 2]")
    df, errors = rec_io.read_records(tmp_path)
    assert len(df) == 2 and len(errors) == 2
    assert any("broken.json" in e for e in errors) and any("list.json" in e for e in errors)
    row = df[df["config_hash"] == "aaaaaaaaaaaa"].iloc[0]
    assert (row["model"], row["metric"], row["pattern_kind"], row["n"], row["m"]) == ("llama7b", "ria", "nm", 4, 8)
    assert row["metric_a"] == 1.0 and row["ppl/wikitext2"] == 9.0 and row["zeroshot/piqa/acc"] == 0.7
    assert list(rec_io.done(df)["config_hash"]) == ["aaaaaaaaaaaa"]
    assert rec_io.read_records(tmp_path / "missing")[0].empty


def test_stage_keys_of_the_bench():
    assert benches.parse_stage("context_b4_s1024") == ("context", 4096.0)
    assert benches.parse_stage("decode_b8") == ("decode", 8.0)


def bench_file(path: Path, kind: str, rows: list[dict], **fields) -> None:
    """A bench record as esparse.bench.schema writes it (the only shape analysis reads)."""
    from esparse.bench import bench_record

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(bench_record(kind, fields.pop("config", {}), rows, what=kind, **fields)))


def perm_row(label: str, rows: int, cols: int, seconds: float, threads: int = 1, kwargs=None, n=2, m=4) -> dict:
    """One permutation bench row: ``label`` is the method, or method(k=v) for a variant."""
    return {"case": f"synthetic {rows}x{cols}", "model": "synthetic", "rows": rows, "cols": cols, "n": n, "m": m,
            "method": label.split("(")[0], "kwargs": kwargs or {}, "label": label, "device": "cpu (x86_64, 2 cores)",
            "threads": threads, "seconds": seconds, "retained_over_bound": 0.97}  # fmt: skip


# ----------------------------------------------------------------------------------- tables


def test_esparse_t1_fills_matching_cells_with_the_newest_done_record(tmp_path):
    ppl = lambda v: {"ppl/wikitext2": v}  # noqa: E731
    write(
        tmp_path,
        make_record("a1", "llama7b", shuffle="esparse", metrics=ppl(10.0), finished="2025-01-01T00:00:00+00:00"),
        make_record("a2", "llama7b", shuffle="esparse", metrics=ppl(9.5), finished="2025-02-01T00:00:00+00:00"),
        make_record(
            "a3", "llama7b", shuffle="esparse", metrics=ppl(1.0), finished="2025-03-01T00:00:00+00:00", status="failed"
        ),
        make_record("n1", "llama7b", shuffle="none", metrics=ppl(11.0)),  # no shuffle: ablation row 2
        make_record("w1", "llama7b", metric="wanda", calibration="bundled_wiki", metrics=ppl(12.0)),  # not C4
        make_record("d1", "llama7b", pattern="dense", metrics=ppl(5.70)),
        make_record(
            "s1",
            "smollm2_135m",
            shuffle="esparse",
            calibration="bundled_wiki",
            metrics={"ppl/bundled_wiki": 180.0},
            device="cpu",
            alpha="auto",
        ),
        # newer, but the wrong alpha for its scale: neither may fill a cell (local = auto, paper = 70)
        make_record("s70", "smollm2_135m", shuffle="esparse", calibration="bundled_wiki",
                    metrics={"ppl/bundled_wiki": 1200.0}, device="cpu", alpha=70.0,
                    finished="2025-06-01T00:00:00+00:00"),
        make_record("aauto", "llama7b", shuffle="esparse", metrics=ppl(8.0), alpha="auto",
                    finished="2025-06-01T00:00:00+00:00"),
    )  # fmt: skip
    recs = rec_io.load_records(tmp_path)
    df = paper_tables.get("esparse_t1")(recs)
    assert len(df) == 36 + 9  # every paper cell + one local line per paper row
    c = cell(df, "E-Sparse, 2:4", "LLaMA-7B", "llama7b")
    assert (c["paper"], c["ours"], c["config_hash"]) == (10.56, 9.5, "a2")
    assert c["diff"] == pytest.approx(9.5 - 10.56)
    assert cell(df, "FP16", "LLaMA-7B", "llama7b")["diff"] == pytest.approx(0.02)
    for row, col in (("E-Sparse, 2:4", "LLaMA-13B"), ("Wanda, 2:4", "LLaMA-7B"), ("E-Sparse, 4:8", "LLaMA-7B")):
        c = cell(df, row, col, col.replace("LLaMA-", "llama").lower())
        assert [c[k] for k in matching.OUR_COLUMNS] == ["not run"] * len(matching.OUR_COLUMNS)
    local = cell(df, "E-Sparse, 2:4", "LLaMA-7B", "smollm2_135m")
    assert (local["ours"], local["diff"], local["metric_key"], local["config_hash"]) == (
        180.0,
        "n/a (other model)",
        "ppl/bundled_wiki",
        "s1",
    )
    assert (df[df["ours_model"] == "smollm2_135m"]["ours"] == "not run").sum() == 8
    abl = paper_tables.get("esparse_ablation")(recs)
    assert cell(abl, "norm + entropy", "LLaMA-7B", "llama7b")["config_hash"] == "n1"
    assert cell(abl, "+ local block shuffle", "LLaMA-7B", "llama7b")["ours"] == 9.5
    assert "not run" not in df.to_csv()[: df.to_csv().index("\n")]  # header is plain


def test_ria_tables_key_on_shuffle_a_reconstruct_and_calibration(tmp_path):
    write(
        tmp_path,
        make_record("cp", "llama2_13b", metric="wanda", shuffle="ria_cp", metrics={"ppl/wikitext2": 8.9}),
        make_record("lsa", "llama2_13b", metric="ria", shuffle="ria_cp_lsa", metrics={"ppl/wikitext2": 7.7}),
        # newer, but one permutation per input group: not RIA's code, so no paper cell
        make_record(
            "grp",
            "llama2_13b",
            metric="ria",
            shuffle="ria_cp_lsa",
            metrics={"ppl/wikitext2": 7.0},
            finished="2026-01-01T00:00:00+00:00",
            shuffle_kw={},
        ),  # fmt: skip
        make_record(
            "a1", "llama13b", metric="ria", pattern="unstructured", scope="layer", a=1.0, metrics={"ppl/wikitext2": 6.2}
        ),
        make_record(
            "rec",
            "llama2_13b",
            metric="wanda",
            pattern="unstructured",
            reconstruct=True,
            calibration="wikitext2",
            metrics={"ppl/c4": 8.6},
        ),
    )
    recs = rec_io.load_records(tmp_path)
    t4 = paper_tables.get("ria_t4")(recs)
    assert cell(t4, "LLaMA2-13b Wanda", "2:4+CP w/o LSA", "llama2_13b")["ours"] == 8.9
    assert cell(t4, "LLaMA2-13b Wanda", "2:4+CP", "llama2_13b")["ours"] == "not run"
    c = cell(t4, "LLaMA2-13b RIA (Ours)", "2:4+CP", "llama2_13b")
    assert (c["ours"], c["config_hash"]) == (7.7, "lsa") and c["diff"] == pytest.approx(7.7 - 7.77)
    t2 = paper_tables.get("ria_t2")(recs)
    assert cell(t2, "RIA (a = 1.0)", "LLaMA-13B", "llama13b")["ours"] == 6.2
    assert cell(t2, "RIA (a = 0.5)", "LLaMA-13B", "llama13b")["ours"] == "not run"
    t8 = paper_tables.get("ria_t8")(recs)
    assert cell(t8, "Wanda+rec", "c4 / calib wikitext2", "llama2_13b")["ours"] == 8.6
    assert cell(t8, "Wanda", "c4 / calib wikitext2", "llama2_13b")["ours"] == "not run"
    assert cell(t8, "Wanda+rec", "c4 / calib c4", "llama2_13b")["ours"] == "not run"


def test_zero_shot_is_percent_and_the_average_needs_every_task(tmp_path):
    accs = {"hellaswag": 0.60, "boolq": 0.80, "arc_challenge": 0.50, "mnli": 0.40, "rte": 0.70}
    write(
        tmp_path,
        make_record(
            "full",
            "llama2_70b",
            metric="ria",
            shuffle="ria_cp_lsa",
            metrics={f"zeroshot/{t}/acc": a for t, a in accs.items()},
        ),
        make_record("part", "llama2_70b", metric="wanda", metrics={"zeroshot/boolq/acc": 0.75}),
    )
    t6 = paper_tables.get("ria_t6")(rec_io.load_records(tmp_path))
    assert cell(t6, "RIA (2:4+CP)", "Hellaswag")["ours"] == pytest.approx(60.0)
    assert cell(t6, "RIA (2:4+CP)", "AVG")["ours"] == pytest.approx(60.0)  # (60+80+50+40+70)/5
    assert cell(t6, "RIA (2:4+CP)", "AVG")["diff"] == pytest.approx(60.0 - 62.16)
    assert cell(t6, "Wanda (2:4)", "BoolQ")["ours"] == pytest.approx(75.0)
    assert cell(t6, "Wanda (2:4)", "AVG")["ours"] == "not run"


def test_bench_tables_from_record_metrics_and_bench_files(tmp_path):
    mem = {"bench/memory/dense_bytes": 13.0e9, "bench/memory/compressed_bytes": 7.5e9}
    gemm = {"bench/gemm/qkv/context_b4_s1024/dense_ms": 8.0, "bench/gemm/qkv/context_b4_s1024/sparse_ms": 6.0}
    write(tmp_path, make_record("m1", "llama7b", metrics={**mem, **gemm}))
    rows = [
        {"model": "llama2_13b", "stage": "context", "layer": lay, "tokens": 1024, "backend": "cusparselt",
         "device": "NVIDIA H100", "dtype": "float16", "dense_ms": d, "sparse_ms": s}
        for lay, d, s in (("qkv", 3.0, 2.0), ("att_out", 1.0, 0.5), ("ffn1", 4.0, 2.0), ("ffn2", 2.0, 1.5))
    ]  # fmt: skip
    bench_dir = tmp_path / "bench"
    bench_file(bench_dir / "gemm.json", "gemm", rows, measured_at="2020-01-01T00:00:00")
    mem_row = {"model": "llama13b", "dense_bytes": 26.0e9, "compressed_bytes": 15.0e9,
               "nm_int4_bytes": 5.8e9}  # fmt: skip
    bench_file(bench_dir / "memory.json", "memory", [mem_row], measured_at="2020-01-01T00:00:00")
    (bench_dir / "odd.json").write_text(json.dumps({"what": "no rows here"}))
    records = rec_io.load_records(tmp_path)
    bench, warnings = benches.read_bench(tmp_path, records)
    assert len(warnings) == 1 and "odd.json" in warnings[0]

    t6 = paper_tables.get("esparse_t6")(records, bench)
    assert cell(t6, "LLaMA-7B", "Dense (FP16) GB")["ours"] == pytest.approx(13.0)
    assert cell(t6, "LLaMA-7B", "Memory Saving (%)")["ours"] == pytest.approx(100 * (1 - 7.5 / 13.0))
    assert cell(t6, "LLaMA-7B", "Sparse (FP16) GB")["config_hash"] == "m1"
    assert cell(t6, "LLaMA-13B", "Dense (FP16) GB")["ours"] == pytest.approx(26.0)  # from the bench file
    assert cell(t6, "LLaMA-13B", "2:4 + INT4 GB (ours; beyond the paper)")["ours"] == pytest.approx(5.8)
    assert cell(t6, "LLaMA-7B", "2:4 + INT4 GB (ours; beyond the paper)")["ours"] == "not run"  # no int4 count
    assert cell(t6, "LLaMA-30B", "Dense (FP16) GB")["ours"] == "not run"

    t5 = paper_tables.get("esparse_t5")(records, bench)  # the record (tokens 4096, newest) wins for Q/K/V
    c = cell(t5, "Context-stage Q/K/V", "Latency Reduction (%)")
    assert (c["ours"], c["config_hash"]) == (pytest.approx(25.0), "m1")  # 1 - 6/8
    assert "tokens=4096" in c["metric_key"]
    assert cell(t5, "Context-stage FFN-1", "Dense GEMM (ms)")["ours"] == 4.0  # only the file has FFN-1
    assert cell(t5, "Decoder Q/K/V", "Dense GEMM (ms)")["ours"] == "not run"

    r5 = paper_tables.get("ria_t5")(records, bench)
    c = cell(r5, "2:4 (cuSPARSELT)", "Q/K/V/Out")
    assert c["ours"] == pytest.approx((3.0 + 1.0) / (2.0 + 0.5))
    assert (c["ours_model"], c["device"], c["config_hash"]) == ("llama2_13b", "NVIDIA H100", "bench:gemm.json")
    assert cell(r5, "2:4 (cuSPARSELT)", "Overall")["ours"] == pytest.approx(10.0 / 6.0)
    assert cell(r5, "2:4 (cuTLASS)", "Overall")["ours"] == "not run"
    assert cell(r5, "unstructured 50%", "Down")["ours"] == "not run"


def test_permutation_time_from_bench_rows_and_records(tmp_path):
    write(
        tmp_path,
        make_record(
            "p1",
            "smollm2_135m",
            shuffle="ria_cp_lsa",
            calibration="bundled_wiki",
            metrics={"permutation/seconds": 12.5},
        ),
    )
    rows = [
        perm_row("ria_cp_lsa", 4096, 4096, 3.0),
        perm_row("greedy(escapes=100)", 4096, 4096, 700.0, kwargs={"escapes": 100}),
        perm_row("ria_cp_lsa", 576, 576, 0.1),
    ]
    bench_file(tmp_path / "bench" / "perm.json", "permutation", rows)
    records = rec_io.load_records(tmp_path)
    t11 = paper_tables.get("ria_t11")(records, benches.read_bench(tmp_path, records)[0])
    c = cell(t11, "Channel Permutation", "4096 x 4096")
    assert (c["ours"], c["config_hash"]) == (3.0, "bench:perm.json") and c["diff"] == pytest.approx(3.0 - 6.2)
    assert cell(t11, "Greedy + 100 escapes", "4096 x 4096")["ours"] == 700.0
    assert cell(t11, "Greedy", "4096 x 4096")["ours"] == "not run"
    assert cell(t11, "Channel Permutation", "576 x 576")["paper"] == "—"
    whole = cell(t11, "ria_cp_lsa (2:4, whole model)", "whole model")
    assert (whole["ours"], whole["ours_model"], whole["config_hash"]) == (12.5, "smollm2_135m", "p1")


def test_build_all_on_empty_results_says_not_run_everywhere(tmp_path):
    out = tmp_path / "tables"
    built = render.build_all(tmp_path / "results", out)  # no results dir at all
    assert set(built) == set(paper_tables.TABLES)
    for name, df in built.items():
        for ext in ("md", "csv", "tex"):
            assert (out / f"{name}.{ext}").is_file()
        csv = pd.read_csv(out / f"{name}.csv", keep_default_na=False)
        assert len(csv) == len(df) > 0
        for col in matching.OUR_COLUMNS:
            assert set(csv[col]) == {"not run"}, (name, col)
        assert not (csv.drop(columns="drift") == "").any().any(), name  # never blank (drift: empty = agrees)
        assert set(csv["drift"]) == {""}, name
    md = (out / "esparse_t1.md").read_text()
    assert "Not run: 36 of 36 cells" in md and "| E-Sparse, 2:4" in md
    csv = pd.read_csv(out / "ria_t4.csv")
    assert csv[(csv["row"] == "LLaMA2-13b RIA (Ours)") & (csv["column"] == "2:4+CP")]["paper"].item() == 7.77
    assert "[esparse_t1](esparse_t1.md)" in (out / "index.md").read_text()


def test_build_all_lists_bad_files_and_goes_on(tmp_path):
    write(tmp_path, make_record("good", "llama7b", pattern="dense", metrics={"ppl/wikitext2": 5.68}))
    (tmp_path / "runs" / "bad.json").write_text('{"config": ')
    (tmp_path / "runs" / "nomodel.json").write_text(json.dumps({"config": {"model": {}}, "status": "done"}))
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "weird.json").write_text('"just a string"')
    built = render.build_all(tmp_path, tmp_path / "out")
    index = (tmp_path / "out" / "index.md").read_text()
    assert "bad.json" in index and "nomodel.json" in index and "weird.json" in index
    assert cell(built["esparse_t1"], "FP16", "LLaMA-7B", "llama7b")["diff"] == pytest.approx(0.0)
    assert "weird.json" in (tmp_path / "out" / "esparse_t5.md").read_text()


def test_cli_builds_tables_without_importing_torch(tmp_path):
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from analysis.__main__ import main;"
        "rc = main(['tables', '--results', sys.argv[2], '--only', 'ria_t1,esparse_t6']);"
        "assert rc == 0, rc; assert 'torch' not in sys.modules and 'esparse' not in sys.modules"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(ROOT), str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "wrote 2 tables" in proc.stdout
    assert sorted(p.name for p in (tmp_path / "tables").iterdir()) == [
        "esparse_t6.csv",
        "esparse_t6.md",
        "esparse_t6.tex",
        "index.md",
        "ria_t1.csv",
        "ria_t1.md",
        "ria_t1.tex",
    ]


def test_a_failing_table_is_reported_and_the_others_are_written(tmp_path, monkeypatch):
    def boom(table, ref, records, bench=None):
        raise KeyError("broken builder")

    monkeypatch.setitem(paper_tables.TABLES, "ria_t2", dataclasses.replace(paper_tables.TABLES["ria_t2"], fill=boom))
    with pytest.raises(render.TableBuildError, match="ria_t2"):
        render.build_all(tmp_path, tmp_path / "out")
    assert (tmp_path / "out" / "ria_t1.csv").is_file() and not (tmp_path / "out" / "ria_t2.csv").exists()
    assert "build failed: KeyError" in (tmp_path / "out" / "index.md").read_text()


def test_runs_overview_reads_runs_and_reference_and_keeps_newest(tmp_path):
    old = make_record("r1", "smollm2_135m", metric="wanda", metrics={"ppl/bundled_wiki": 190.0})
    new = make_record("r1", "smollm2_135m", metric="wanda", metrics={"ppl/bundled_wiki": 180.0},
                      finished="2025-05-01T00:00:00+00:00")  # fmt: skip
    ria = make_record("r2", "smollm2_135m", metric="ria", a=0.5, metrics={"ppl/bundled_wiki": 170.0})
    failed = make_record("r3", "smollm2_135m", metric="ria", status="failed", metrics={"ppl/bundled_wiki": 1.0})
    write(tmp_path / "reference", old, ria)
    write(tmp_path, new, failed)
    df = browser.runs_overview(tmp_path)
    assert list(df["config_hash"]) == ["r2", "r1"]  # sorted by metric; the failed run is left out
    assert list(df["ppl/bundled_wiki"]) == [170.0, 180.0]  # the newer record of r1 wins
    assert df.loc[df["metric"] == "ria", "metric_a"].item() == 0.5
    assert browser.runs_overview(tmp_path / "empty").empty


def test_permutation_bench_file_fills_ria_t11_with_the_2_4_widest_timing(tmp_path):
    rows = [
        perm_row("ria_cp_lsa", 4096, 4096, 1.9, threads=1),
        perm_row("ria_cp_lsa", 4096, 4096, 1.1, threads=2),
        perm_row("ria_cp_lsa(sweeps=2)", 4096, 4096, 2.5, kwargs={"sweeps": 2}),
        perm_row("ria_cp_lsa", 4096, 4096, 3.0, n=4, m=8),
    ]
    bench_file(tmp_path / "bench" / "permutation.json", "permutation", rows)
    rows, warnings = benches.read_bench_files(tmp_path)
    assert not warnings and len(rows) == 3
    assert [r["seconds"] for r in rows] == [1.1, 2.5, 3.0]  # the widest thread count is the wall time
    df = paper_tables.get("ria_t11")(rec_io.load_records(tmp_path), bench=pd.DataFrame(rows))
    assert cell(df, "Channel Permutation", "4096 x 4096")["ours"] == 1.1  # the 2:4 default, not 4:8 or a variant


def test_runs_grid_pivots_filters_where_applicable_and_refuses_disagreeing_cells(tmp_path):
    ppl = "ppl/bundled_wiki"
    recs = [
        make_record("w0", "m", metric="wanda", metrics={ppl: 183.0}),
        make_record("w1", "m", metric="wanda", shuffle="ria_cp_lsa", metrics={ppl: 115.0}),
        make_record("e0", "m", metric="esparse", alpha="auto", metrics={ppl: 178.0}),
        make_record("e1", "m", metric="esparse", alpha="auto", shuffle="esparse_global", metrics={ppl: 169.0}),
        make_record("e7", "m", metric="esparse", alpha=70.0, metrics={ppl: 1246.0}),  # same cell as e0
        make_record("w4", "m", metric="wanda", pattern="4:8", metrics={ppl: 92.0}),
    ]
    write(tmp_path, *recs)
    with pytest.raises(browser.GridError, match=r"metric=esparse shuffle=none.*metric_alpha"):
        browser.runs_grid(tmp_path)  # e0 and e7 share a cell and disagree: no silent pick
    grids = browser.runs_grid(tmp_path, where={"metric_alpha": "auto"})  # wanda has no alpha: kept
    g = grids["2:4"]
    assert list(g.index) == ["wanda", "esparse"] and list(g.columns) == ["none", "esparse_global", "ria_cp_lsa"]
    assert g.loc["wanda", "ria_cp_lsa"].mean == 115.0 and g.loc["esparse", "esparse_global"].mean == 169.0
    assert g.loc["wanda", "ria_cp_lsa"].n == 1  # one seed: a value, no spread, no claim
    assert g.loc["wanda", "esparse_global"] is None  # not run stays empty
    assert grids["4:8"].loc["wanda", "none"].mean == 92.0
    assert browser.runs_grid(tmp_path, where={"metric_alpha": "70"})["2:4"].loc["esparse", "none"].mean == 1246.0
    with pytest.raises(browser.GridError, match="'bogus' is not a column"):
        browser.runs_grid(tmp_path, value="bogus")


def test_grid_cli_writes_markdown(tmp_path):
    from analysis.__main__ import main

    write(tmp_path, make_record("w0", "m", metric="wanda", metrics={"ppl/bundled_wiki": 183.04}))
    out = tmp_path / "grid.md"
    assert main(["grid", "--results", str(tmp_path), "--out", str(out)]) == 0
    assert "| wanda    | 183.0 (n=1) |" in out.read_text()
    assert main(["grid", "--results", str(tmp_path), "--where", "nokey"]) == 2


# ------------------------------------------------------------------ seeds in the paper tables
def _local(chash, metric, seed, ppl, nsamples=32, tie_break=None, finished="2025-01-02T00:00:00+00:00"):
    rec = make_record(chash, "smollm2_135m", metric, calibration="bundled_wiki", metrics={"ppl/bundled_wiki": ppl},
                      finished=finished, device="cpu")  # fmt: skip
    rec["config"]["calibration"].update(nsamples=nsamples, seqlen=512, seed=seed)
    rec["config"]["eval"] = {"ppl": {"datasets": ["bundled_wiki"], "nsamples": 32, "seqlen": 512}}
    if tie_break:
        rec["config"]["pattern"] = {**rec["config"]["pattern"], "tie_break": tie_break}
    return rec


def test_a_local_cell_is_the_mean_over_seeds_with_a_paired_verdict(tmp_path):
    recs = [_local(f"w{s}", "wanda", s, v) for s, v in enumerate([180.0, 190.0, 170.0])]
    recs += [_local(f"g{s}", "sparsegpt", s, v) for s, v in enumerate([90.0, 92.0, 91.0])]
    # neither a reduced-size check nor another tie rule may stand in for a seed of the headline cell
    recs += [_local("small", "wanda", 0, 1.0, nsamples=8, finished="2026-01-01T00:00:00+00:00")]
    recs += [_local("tie", "wanda", 1, 2.0, tie_break="high_index", finished="2026-01-01T00:00:00+00:00")]
    df = paper_tables.get("esparse_t1")(rec_io.load_records(write(tmp_path, *recs)))
    wanda = cell(df, "Wanda, 2:4", "LLaMA-7B", "smollm2_135m")
    assert wanda["ours"] == pytest.approx(180.0) and wanda["sd"] == pytest.approx(10.0) and wanda["n"] == 3
    assert wanda["config_hash"] == "w0 w1 w2"
    gpt = cell(df, "SparseGPT, 2:4", "LLaMA-7B", "smollm2_135m")
    assert gpt["vs_best"] == "best"
    # Wanda - SparseGPT = 90, 98, 79 on the three seeds: separable; p from the paired t-test by hand
    d = [90.0, 98.0, 79.0]
    mean = sum(d) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 2)
    from scipy import stats

    p = 2 * stats.t.sf(mean / (sd / math.sqrt(3)), 2)
    assert wanda["vs_best"] == f"worse (p={p:.2g}, n=3)"


def test_local_sizes_are_the_yaml_defaults():
    import yaml

    cal = yaml.safe_load((ROOT / "conf" / "calibration" / "bundled_wiki.yaml").read_text())
    ev = yaml.safe_load((ROOT / "conf" / "eval" / "default.yaml").read_text())
    assert {
        "nsamples": cal["nsamples"],
        "cal_seqlen": cal["seqlen"],
        "eval_nsamples": ev["ppl"]["nsamples"],
        "eval_seqlen": ev["ppl"]["seqlen"],
    } == selection.LOCAL_SIZES


def test_a_record_not_named_by_its_hash_or_of_an_unknown_status_is_reported(tmp_path):
    copied = make_record("aaaaaaaaaaaa", "llama7b")
    (tmp_path / "runs").mkdir(parents=True)
    (tmp_path / "runs" / "bbbbbbbbbbbb.json").write_text(json.dumps(copied))  # another config's record
    write(tmp_path, make_record("cccccccccccc", "llama7b", status="finished"))
    df, errors = rec_io.read_records(tmp_path)
    assert df.empty and len(errors) == 2
    assert "config_hash 'aaaaaaaaaaaa' is not its file name's 'bbbbbbbbbbbb'" in errors[0]
    assert "status 'finished' is not one of" in errors[1]


def test_tables_of_a_results_dir_that_does_not_exist_fail_and_write_nothing(tmp_path, capsys):
    from analysis.__main__ import main

    assert main(["tables", "--results", str(tmp_path / "typo"), "--out", str(tmp_path / "out")]) == 2
    assert f"--results {tmp_path / 'typo'}: no such directory" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_grid_puts_ours_beside_the_paper_and_a_local_model_in_its_own_column(tmp_path):
    from analysis.tables import grid

    write(
        tmp_path,
        make_record("w7", "llama7b", metric="wanda", metrics={"ppl/wikitext2": 11.9}),
        make_record(
            "ws", "smollm2_135m", metric="wanda", calibration="bundled_wiki", metrics={"ppl/bundled_wiki": 177.25}
        ),
    )
    df = paper_tables.get("esparse_t1")(rec_io.load_records(tmp_path))
    g = grid.grid(df)
    assert list(g.columns) == ["LLaMA-7B", "LLaMA-13B", "LLaMA-30B", "LLaMA-65B", "smollm2_135m (local)"]
    assert g.at["Wanda, 2:4", "LLaMA-7B"] == "11.90 (n=1) (paper 11.53)"
    assert g.at["Wanda, 2:4", "LLaMA-13B"] == "— (paper 9.58)"
    assert g.at["Wanda, 2:4", "smollm2_135m (local)"] == "177.2 (n=1)"
    assert g.at["FP16", "smollm2_135m (local)"] == "—"
    tex = grid.to_latex(g, "t")
    assert "smollm2\\_135m (local)" in tex and "11.90 (n=1) (paper 11.53)" in tex


def test_a_local_model_gets_a_column_per_paper_column_where_a_row_holds_several_of_its_cells(tmp_path):
    """E-Sparse Table 3 places 2:4 and 4:8 beside OPT-6.7b: one local column would show the first
    line alone and hide the other pattern's number; a column no local cell fills is dropped."""
    from analysis.tables import grid

    local = {"calibration": "bundled_wiki"}
    write(
        tmp_path,
        make_record("w24", "gemma3_270m", metric="wanda", metrics={"ppl/bundled_wiki": 400.0}, **local),
        make_record("w48", "gemma3_270m", metric="wanda", pattern="4:8", metrics={"ppl/bundled_wiki": 240.0}, **local),
    )
    g = grid.grid(paper_tables.get("esparse_t3")(rec_io.load_records(tmp_path)))
    assert g.at["Wanda", "gemma3_270m (local): OPT-6.7b (2:4)"] == "400.0 (n=1)"
    assert g.at["Wanda", "gemma3_270m (local): OPT-6.7b (4:8)"] == "240.0 (n=1)"
    assert not any("OPT-30b" in c and "(local)" in c for c in g.columns)  # no local cell beside OPT-30b


def test_tex_escape_writes_specials_and_signs_for_pdflatex():
    from analysis.tables.grid import tex_escape

    assert tex_escape("a_b & 5% ± 1 — α") == "a\\_b \\& 5\\% $\\pm$ 1 --- $\\alpha$"


def test_the_index_lists_every_done_record_no_table_placed_and_why(tmp_path):
    write(
        tmp_path,
        make_record("placed", "llama7b", metric="wanda", metrics={"ppl/wikitext2": 11.9}),
        make_record("othercal", "llama7b", metric="wanda", calibration="bundled_wiki", metrics={"ppl/wikitext2": 12.0}),
    )
    render.build_all(tmp_path, tmp_path / "out", names=["esparse_t1"])
    index = (tmp_path / "out" / "index.md").read_text()
    section = index.split("## Finished records placed in no table", 1)[1].split("##", 1)[0]
    assert "`placed`" not in section
    assert "`othercal` llama7b wanda 2:4 `none` seed 0: other protocol: calibration bundled_wiki" in section


def test_an_unstructured_cell_reads_the_scope_its_paper_ranked_over(tmp_path):
    """RIA's tables rank magnitude and RIA over the whole layer (its code), Wanda per output row
    (Wanda's code): a record of the other scope does not fill the cell."""
    write(
        tmp_path,
        make_record("rrow", "llama7b", metric="ria", pattern="unstructured", a=0.5, metrics={"ppl/wikitext2": 7.5}),
        make_record(
            "rlay",
            "llama7b",
            metric="ria",
            pattern="unstructured",
            scope="layer",
            a=0.5,
            metrics={"ppl/wikitext2": 7.1},
        ),
        make_record(
            "wlay", "llama7b", metric="wanda", pattern="unstructured", scope="layer", metrics={"ppl/wikitext2": 7.4}
        ),
    )
    t1 = paper_tables.get("ria_t1")(rec_io.load_records(tmp_path))
    assert cell(t1, "RIA (Ours)", "LLaMA 7b", "llama7b")["config_hash"] == "rlay"
    assert cell(t1, "Wanda", "LLaMA 7b", "llama7b")["ours"] == "not run"


def test_committed_records_give_every_perplexity_table_a_seeded_local_cell_per_bundled_model(tmp_path):
    """`make tables` on a fresh clone: each perplexity table has, for each bundled model, a cell
    whose method calibrates (not dense, not plain magnitude) filled by >= 3 calibration seeds."""
    (tmp_path / "reference").mkdir()
    (tmp_path / "reference" / "runs").symlink_to(ROOT / "results" / "reference" / "runs")
    recs = rec_io.load_records(tmp_path)
    ref = paper_tables.load_reference()
    ppl_tables = [n for n, spec in paper_tables.TABLES.items() if ref[n].quantity == "ppl"]
    assert len(ppl_tables) == 10, ppl_tables
    for name in ppl_tables:
        df = paper_tables.get(name)(recs)
        for model in ("smollm2_135m", "gemma3_270m"):
            cells = df[(df["ours_model"] == model) & (df["ours"] != "not run")]
            calibrating = cells[~cells["row"].str.lower().isin(["dense", "fp16", "magnitude"])]
            calibrating = calibrating[~calibrating["row"].str.lower().str.startswith(("magnitude,", "|w|"))]
            ns = pd.to_numeric(calibrating["n"], errors="coerce")
            assert (ns >= 3).any(), (name, model, sorted(cells["row"]))


def test_a_quantized_cell_reads_the_presets_bits_group_size_and_order():
    """RIA Table 12 states no bits: its cells read 4-bit groups of 128, pruned first; an 8-bit, a
    per-channel or a quantize-first record is another configuration and fills none of them."""
    rec = {"model": "smollm2_135m", "metric": "wanda", "pattern_kind": "unstructured", "sparsity": 0.5,
           "calibration": "bundled_wiki", "quant": "gptq", "quant_bits": 4.0, "quant_group_size": 128.0,
           "quant_order": "prune_first"}  # fmt: skip
    keys = {"method": "wanda", "pattern": "unstructured", "sparsity": 0.5, "quant": "gptq"}
    assert selection.matches(rec, keys, "smollm2_135m", local=True)
    for other in ({"quant_bits": 8.0}, {"quant_group_size": -1.0}, {"quant_order": "quantize_first"}):
        assert not selection.matches({**rec, **other}, keys, "smollm2_135m", local=True), other
    assert selection.matches({**rec, "quant_bits": 8.0}, {**keys, "quant_bits": 8}, "smollm2_135m", local=True)
    assert not selection.matches(rec, {**keys, "quant": "none"}, "smollm2_135m", local=True)
