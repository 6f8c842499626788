"""Bench rows: ``results/bench/*.json`` and the records' own ``bench/...`` metrics as one DataFrame.

The bench tables (E-Sparse T5/T6, RIA T5/T11) and the permutation figure read these rows, never the
files, so every shape a bench file comes in (and every spelling of a layer, stage or arch) is
mapped here, once; a file of a shape not known is skipped with a warning line. Kept apart from
``records`` because the bench file format changes on its own schedule (esparse/bench*).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.records import _mtime, _utc, done, is_missing

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
    "finished_at",
)

#: a bench row's layer name -> the paper's GEMM kind (separate q/k/v or gate/up rows are summed)
LAYER_ALIASES = {
    "qkv": (
        "qkv",
        "q/k/v",
        "q_k_v",
        "qkv_proj",
        "query_key_value",
        "attn_qkv",
        "q_proj",
        "k_proj",
        "v_proj",
        "q",
        "k",
        "v",
    ),
    "att_out": ("att_out", "attn_out", "attention_output", "o_proj", "out_proj", "o", "dense"),
    "ffn1": (
        "ffn1",
        "ffn-1",
        "ffn_1",
        "fc1",
        "up",
        "up_proj",
        "gate",
        "gate_proj",
        "gate_up",
        "gate_up_proj",
        "w1",
        "w3",
    ),
    "ffn2": ("ffn2", "ffn-2", "ffn_2", "fc2", "down", "down_proj", "w2"),
}
STAGE_ALIASES = {
    "context": ("context", "context-stage", "context_stage", "prefill", "ctx", "prompt"),
    "decode": ("decode", "decoder", "decoding", "generation", "generate", "gen", "token"),
}
SHUFFLE_ALIASES = {
    "cp": "ria_cp_lsa",
    "cp_lsa": "ria_cp_lsa",
    "channel_permutation": "ria_cp_lsa",
    "cp_heuristic": "ria_cp",
    "pool_yu": "greedy",
}
_LAYER = {alias: kind for kind, names in LAYER_ALIASES.items() for alias in names}
_STAGE = {alias: stage for stage, names in STAGE_ALIASES.items() for alias in names}


def normalize_layer(name: Any) -> str | None:
    if name is None:
        return None
    key = str(name).strip().lower()
    return _LAYER.get(key) or _LAYER.get(key.split(".")[-1])


def normalize_stage(name: Any) -> str | None:
    return None if name is None else _STAGE.get(str(name).strip().lower())


_STAGE_KEY = re.compile(r"^(?P<stage>[a-z_-]+?)(?:_b(?P<b>\d+))?(?:_s(?P<s>\d+))?$")


def parse_stage(key: str) -> tuple[str | None, float | None]:
    """A record's stage key -> (stage, tokens): ``context_b4_s1024`` -> (context, 4096),
    ``decode_b8`` -> (decode, 8), ``context`` -> (context, None)."""
    m = _STAGE_KEY.match(str(key).strip().lower())
    if not m:
        return normalize_stage(key), None
    stage = normalize_stage(m["stage"])
    b, s = m["b"], m["s"]
    if b is None:
        return stage, None
    return stage, float(int(b) * (int(s) if (s and stage == "context") else 1))


def normalize_model(name: Any) -> str | None:
    """Bench files spell archs ``llama2-7b`` / ``opt-6.7b``; the registry says llama2_7b / opt6.7b."""
    if is_missing(name) or name == "":
        return None
    s = str(name).strip().lower()
    if s.startswith("opt-"):
        s = "opt" + s[4:]
    return s.replace("-", "_")


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        out = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def _shuffle(name: Any) -> str | None:
    if name is None:
        return None
    key = str(name).strip().lower()
    return SHUFFLE_ALIASES.get(key, key)


def _shape(row: Mapping[str, Any]) -> tuple[float | None, float | None]:
    r, c = _num(row.get("rows")), _num(row.get("cols"))
    shape = row.get("shape") or row.get("size")
    if (r is None or c is None) and isinstance(shape, (list, tuple)) and len(shape) == 2:
        r, c = _num(shape[0]), _num(shape[1])
    elif (r is None or c is None) and isinstance(shape, str):
        mm = re.fullmatch(r"\s*(\d+)\s*[x×*]\s*(\d+)\s*", shape)
        if mm:
            r, c = float(mm.group(1)), float(mm.group(2))
    return r, c


def _bench_row(row: Mapping[str, Any], defaults: Mapping[str, Any], source: str) -> dict[str, Any]:
    merged = {**defaults, **row}
    rows, cols = _shape(merged)
    escapes = _num(merged.get("escapes"))
    return {
        "source": source,
        "config_hash": merged.get("config_hash"),
        "model": normalize_model(merged.get("model") or merged.get("arch")),
        "device": merged.get("device"),
        "backend": (str(merged["backend"]).lower() if merged.get("backend") else None),
        "dtype": merged.get("dtype"),
        "pattern": merged.get("pattern"),
        "layer": normalize_layer(merged.get("kind") or merged.get("layer") or merged.get("name")),
        "stage": normalize_stage(merged.get("stage")),
        "tokens": _num(merged.get("tokens")),
        "dense_ms": _num(merged.get("dense_ms")),
        "sparse_ms": _num(merged.get("sparse_ms")),
        "speedup": _num(merged.get("speedup")),
        "shuffle": _shuffle(merged.get("shuffle") or merged.get("method")),
        "escapes": 0.0 if escapes is None else escapes,
        "rows": rows,
        "cols": cols,
        "seconds": _num(merged.get("seconds")),
        "dense_bytes": _num(merged.get("dense_bytes")),
        "compressed_bytes": _num(merged.get("compressed_bytes")),
        "finished_at": _utc(merged.get("finished_at") or merged.get("created_at") or merged.get("timestamp")),
    }


def read_bench_files(results_dir: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of ``results_dir/bench/*.json``. Accepted shapes: a list of row dicts; ``{"rows": [...],
    ...}`` whose scalar fields (and ``arch``, ``env.device``) are defaults for its rows; a memory
    report ``{"reports": {arch: {"dense_bytes": .., "compressed_bytes": ..}}}``. A file of any
    other shape is skipped with a warning line."""
    bench = Path(results_dir) / "bench"
    rows: list[dict[str, Any]] = []
    warnings: list[str] = []
    for path in sorted(bench.glob("*.json")) if bench.is_dir() else []:
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            warnings.append(f"skipped {path}: unreadable JSON ({e})")
            continue
        defaults: dict[str, Any] = {}
        if isinstance(data, Mapping) and isinstance(data.get("reports"), Mapping):
            data = _memory_rows(data["reports"], data)
        elif isinstance(data, Mapping) and isinstance(data.get("results"), list):
            data = _permutation_rows(data)
        elif isinstance(data, Mapping) and isinstance(data.get("rows"), list):
            defaults = {k: v for k, v in data.items() if not isinstance(v, (list, Mapping))}
            env = data.get("env")
            if isinstance(env, Mapping) and env.get("device"):
                defaults.setdefault("device", env["device"])
            data = data["rows"]
        if not isinstance(data, list) or not all(isinstance(r, Mapping) for r in data):
            warnings.append(f"skipped {path}: expected a list of row objects or {{'rows': [...]}}")
            continue
        if "finished_at" not in defaults and not any("finished_at" in r for r in data):
            defaults["finished_at"] = _mtime(path).isoformat()
        rows.extend(_bench_row(r, defaults, f"bench:{path.name}") for r in data)
    return rows, warnings


