"""Bench rows: ``results/bench/*.json`` and the records' own ``bench/...`` metrics as one DataFrame.

The bench tables (E-Sparse T5/T6, RIA T5/T11) and the figures read these rows, never the files. Every
bench file is a record of one schema (``esparse.bench.schema``: version, kind, environment, config,
declared columns, rows); a file of any other shape is refused with a message naming the file and
what is wrong, and ``make tables`` skips it. Kept apart from ``records`` because bench records are a
kind of their own (no config hash, no stages).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.records import _utc, done, is_missing

BENCH_COLUMNS = (
    "source",
    "config_hash",
    "model",
    "device",
    "backend",
    "dtype",
    "pattern",
    "layer",
    "stage",
    "tokens",
    "dense_ms",
    "sparse_ms",
    "speedup",
    "shuffle",
    "escapes",
    "rows",
    "cols",
    "seconds",
    "dense_bytes",
    "compressed_bytes",
    "nm_int4_bytes",
    "finished_at",
)

#: the bench-record schema ``esparse.bench.schema`` writes (its ``SCHEMA_VERSION``). No esparse import
#: here, so the number is repeated; tests/test_bench_schema.py checks that the two agree
BENCH_SCHEMA_VERSION = 1
#: per bench kind, the columns the tables and figures read: a record declares them and every row holds
#: them; kinds whose rows no table reads have none
BENCH_KINDS: dict[str, tuple[str, ...]] = {
    "gemm": ("layer", "stage", "tokens", "dense_ms", "backend", "device", "dtype"),
    "memory": ("model", "dense_bytes", "compressed_bytes"),
    "prune_memory": (),
    "prune_cost": (),
    "default_run": ("prune_seconds", "eval_seconds", "gemm_fraction", "host_peak_gb"),
    "eval_memory": ("model", "stage", "path", "value", "host_peak_gb"),
    "scaling": ("case", "linear_params", "dtype", "offload", "prune_seconds", "eval_seconds", "host_peak_gb"),
    "permutation": (
        "case",
        "model",
        "rows",
        "cols",
        "n",
        "m",
        "method",
        "label",
        "device",
        "threads",
        "seconds",
        "retained_over_bound",
    ),
    "observations": ("name", "block", "linear", "in_features", "channels", "degree", "retained_share"),
    "device_masks": ("model", "metric", "pattern", "shuffle", "device", "mask_entries", "differing", "agreement"),
}
#: the device column of memory rows: bytes are arithmetic on the architecture, no device measured them
MEMORY_DEVICE = "computed from shapes"
STAGES = ("context", "decode")
#: the fields every bench record has, with their JSON type
_RECORD_FIELDS = {
    "what": (str, "a string"),
    "measured_at": ((str, type(None)), "an ISO time or null"),
    "environment": (Mapping, "an object"),
    "config": (Mapping, "an object"),
    "columns": (Mapping, "an object"),
    "rows": (list, "a list"),
    "extra": (Mapping, "an object"),
}


class BenchRecordError(ValueError):
    """A file that is not a bench record of the schema; the message names the file and what is wrong."""


_STAGE_KEY = re.compile(r"^(?P<stage>[a-z_-]+?)(?:_b(?P<b>\d+))?(?:_s(?P<s>\d+))?$")


def parse_stage(key: str) -> tuple[str | None, float | None]:
    """A record's stage key -> (stage, tokens): ``context_b4_s1024`` -> (context, 4096),
    ``decode_b8`` -> (decode, 8), ``context`` -> (context, None)."""
    m = _STAGE_KEY.match(str(key).strip().lower())
    if not m:
        return None, None
    stage = m["stage"] if m["stage"] in STAGES else None
    b, s = m["b"], m["s"]
    if b is None:
        return stage, None
    return stage, float(int(b) * (int(s) if (s and stage == "context") else 1))


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        out = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def _bench_row(row: Mapping[str, Any], source: str) -> dict[str, Any]:
    """One row of BENCH_COLUMNS from a bench record's row or a run record's bench metrics."""
    escapes = _num(row.get("escapes"))
    return {
        "source": source,
        "config_hash": row.get("config_hash"),
        "model": None if is_missing(row.get("model")) or row.get("model") == "" else str(row["model"]),
        "device": row.get("device"),
        "backend": (str(row["backend"]).lower() if row.get("backend") else None),
        "dtype": row.get("dtype"),
        "pattern": row.get("pattern"),
        "layer": row.get("layer"),
        "stage": row.get("stage"),
        "tokens": _num(row.get("tokens")),
        "dense_ms": _num(row.get("dense_ms")),
        "sparse_ms": _num(row.get("sparse_ms")),
        "speedup": _num(row.get("speedup")),
        "shuffle": row.get("shuffle"),
        "escapes": 0.0 if escapes is None else escapes,
        "rows": _num(row.get("rows")),
        "cols": _num(row.get("cols")),
        "seconds": _num(row.get("seconds")),
        "dense_bytes": _num(row.get("dense_bytes")),
        "compressed_bytes": _num(row.get("compressed_bytes")),
        "nm_int4_bytes": _num(row.get("nm_int4_bytes")),
        "finished_at": _utc(row.get("finished_at")),
    }


def bench_record_problems(doc: Any, kind: str | None = None) -> list[str]:
    """What keeps ``doc`` from being a bench record of the schema (of ``kind``, if given); empty: none."""
    if not isinstance(doc, Mapping):
        return [f"the file holds a JSON {type(doc).__name__}, not an object"]
    version = doc.get("schema_version")
    if version is None:
        old = f"an older bench shape (keys {sorted(doc)[:8]})"
        how = "re-make it with its script or convert it with scripts/migrate_bench_records.py"
        return [f"no schema_version: {old}; {how}"]
    if version != BENCH_SCHEMA_VERSION:
        return [f"schema_version {version!r}, this reader knows {BENCH_SCHEMA_VERSION}"]
    out = []
    got = doc.get("kind")
    if got not in BENCH_KINDS:
        out.append(f"kind {got!r} is not one of {sorted(BENCH_KINDS)}")
    elif kind is not None and got != kind:
        out.append(f"kind {got!r}, expected {kind!r}")
    for key, (typ, json_name) in _RECORD_FIELDS.items():
        if key not in doc or not isinstance(doc[key], typ):
            out.append(f"{key} is {'missing' if key not in doc else type(doc[key]).__name__}, not {json_name}")
    columns = doc["columns"] if isinstance(doc.get("columns"), Mapping) else {}
    missing = [c for c in BENCH_KINDS.get(got, ()) if c not in columns]
    if missing:
        out.append(f"columns lack {missing}, which a {got} record must declare")
    for i, row in enumerate(doc["rows"] if isinstance(doc.get("rows"), list) else []):
        if not isinstance(row, Mapping):
            out.append(f"row {i} is not an object")
            break
        if set(row) - set(columns):
            out.append(f"row {i} has undeclared columns {sorted(set(row) - set(columns))}")
            break
        lacking = [c for c in BENCH_KINDS.get(got, ()) if c not in row]
        if lacking:
            out.append(f"row {i} lacks {lacking}")
            break
    return out


def read_bench_record(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """The bench record at ``path`` (of ``kind``, if given); BenchRecordError naming the file otherwise."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BenchRecordError(f"{path}: unreadable JSON ({e})") from None
    problems = bench_record_problems(doc, kind)
    if problems:
        raise BenchRecordError(f"{path}: not a bench record: " + "; ".join(problems))
    return doc


