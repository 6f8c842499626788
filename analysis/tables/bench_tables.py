"""Bench rows -> paper cells: the latency (E-Sparse T5, RIA T5), memory (E-Sparse T6) and permutation
time (RIA T11) tables.

Their cells are filled from bench rows (``analysis.benches``: bench files and the records' own
``bench/...`` metrics), not from a record's config; a cell takes the newest source that has it.
The lines have the same columns and the same "not run" rule as every other table
(``analysis.tables.matching``). GEMM rows use the token count closest to the paper's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from analysis import benches
from analysis.records import is_missing, pattern_fields
from analysis.tables.matching import NOT_RUN, Lines, cell_line, done_list, orientation
from analysis.tables.reference import PaperCell, PaperTable
from analysis.tables.selection import as_float, as_str, cell_pattern, is_close, pattern_ok


def _or_record_rows(bench: pd.DataFrame | None, records: pd.DataFrame) -> pd.DataFrame:
    """``bench``, or where none was given the bench rows of the records' own ``bench/...`` metrics."""
    if bench is None:
        return pd.DataFrame(benches.bench_rows_from_records(records), columns=list(benches.BENCH_COLUMNS))
    return bench


def _sources(bench: pd.DataFrame | None) -> list[tuple[str, pd.DataFrame]]:
    """Bench rows grouped by source (a record or a file), newest source first."""
    if bench is None or bench.empty:
        return []
    b = bench.copy()
    b["_t"] = pd.to_datetime(b["finished_at"], utc=True, errors="coerce")
    order = b.groupby("source", sort=False)["_t"].max().sort_values(ascending=False, na_position="last")
    return [(src, b[b["source"] == src]) for src in order.index]


def _bench_pattern_ok(row_pattern: Any, keys: Mapping[str, Any]) -> bool:
    want = cell_pattern(keys)
    have = pattern_fields(row_pattern if not is_missing(row_pattern) else "2:4")  # bench default: 2:4
    return pattern_ok(have, want)


def _pick_tokens(rows: pd.DataFrame, wanted: float | None) -> pd.DataFrame:
    """The rows of one token count: the paper's if present, else the closest (log scale)."""
    toks = [t for t in rows["tokens"].dropna().unique()]
    if not toks:
        return rows
    if wanted is not None and wanted in toks:
        best = wanted
    elif wanted is not None:
        best = min(toks, key=lambda t: abs(math.log(max(t, 1e-9) / wanted)))
    else:
        best = max(toks)
    return rows[rows["tokens"] == best]


def _gemm_value(src_rows: pd.DataFrame, keys: Mapping[str, Any], field: str):
    """(value, "(tokens=.., dtype)") of one cell from one source's rows, or None.

    A dense time needs only dense timings; sparse time, reduction and speedup need sparse ones
    (a bench without 2:4 kernels records dense only, and its sparse cells stay "not run")."""
    rows = src_rows[src_rows["stage"] == keys["stage"]]
    rows = rows[rows["pattern"].map(lambda p: _bench_pattern_ok(p, keys)).astype(bool)]
    if "backend" in keys:
        rows = rows[rows["backend"] == keys["backend"]]
    layers = list(keys["layers"])
    rows = rows[rows["layer"].isin(layers)]
    if rows.empty:
        return None
    rows = _pick_tokens(rows, as_float(keys.get("tokens")))
    if set(rows["layer"]) != set(layers):
        return None
    tokens, dtype = as_float(rows["tokens"].iloc[0]), as_str(rows["dtype"].iloc[0])
    how = " (" + ", ".join(x for x in (f"tokens={int(tokens)}" if tokens else None, dtype) if x) + ")"
    dense, sparse = rows["dense_ms"], rows["sparse_ms"]
    has_dense = dense.notna().all() and dense.sum() > 0
    has_sparse = sparse.notna().all() and sparse.sum() > 0
    if field == "dense_ms":
        return (float(dense.sum()), how) if has_dense else None
    if field == "sparse_ms":
        return (float(sparse.sum()), how) if has_sparse else None
    if has_dense and has_sparse:
        d, s = float(dense.sum()), float(sparse.sum())
        return (100.0 * (1.0 - s / d) if field == "reduction_pct" else d / s), how
    if len(rows) == 1 and as_float(rows["speedup"].iloc[0]):
        sp = float(rows["speedup"].iloc[0])
        return (sp if field == "speedup" else 100.0 * (1.0 - 1.0 / sp)), how
    return None


def gemm_cells(
    table: PaperTable, ref: Mapping[str, PaperTable], records: pd.DataFrame, bench: pd.DataFrame | None = None
) -> Lines:
    """Latency and speedup per layer group (E-Sparse T5, RIA T5): per cell, the newest source whose rows
    cover every layer of the group. ``bench`` defaults to the records' own ``bench/gemm/...`` metrics."""
    sources = _sources(_or_record_rows(bench, records))
    lines = []
    for cell in table.cells:
        keys = cell.keys
        wanted = f"bench/gemm/{keys['stage']}/{'+'.join(keys['layers'])}/{keys['field']}"
        found, model = None, "—"
        for src, rows in sources:
            got = _gemm_value(rows, keys, keys["field"])
            if got is not None:
                first = rows.iloc[0]
                found = (got[0], _bench_rec(src, first), wanted + got[1])
                model = as_str(first["model"]) or "unknown"
                break
        lines.append(cell_line(cell, model, found, wanted, True))
    return lines, []


