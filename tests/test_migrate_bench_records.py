"""scripts/migrate_bench_records.py: the old bench shapes become bench records with every measurement
copied verbatim, the old environment kept and the source named; anything else is refused."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

from analysis import benches

ROOT = Path(__file__).resolve().parents[1]


def _migrate_module():
    spec = importlib.util.spec_from_file_location(
        "migrate_bench_records", ROOT / "scripts" / "migrate_bench_records.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_migration_copies_every_measurement_and_names_its_source(tmp_path):
    timing = {"2": {"seconds": 0.1, "cpu_seconds": 0.2, "seconds_all": [0.3, 0.1], "loadavg_1min": 1.5},
              "1": {"seconds": 0.4, "cpu_seconds": 0.4, "seconds_all": [0.4], "loadavg_1min": 1.4}}  # fmt: skip
    row = {"method": "esparse", "kwargs": {"block": 8}, "label": "esparse(block=8)", "retained": 5.0,
           "retained_over_bound": 0.9, "gain_over_none": 0.1, "timing": timing}  # fmt: skip
    case = {"case": "real l 8x16", "shape": [8, 16], "n": 2, "m": 4, "rows": [row]}
    old = {"what": "perm", "score": "s", "greedy_note": "g", "env": {"cpu": "x86_64", "cpu_count": 2},
           "args": {"seed": "0"}, "results": [case]}  # fmt: skip
    path = tmp_path / "permutation.json"
    path.write_text(json.dumps(old))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    migrate = _migrate_module().migrate
    assert "2 rows" in migrate(path)
    rec = benches.read_bench_record(path, kind="permutation")
    assert rec["environment"] == old["env"] and rec["config"] == old["args"] and rec["measured_at"] is None
    assert rec["migrated_from"] == {
        "file": str(path.resolve()),
        "sha256": digest,
        "by": "scripts/migrate_bench_records.py",
    }
    assert [r["threads"] for r in rec["rows"]] == [2, 1]
    for r, t in zip(rec["rows"], timing.values(), strict=True):
        assert {k: r[k] for k in t} == t and (r["rows"], r["cols"], r["model"]) == (8, 16, "real")
        assert (r["label"], r["retained"], r["device"]) == ("esparse(block=8)", 5.0, "cpu (x86_64, 2 cores)")
    assert "already a bench record" in migrate(path)
    path.write_text(json.dumps({**old, "new_field": 1}))
    with pytest.raises(SystemExit, match="not an old bench shape"):
        migrate(path)


def test_migration_of_a_gemm_file_moves_its_arch_into_every_row(tmp_path):
    row = {"stage": "decode", "batch": 8, "seqlen": None, "layer": "qkv", "label": "Q/K/V", "tokens": 8,
           "dtype": "float32", "backend": "cusparselt", "device": "cpu", "available": False, "reason": "no CUDA",
           "dense_ms": 142.712}  # fmt: skip
    old = {"what": "gemm", "arch": "llama7b", "shapes": [], "env": {"device": "cpu"}, "grid": {"repeats": 3},
           "available": False, "reasons": ["no CUDA"], "breakeven_tokens": {}, "wall_s": 63.0, "rows": [row],
           "paper": {"x": 1}}  # fmt: skip
    path = tmp_path / "gemm_cpu.json"
    path.write_text(json.dumps(old))
    _migrate_module().migrate(path)
    rec = benches.read_bench_record(path, kind="gemm")
    assert rec["rows"] == [{"model": "llama7b", **row}] and rec["config"] == {"model": "llama7b", "repeats": 3}
    assert rec["extra"]["wall_s"] == 63.0 and rec["extra"]["paper"] == {"x": 1} and rec["environment"] == old["env"]
