"""The one bench-record schema: what the writer (esparse.bench.schema) puts in a file and refuses,
the pipeline stage's record of its GEMM rows, the reader (analysis.records) of the same files and
what it refuses, the committed files, and the migration of the older shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_bench import tiny_llama

from analysis import benches
from analysis import records as rec_io
from esparse import bench
from esparse.models.arch import model_arch
from esparse.records import provenance

ROOT = Path(__file__).resolve().parents[1]


def test_bench_record_has_every_schema_field_and_this_process_environment(tmp_path):
    rows = [{"model": "m", "dense_bytes": 10, "compressed_bytes": 6}]
    path = bench.write_bench_record(tmp_path / "b" / "mem.json", "memory", {"dtype_bytes": 2}, rows, what="bytes")
    rec = json.loads(path.read_text())
    assert [p.name for p in path.parent.iterdir()] == ["mem.json"]  # atomic: no temp file left behind
    assert rec["schema_version"] == bench.SCHEMA_VERSION and rec["kind"] == "memory" and rec["what"] == "bytes"
    assert rec["config"] == {"dtype_bytes": 2} and rec["rows"] == rows and rec["extra"] == {}
    assert rec["measured_at"].endswith("+00:00") and "migrated_from" not in rec
    assert rec["environment"].keys() == provenance.environment("cpu").keys()
    assert rec["columns"]["dense_bytes"]["unit"] == "bytes"
    assert set(rec["columns"]) == set(bench.COLUMNS["memory"])


def test_bench_record_refuses_unknown_kinds_and_columns():
    with pytest.raises(ValueError, match="kind='latency'"):
        bench.bench_record("latency", {}, [], what="x")
    with pytest.raises(ValueError, match=r"memory row 1 has columns \['dense_gb'\]"):
        bench.bench_record("memory", {}, [{"model": "a"}, {"model": "b", "dense_gb": 1.0}], what="x")


def test_only_a_migration_brings_its_own_environment():
    old_env = {"torch": "2.0", "cpu": "x86_64"}
    with pytest.raises(ValueError, match="migrated"):
        bench.bench_record("memory", {}, [], what="x", environment=old_env)
    src = {"file": "results/bench/memory.json", "sha256": "ab" * 32, "by": "scripts/migrate_bench_records.py"}
    rec = bench.bench_record("memory", {}, [], what="x", environment=old_env, migrated_from=src, measured_at=None)
    assert rec["environment"] == old_env and rec["migrated_from"] == src and rec["measured_at"] is None


def test_compact_record_has_no_indentation(tmp_path):
    path = bench.write_bench_record(tmp_path / "o.json", "memory", {}, [{"model": "m"}], what="x", compact=True)
    assert "\n" not in path.read_text() and json.loads(path.read_text())["rows"] == [{"model": "m"}]


def test_the_bench_stage_keeps_its_gemm_rows_as_a_bench_record():
    details: dict = {}
    cfg = {"batch_sizes": [1], "seqlens": [8], "repeats": 1, "warmup": 0, "device": "cpu"}
    metrics = bench.run_bench(tiny_llama(), cfg, details)
    rec = details["bench"]
    assert rec["kind"] == "gemm" and rec["schema_version"] == bench.SCHEMA_VERSION
    assert rec["config"]["repeats"] == 1 and rec["config"]["prompt_len"] == 128  # the YAML's defaults filled in
    assert {r["layer"] for r in rec["rows"]} == {"q", "kv", "att_out", "ffn1", "ffn2"}
    for r in rec["rows"]:
        key = f"bench/gemm/{r['layer']}/" + ("context_b1_s8" if r["stage"] == "context" else "decode_b1")
        assert metrics[f"{key}/dense_ms"] == r["dense_ms"]
    json.dumps(rec, allow_nan=False)


# ---------------------------------------------------------------- the reader (analysis) of the same schema


def test_reader_and_writer_agree_on_the_schema():
    assert benches.BENCH_SCHEMA_VERSION == bench.SCHEMA_VERSION
    assert set(benches.BENCH_KINDS) == set(bench.COLUMNS)
    for kind, needed in benches.BENCH_KINDS.items():
        assert set(needed) <= set(bench.COLUMNS[kind]), kind


def test_round_trip_gemm_rows_of_a_grouped_query_model_keep_their_kv_rows(tmp_path):
    arch = model_arch("smollm2_135m")  # 9 query heads, 3 key/value heads: q and kv differ
    shapes = [s for s in bench.linear_shapes(arch) if s.name in ("q", "kv")]
    rows = bench.gemm_table(arch, [1], [4], device="cpu", repeats=1, warmup=0, shapes=shapes)
    rows = [{"model": "smollm2_135m", **r} for r in rows]
    path = bench.write_bench_record(tmp_path / "bench" / "gemm_cpu.json", "gemm", {"repeats": 1}, rows, what="gemm")
    rec = benches.read_bench_record(path, kind="gemm")
    assert rec == json.loads(path.read_text()) and rec["rows"] == json.loads(json.dumps(rows))
    got, warnings = benches.read_bench_files(tmp_path)
    assert not warnings and [r["layer"] for r in got] == ["q", "q", "kv", "kv"]
    kv = [r for r in got if r["layer"] == "kv"]
    assert [r["stage"] for r in kv] == ["context", "decode"] and [r["tokens"] for r in kv] == [4.0, 1.0]
    assert all(r["model"] == "smollm2_135m" and r["dense_ms"] > 0 and r["source"] == "bench:gemm_cpu.json" for r in kv)


def test_round_trip_memory_and_permutation_rows(tmp_path):
    report = bench.memory_report(model_arch("llama7b"))
    bench.write_bench_record(tmp_path / "bench" / "memory.json", "memory", {"n": 2, "m": 4},
                             [{"model": "llama7b", **report}], what="bytes")  # fmt: skip
    perm = {"case": "synthetic 8x8", "model": "synthetic", "rows": 8, "cols": 8, "n": 2, "m": 4, "method": "ria_cp",
            "kwargs": {}, "label": "ria_cp", "device": "cpu (x, 2 cores)", "retained_over_bound": 0.9}  # fmt: skip
    rows = [{**perm, "threads": 1, "seconds": 0.5}, {**perm, "threads": 2, "seconds": 0.3}]
    bench.write_bench_record(tmp_path / "bench" / "permutation.json", "permutation", {}, rows, what="perm")
    got, warnings = benches.read_bench_files(tmp_path)
    assert not warnings
    mem, per = got
    assert (mem["model"], mem["dense_bytes"], mem["compressed_bytes"]) == ("llama7b", 13_476_831_232, 7_810_326_528)
    assert (mem["device"], mem["pattern"]) == (benches.MEMORY_DEVICE, "2:4")
    assert (per["shuffle"], per["seconds"], per["rows"], per["pattern"]) == ("ria_cp", 0.3, 8.0, "2:4")  # widest


def test_reader_refuses_anything_else_naming_the_file_and_what_is_wrong(tmp_path):
    bench_dir = tmp_path / "bench"
    bench_dir.mkdir()
    old = bench_dir / "old_gemm.json"
    old.write_text(json.dumps({"arch": "llama7b", "env": {}, "rows": [{"layer": "qkv", "dense_ms": 1.0}]}))
    with pytest.raises(benches.BenchRecordError, match=r"old_gemm\.json: not a bench record: no schema_version"):
        benches.read_bench_record(old)
    good = bench.bench_record("memory", {}, [{"model": "m", "dense_bytes": 2, "compressed_bytes": 1}], what="x")
    cases = {
        "future.json": ({**good, "schema_version": 99}, "schema_version 99"),
        "kind.json": ({**good, "kind": "latency"}, "kind 'latency' is not one of"),
        "norows.json": ({k: v for k, v in good.items() if k != "rows"}, "rows is missing, not a list"),
        "extra_col.json": ({**good, "rows": [{**good["rows"][0], "dense_gb": 1}]}, r"row 0 has undeclared .*dense_gb"),
        "lacking.json": ({**good, "rows": [{"model": "m"}]}, r"row 0 lacks \['dense_bytes', 'compressed_bytes'\]"),
        "list.json": ([good], "holds a JSON list"),
    }
    for name, (doc, why) in cases.items():
        (bench_dir / name).write_text(json.dumps(doc))
        with pytest.raises(benches.BenchRecordError, match=why):
            benches.read_bench_record(bench_dir / name)
    (bench_dir / "ok.json").write_text(json.dumps(good))
    with pytest.raises(benches.BenchRecordError, match=r"ok\.json: not a bench record: kind 'memory', expected 'gemm'"):
        benches.read_bench_record(bench_dir / "ok.json", kind="gemm")
    rows, warnings = benches.read_bench_files(tmp_path)
    assert rows == [{**rows[0]}] and rows[0]["model"] == "m"  # ok.json alone is read
    assert sorted(w.split(":")[0].rsplit("/", 1)[-1] for w in warnings) == sorted(["old_gemm.json", *cases])


def test_every_committed_bench_file_is_a_bench_record():
    files = sorted((ROOT / "results" / "bench").glob("*.json")) + sorted(
        (ROOT / "results" / "observations").glob("*.json")
    )
    assert files
    for path in files:
        rec = benches.read_bench_record(path)
        if "migrated_from" in rec:
            assert rec["migrated_from"]["by"] == "scripts/migrate_bench_records.py" and rec["measured_at"] is None


def test_a_run_with_the_bench_stage_keeps_its_gemm_rows_beside_the_metrics(tiny_model_dir, text_corpus, tmp_path):
    from helpers import compose_cfg, tiny_overrides

    from esparse.run.pipeline import run

    over = tiny_overrides(tiny_model_dir, text_corpus, tmp_path / "results", tmp_path / "cache")
    over += ["metric=wanda", "stages=[prune,bench]", "bench.repeats=1", "bench.warmup=0", "bench.seqlens=[8]"]
    rec = run(compose_cfg(over))
    on_disk = json.loads((tmp_path / "results" / "runs" / f"{rec['config_hash']}.json").read_text())
    gemm = on_disk["details"]["bench"]
    assert not benches.bench_record_problems(gemm, kind="gemm")
    assert gemm["config"]["seqlens"] == [8] and gemm["environment"]["device"] == "cpu"
    for r in gemm["rows"]:
        key = f"bench/gemm/{r['layer']}/" + ("context_b1_s8" if r["stage"] == "context" else "decode_b1")
        assert on_disk["metrics"][f"{key}/dense_ms"] == r["dense_ms"]
    from_metrics = benches.bench_rows_from_records(rec_io.load_records(tmp_path / "results"))
    assert {r["layer"] for r in from_metrics if r["layer"]} == {r["layer"] for r in gemm["rows"]}
    # the memory figures count the run's own pattern, and the pruned model satisfies it
    assert on_disk["metrics"]["bench/memory/pattern"] == "2:4" and on_disk["metrics"]["bench/memory/nm_sparse"]
    rec48 = run(compose_cfg([*over, "pattern=4:8"]))
    assert rec48["metrics"]["bench/memory/pattern"] == "4:8" and rec48["metrics"]["bench/memory/nm_sparse"]