def _bench_rec(source: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """What ``cell_line`` needs of a bench row: its device and the record (or file) behind it."""
    from_record = source.startswith("record:") and not is_missing(row["config_hash"])
    chash = row["config_hash"] if from_record else source
    return {"device": row["device"], "config_hash": chash}


def memory_cells(
    table: PaperTable, ref: Mapping[str, PaperTable], records: pd.DataFrame, bench: pd.DataFrame | None = None
) -> Lines:
    """Memory from bench rows (records' bench/memory/* and memory report files), newest first;
    models the paper does not report get oriented lines as in the model-keyed tables.
    ``bench`` defaults to the records' own ``bench/memory/...`` metrics."""
    bench = _or_record_rows(bench, records)
    mem: list[dict[str, Any]] = []
    if bench is not None and not bench.empty:
        for _, rows in _sources(bench[bench["dense_bytes"].notna()]):
            mem.extend(rows.to_dict("records"))
    key = "bench/memory/{dense,compressed}_bytes (GB = 1e9 B)"

    def lookup(cell: PaperCell, model: str):
        for r in mem:
            d, c = as_float(r["dense_bytes"]), as_float(r["compressed_bytes"])
            if r["model"] != model or not _bench_pattern_ok(r["pattern"], cell.keys) or not d or c is None:
                continue
            q = as_float(r.get("nm_int4_bytes"))
            values = {"dense_gb": d / 1e9, "sparse_gb": c / 1e9, "saving_pct": 100.0 * (1.0 - c / d),
                      "nm_int4_gb": None if q is None else q / 1e9}  # fmt: skip
            if values[cell.keys["field"]] is None:
                continue
            return values[cell.keys["field"]], _bench_rec(r["source"], r), key
        return None

    wanted = "bench/memory/dense_bytes, bench/memory/compressed_bytes"
    lines = [cell_line(c, c.keys["model"], lookup(c, c.keys["model"]), wanted, True) for c in table.cells]
    for other in sorted({r["model"] for r in mem if r["model"]} - set(table.models)):
        extra = [cell_line(c, other, lookup(c, other), wanted, False) for c in orientation(table.cells)]
        if any(x["ours"] != NOT_RUN for x in extra):
            lines.extend(extra)
    return lines, []


def permutation_cells(
    table: PaperTable, ref: Mapping[str, PaperTable], records: pd.DataFrame, bench: pd.DataFrame | None = None
) -> Lines:
    """Seconds to permute one matrix (RIA T11) from bench rows, our timings at shapes the paper did not
    time, and the whole-model ``permutation/seconds`` of our runs. No ``bench``: no bench rows."""
    lines = []
    rows = pd.DataFrame(columns=benches.BENCH_COLUMNS) if bench is None else bench
    rows = rows[rows["seconds"].notna() & rows["shuffle"].notna()] if not rows.empty else rows
    if not rows.empty:
        rows = rows.assign(_t=pd.to_datetime(rows["finished_at"], utc=True, errors="coerce"))
        rows = rows.sort_values("_t", ascending=False, na_position="last", kind="stable")
    used: set[int] = set()
    for cell in table.cells:
        k = cell.keys
        wanted = f"bench seconds: {k['shuffle']} escapes={k.get('escapes', 0)} {k['rows']}x{k['cols']}"
        found, model = None, "—"
        for idx, r in rows.iterrows():
            if (
                r["shuffle"] == k["shuffle"]
                and as_str(r.get("pattern")) in (None, "2:4")  # the paper times 2:4
                and is_close(as_float(r["escapes"]) or 0.0, float(k.get("escapes", 0)))
                and is_close(as_float(r["rows"]), k["rows"])
                and is_close(as_float(r["cols"]), k["cols"])
            ):
                found = (float(r["seconds"]), {"device": r["device"], "config_hash": r["source"]}, wanted)
                model = as_str(r["model"]) or "—"
                used.add(idx)
                break
        lines.append(cell_line(cell, model, found, wanted, True))
    # our timings at shapes the paper did not time
    labels = {(c.keys["shuffle"], float(c.keys.get("escapes", 0))): c.row for c in table.cells}
    seen: set[tuple] = set()
    for idx, r in rows.iterrows():
        pat = as_str(r.get("pattern"))
        key = (r["shuffle"], as_float(r["escapes"]) or 0.0, as_float(r["rows"]), as_float(r["cols"]), pat)
        if idx in used or key in seen or key[2] is None or key[3] is None:
            continue
        seen.add(key)
        label = labels.get(key[:2], f"{r['shuffle']} (escapes={int(key[1])})")
        label += f", {pat}" if pat not in (None, "2:4") else ""
        cell = PaperCell(label, f"{int(key[2])} x {int(key[3])}", {}, None)
        found = (float(r["seconds"]), {"device": r["device"], "config_hash": r["source"]}, "bench seconds")
        lines.append(cell_line(cell, as_str(r["model"]) or "—", found, "bench seconds", True))
    # whole-model permutation time from run records
    for rec in done_list(records):
        secs = as_float(rec.get("permutation/seconds"))
        if secs is None or (as_str(rec.get("shuffle")) or "none") == "none":
            continue
        cell = PaperCell(f"{rec['shuffle']} ({rec.get('pattern')}, whole model)", "whole model", {}, None)
        lines.append(cell_line(cell, rec["model"], (secs, rec, "permutation/seconds"), "", True))
    notes = [] if not rows.empty else ["No permutation bench rows found under results/bench/."]
    return lines, notes
