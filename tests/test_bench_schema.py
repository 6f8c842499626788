"""The one bench-record schema: what the writer puts in a file, what it refuses, and the pipeline
stage's record of its GEMM rows."""

from __future__ import annotations

import json

import pytest
from test_bench import tiny_llama

from esparse import bench, provenance


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