def bench_wall_seconds(row: Mapping[str, Any]) -> tuple[Any, str | None]:
    """(wall seconds, threads) of one bench_permutation row: the run at the most threads timed (the
    machine's full width) from ``timing = {threads: {"seconds": ...}}``; older files carry a flat
    ``seconds`` and no thread count."""
    timing = row.get("timing") if isinstance(row.get("timing"), Mapping) else {}
    if not timing:
        return row.get("seconds"), None
    threads = max(timing, key=int)
    return timing[threads].get("seconds"), threads


def _permutation_rows(doc: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """experiments/bench_permutation.py's ``{"results": [{case, shape, n, m, rows: [...]}]}``: one row
    per (matrix, method) with its wall seconds at the most threads timed (the machine's full width)
    and its retained score over the unstructured bound. Variants with extra kwargs keep their label
    (``ria_cp_lsa(community_size=64)``) so they never stand in for the method's default."""
    env = doc.get("env") if isinstance(doc.get("env"), Mapping) else {}
    device = f"cpu ({env.get('cpu', '?')}, {env.get('cpu_count', '?')} cores)" if env else "cpu"
    out = []
    for case in doc["results"]:
        if not isinstance(case, Mapping) or not isinstance(case.get("rows"), list):
            return None
        for r in case["rows"]:
            seconds, threads = bench_wall_seconds(r)
            out.append(
                {
                    "model": "real" if str(case.get("case", "")).startswith("real") else "synthetic",
                    "case": case.get("case"),
                    "shape": case.get("shape"),
                    "pattern": f"{case.get('n')}:{case.get('m')}",
                    "method": r.get("method") if not r.get("kwargs") else r.get("label"),
                    "seconds": seconds,
                    "retained_over_bound": r.get("retained_over_bound"),
                    "threads": threads,
                    "device": device,
                }
            )
    return out


def _memory_rows(reports: Mapping[str, Any], top: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    rows = []
    for arch, rep in reports.items():
        if not isinstance(rep, Mapping) or _num(rep.get("dense_bytes")) is None:
            return None
        rows.append(
            {
                "model": arch,
                "dense_bytes": rep.get("dense_bytes"),
                "compressed_bytes": rep.get("compressed_bytes"),
                "device": "computed from shapes",
                "pattern": rep.get("pattern") or top.get("pattern"),
            }
        )
    return rows


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
            out.append(_bench_row({**common, **mem}, {}, source))
        grouped: dict[tuple[str, str], dict[str, Any]] = {}
        for k in keys:
            if is_missing(rec.get(k)):
                continue
            g = _GEMM_KEY.match(k)
            grouped.setdefault((g["kind"], g["stage"]), {})[g["field"]] = rec[k]
        for (kind, stage_key), fields in grouped.items():
            stage, tokens = parse_stage(stage_key)
            row = {**common, "kind": kind, "stage": stage, "tokens": tokens, **fields}
            out.append(_bench_row(row, {}, source))
    return out


def read_bench(results_dir: str | Path, records: pd.DataFrame | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Bench rows from the records' ``bench/gemm/...`` metrics and from ``results_dir/bench/*.json``."""
    file_rows, warnings = read_bench_files(results_dir)
    rec_rows = bench_rows_from_records(records) if records is not None else []
    df = pd.DataFrame(rec_rows + file_rows, columns=list(BENCH_COLUMNS))
    return df, warnings
