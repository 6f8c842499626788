"""Run records (``results/runs/*.json`` and ``results/reference/runs/*.json``) as one DataFrame.

Everything the tables know about our runs comes through here, so a malformed file is reported
(path + reason) and skipped instead of stopping ``make tables``. No torch, no esparse import:
building tables must take seconds on a machine that has only pandas.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

#: the config fields the tables key on (INTERFACES.md "Config fields the analysis keys on")
CONFIG_COLUMNS = (
    "model",
    "metric",
    "form",
    "reconstruct",
    "pattern",
    "n",
    "m",
    "sparsity",
    "shuffle",
    "calibration",
    "nsamples",
    "experiment",
    "status",
    "config_hash",
)
#: a record's states (esparse.records.store.STATUSES; analysis imports no esparse)
STATUSES = ("running", "done", "failed", "interrupted")
#: derived or extra fields the matching also needs
EXTRA_COLUMNS = (
    "pattern_kind",
    "metric_a",
    "metric_alpha",
    "shuffle_block",
    "bench_backend",
    "ppl_split",
    "device",
    "finished_at",
    "path",
)


def _utc(ts: Any) -> pd.Timestamp | None:
    if ts is None:
        return None
    try:
        out = pd.Timestamp(ts)
    except (ValueError, TypeError):
        return None
    if out is pd.NaT:
        return None
    return out.tz_localize("UTC") if out.tzinfo is None else out.tz_convert("UTC")


def _mtime(path: Path) -> pd.Timestamp:
    return pd.Timestamp(_dt.datetime.fromtimestamp(path.stat().st_mtime, tz=_dt.timezone.utc))


def is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NaT


def _flat(d: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}"
        if isinstance(v, Mapping):
            out.update(_flat(v, key))
        elif isinstance(v, (list, tuple)):
            out[key] = json.dumps(list(v), default=str)
        else:
            out[key] = v
    return out


def pattern_fields(pattern: Any) -> dict[str, Any]:
    """kind/n/m/sparsity of a pattern config (or its name alone: "2:4", "unstructured", "dense")."""
    p = dict(pattern) if isinstance(pattern, Mapping) else {"name": pattern}
    name = str(p.get("name")) if p.get("name") is not None else None
    kind = p.get("kind")
    n, m, sparsity = p.get("n"), p.get("m"), p.get("sparsity")
    nm = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", name or "")
    if kind is None:
        kind = "nm" if nm else name
    if kind == "nm" and nm and (n is None or m is None):
        n, m = int(nm.group(1)), int(nm.group(2))
    if kind == "nm" and sparsity is None and n and m:
        sparsity = n / m
    if kind == "dense":
        sparsity = 0.0 if sparsity is None else sparsity
    return {"pattern": name, "pattern_kind": kind, "n": n, "m": m, "sparsity": sparsity}


def machine(env: Mapping[str, Any]) -> str | None:
    """What made a record, as far as its floats go: the GPU's name, or the CPU's model and the kernel
    level torch dispatched to (a different level moves a pruned run by percents). ``None`` for a
    record made before the CPU was recorded. The same rule as ``esparse.records.provenance.machine_kind``
    (the writer's side: which dense record a run may reuse); analysis imports no esparse, so it is repeated."""
    gpu, cpu = env.get("gpu"), env.get("cpu")
    if isinstance(gpu, Mapping) and gpu.get("name"):
        return str(gpu["name"])
    if isinstance(cpu, Mapping) and cpu.get("model"):
        return f"{cpu['model']} ({cpu.get('torch_capability') or 'unknown kernel level'})"
    return None


def flatten_record(rec: Any, path: Path | None = None) -> dict[str, Any]:
    """One record -> one flat row: the keyed config fields, ``cfg.*`` for the whole config, and
    every metric under its own key (``ppl/wikitext2``, ``zeroshot/piqa/acc``, ...).

    Raises ValueError naming what is wrong (not an object, no config or model name, metrics not an
    object, a ``config_hash`` that is not the file's name, an unknown status), so the caller can list
    the file and go on.
    """
    if not isinstance(rec, Mapping):
        raise ValueError(f"record is a {type(rec).__name__}, expected a JSON object")
    cfg = rec.get("config")
    if not isinstance(cfg, Mapping):
        raise ValueError("record has no 'config' object")
    model = cfg.get("model")
    model_name = model.get("name") if isinstance(model, Mapping) else model
    if not model_name:
        raise ValueError("record config has no model name (config.model.name)")
    metrics = rec.get("metrics") or {}
    if not isinstance(metrics, Mapping):
        raise ValueError(f"record 'metrics' is a {type(metrics).__name__}, expected an object")
    if path is not None and rec.get("config_hash") != path.stem:
        raise ValueError(f"record config_hash {rec.get('config_hash')!r} is not its file name's {path.stem!r}")
    if rec.get("status") not in STATUSES:
        raise ValueError(f"record status {rec.get('status')!r} is not one of {list(STATUSES)}")

    def sect(name: str) -> Mapping[str, Any]:
        v = cfg.get(name)
        return v if isinstance(v, Mapping) else ({"name": v} if v is not None else {})

    metric, shuffle, cal = sect("metric"), sect("shuffle"), sect("calibration")
    env = rec.get("env") if isinstance(rec.get("env"), Mapping) else {}
    bench = sect("bench")
    ppl = (sect("eval").get("ppl") or {}) if isinstance(sect("eval").get("ppl"), Mapping) else {}
    finished = _utc(env.get("finished_at")) or _utc(rec.get("finished_at"))
    if finished is None and path is not None and path.exists():
        finished = _mtime(path)
    row: dict[str, Any] = {
        "model": str(model_name),
        "metric": metric.get("name"),
        "form": metric.get("form"),
        "reconstruct": bool(metric.get("reconstruct") or False),
        **pattern_fields(cfg.get("pattern")),
        "shuffle": shuffle.get("name") or "none",
        "shuffle_share": shuffle.get("share") or "group",
        "shuffle_communities": "auto" if shuffle.get("communities") is None else str(shuffle.get("communities")),
        "refine": sect("refine").get("name") or "none",
        "quant": sect("quant").get("name") or "none",
        "quant_bits": sect("quant").get("bits"),
        "quant_group_size": sect("quant").get("group_size"),
        "quant_order": sect("quant").get("order"),
        "calibration": cal.get("name"),
        "nsamples": cal.get("nsamples"),
        "seed": cal.get("seed"),
        "cal_seqlen": cal.get("seqlen"),
        "eval_nsamples": ppl.get("nsamples"),
        "eval_seqlen": ppl.get("seqlen"),
        "tie_break": sect("pattern").get("tie_break") or "low_index",
        "scope": sect("pattern").get("scope") or "row",
        "experiment": cfg.get("experiment"),
        "status": rec.get("status"),
        "config_hash": rec.get("config_hash") or (path.stem if path else None),
        "metric_a": metric.get("a"),
        "metric_alpha": metric.get("alpha"),
        "metric_norm": metric.get("norm") or "wanda",
        "shuffle_block": shuffle.get("block"),
        "bench_backend": bench.get("backend"),
        "ppl_split": ppl.get("split"),
        "device": env.get("device"),
        "lock": (env.get("lock") or {}).get("sha256") if isinstance(env.get("lock"), Mapping) else None,
        "machine": machine(env),
        "finished_at": finished,
        "path": str(path) if path else None,
    }
    row.update(_flat(cfg, "cfg"))
    timings = rec.get("timings") if isinstance(rec.get("timings"), Mapping) else {}
    row.update({f"seconds/{k}": v for k, v in timings.items()})
    memory = rec.get("memory") if isinstance(rec.get("memory"), Mapping) else {}
    for stage, peaks in memory.items():
        if isinstance(peaks, Mapping):
            row.update({f"memory/{stage}/{k}": v for k, v in peaks.items()})
    for k, v in metrics.items():
        row[k if k not in row else f"metrics.{k}"] = v
    details = rec.get("details") if isinstance(rec.get("details"), Mapping) else {}
    zeroshot = details.get("zeroshot") if isinstance(details.get("zeroshot"), Mapping) else {}
    if isinstance(zeroshot.get("items"), Mapping):  # per-item outcomes, for item-paired tests
        row["zeroshot/items"] = zeroshot["items"]
    return row


RECORD_DIRS = ("runs", "reference/runs")


def read_records(results_dir: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """All records under ``results_dir/runs`` (your runs) and ``results_dir/reference/runs`` (the
    committed records of runs we made, so a fresh clone's tables show measured numbers), any status,
    and a list of ``"path: reason"`` for the files that could not be read. Where both hold the same
    config, ``done`` prefers the newest. A missing directory is an empty frame, not an error."""
    rows, errors = [], []
    paths = [p for d in RECORD_DIRS for p in sorted((Path(results_dir) / d).glob("*.json"))]
    for path in paths:
        try:
            rows.append(flatten_record(json.loads(path.read_text()), path))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError) as e:
            errors.append(f"{path}: {type(e).__name__}: {e}")
    df = pd.DataFrame(rows)
    for col in CONFIG_COLUMNS + EXTRA_COLUMNS:
        if col not in df.columns:
            df[col] = pd.Series(dtype="object")
    return df, errors


def load_records(results_dir: str | Path) -> pd.DataFrame:
    """``read_records`` without the error list."""
    return read_records(results_dir)[0]


def done(records: pd.DataFrame) -> pd.DataFrame:
    """Only finished runs count in tables; newest first (then by hash, so ties are stable)."""
    if records.empty:
        return records
    d = records[records["status"] == "done"].copy()
    d["_t"] = pd.to_datetime(d["finished_at"], utc=True, errors="coerce")
    d = d.sort_values(["_t", "config_hash"], ascending=[False, True], na_position="last", kind="stable")
    return d.drop(columns="_t")