def widest_timings(rows: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """A permutation record's rows at the most threads timed per (case, pattern, method label): the
    machine's full width, its wall time. Order: each method's first row."""
    best: dict[tuple, Mapping[str, Any]] = {}
    for r in rows:
        key = (r["case"], r["n"], r["m"], r["label"])
        if key not in best or int(r["threads"]) > int(best[key]["threads"]):
            best[key] = r
    return list(best.values())


def bench_rows(doc: Mapping[str, Any], source: str) -> list[dict[str, Any]]:
    """The BENCH_COLUMNS rows of a bench record (one that passed ``bench_record_problems``). Variants
    of a permutation method keep their label (``ria_cp_lsa(community_size=64)``) as their shuffle so
    they never stand in for the method's default; a permutation method counts at its widest timing."""
    kind, when = doc["kind"], doc["measured_at"]
    if kind == "gemm":
        return [_bench_row({**r, "finished_at": when}, source) for r in doc["rows"]]
    if kind == "memory":
        pattern = f"{doc['config']['n']}:{doc['config']['m']}" if {"n", "m"} <= set(doc["config"]) else None
        return [
            _bench_row({**r, "device": MEMORY_DEVICE, "pattern": pattern, "finished_at": when}, source)
            for r in doc["rows"]
        ]
    if kind == "permutation":
        return [_bench_row(_permutation_row(r, when), source) for r in widest_timings(doc["rows"])]
    return []  # prune_memory, prune_cost, observations, device_masks: read by no table


def _permutation_row(row: Mapping[str, Any], when: str | None) -> dict[str, Any]:
    """A permutation row as the permutation table matches it: the shuffle is the registry name; a
    greedy run's ``escapes`` keyword is the table's escapes column (RIA T11 times greedy with and
    without escapes); any other keyword makes a variant, kept under its label."""
    kw = dict(row.get("kwargs") or {})
    escapes = kw.pop("escapes", None) if row["method"] == "greedy" else None
    shuffle = row["label"] if kw else row["method"]
    return {**row, "shuffle": shuffle, "escapes": escapes, "pattern": f"{row['n']}:{row['m']}", "finished_at": when}


def read_bench_files(results_dir: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of the bench records ``results_dir/bench/*.json``; a file that is not one is skipped
    with a warning line that names it and says what is wrong."""
    bench = Path(results_dir) / "bench"
    rows: list[dict[str, Any]] = []
    warnings: list[str] = []
    for path in sorted(bench.glob("*.json")) if bench.is_dir() else []:
        try:
            doc = read_bench_record(path)
        except BenchRecordError as e:
            warnings.append(f"skipped {e}")
            continue
        rows.extend(bench_rows(doc, f"bench:{path.name}"))
    return rows, warnings


_GEMM_KEY = re.compile(r"^bench/gemm/(?P<kind>.+)/(?P<stage>[^/]+)/(?P<field>[^/]+)$")


def bench_rows_from_records(records: pd.DataFrame) -> list[dict[str, Any]]:
    """Finished records' bench metrics as bench rows: one per ``bench/gemm/<layer>/<stage>/<field>``
    (layer, stage) and one for ``bench/memory/{dense,compressed}_bytes``."""
    out: list[dict[str, Any]] = []
    d = done(records)
    keys = [c for c in d.columns if isinstance(c, str) and _GEMM_KEY.match(c)]
    has_memory = "bench/memory/dense_bytes" in d.columns
    if d.empty or not (keys or has_memory):
        return out
    for rec in d.to_dict("records"):

        def first(*keys: str, rec: dict = rec) -> Any:
            return next((rec[k] for k in keys if not is_missing(rec.get(k))), None)

        device, backend = first("bench/device", "device"), first("bench/backend", "bench_backend")
        common = {
            "model": rec.get("model"),
            "device": device,
            "backend": backend,
            "pattern": rec.get("pattern"),
            "dtype": rec.get("bench/dtype"),
            "config_hash": rec.get("config_hash"),
            "finished_at": rec.get("finished_at"),
        }
        source = f"record:{rec.get('config_hash')}"
        if has_memory and _num(rec.get("bench/memory/dense_bytes")) is not None:
            mem = {
                "dense_bytes": rec["bench/memory/dense_bytes"],
                "compressed_bytes": rec.get("bench/memory/compressed_bytes"),
            }
            out.append(_bench_row({**common, **mem}, source))
        grouped: dict[tuple[str, str], dict[str, Any]] = {}
        for k in keys:
            if is_missing(rec.get(k)):
                continue
            g = _GEMM_KEY.match(k)
            grouped.setdefault((g["kind"], g["stage"]), {})[g["field"]] = rec[k]
        for (kind, stage_key), fields in grouped.items():
            stage, tokens = parse_stage(stage_key)
            row = {**common, "layer": kind, "stage": stage, "tokens": tokens, **fields}
            out.append(_bench_row(row, source))
    return out


def read_bench(results_dir: str | Path, records: pd.DataFrame | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Bench rows from the records' ``bench/gemm/...`` metrics and from ``results_dir/bench/*.json``."""
    file_rows, warnings = read_bench_files(results_dir)
    rec_rows = bench_rows_from_records(records) if records is not None else []
    df = pd.DataFrame(rec_rows + file_rows, columns=list(BENCH_COLUMNS))
    return df, warnings
