"""Paper tables from run records: per cell the paper's number, ours, the difference and the record.

Every builder reads only the records DataFrame (``records.read_records``), the bench rows
(``records.read_bench``) and the transcription (``reference.load_reference``), and returns one
line per cell with the columns ``OUT_COLUMNS``:

- ``paper``: the printed number ("—" where the paper prints none, "nan" where it prints nan);
- ``ours``: our number in the paper's unit, or "not run" — never blank, never filled in;
- ``diff``: ours − paper; "n/a (other model)" on a local line (see below);
- ``config_hash``: the record behind ``ours`` ("bench:<file>" for a bench file's row).

Which record fills a cell: a finished (status "done") record whose config matches the cell
(model, metric, pattern, shuffle, reconstruct, RIA's ``a``, E-Sparse's ``form``, calibration) and
that carries the cell's metric. When several do, the newest wins (``env.finished_at``, else the
file's mtime). Cells name no calibration when the paper used its default, C4.

Local lines: a model that the paper table does not report (the embedded smollm2_135m, say) gets
one line per paper cell-without-model, placed next to the paper's smallest model for
orientation, with ``ours_model`` naming it. Its perplexity falls back to the bundled Wikipedia
corpus (``ppl/bundled_wiki``) where the paper used WikiText-2, and its calibration to the bundled
corpus where the paper used C4 or WikiText-2; ``metric_key`` says which key was read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from analysis import benches
from analysis import records as rec_io
from analysis.records import is_missing, pattern_fields
from analysis.reference import PAPERS, PaperCell, PaperTable, load_reference, model_rank, paper_models

NOT_RUN = "not run"
NO_PAPER = "—"
OTHER_MODEL = "n/a (other model)"
NO_PAPER_DIFF = "n/a (no paper value)"
OUT_COLUMNS = ["row", "column", "paper", "ours", "diff", "ours_model", "device", "metric_key", "config_hash"]
#: the columns that describe our run (all "not run" where nothing ran)
OUR_COLUMNS = ("ours", "diff", "device", "config_hash")

PAPER_CALIBRATION = "c4"  # both papers: 128 x 2048-token C4 samples
LOCAL_CORPUS = "bundled_wiki"  # the embedded default's corpus (DESIGN.md §0)

TITLES = {
    "esparse_t1": "E-Sparse Table 1 — WikiText-2 perplexity, LLaMA × method × 2:4 / 4:8",
    "esparse_t2": "E-Sparse Table 2 — zero-shot accuracy (%), LLaMA, 2:4",
    "esparse_t3": "E-Sparse Table 3 — WikiText-2 perplexity, OPT-6.7B / 30B, 2:4 / 4:8",
    "esparse_ablation": ("E-Sparse ablation (Table 4, 'Fig. 4' in the text) — norm → +entropy → +global → +local, 2:4"),
    "esparse_t5": "E-Sparse Table 5 — per-layer GEMM latency, dense vs 2:4",
    "esparse_t6": "E-Sparse Table 6 — memory, dense vs 2:4 compressed",
    "ria_t1": "RIA Table 1 — WikiText-2 perplexity, 50 % unstructured",
    "ria_t2": "RIA Table 2 — ablation of the RIA score (50 % unstructured)",
    "ria_t3": "RIA Table 3 — zero-shot accuracy (%), LLaMA2-70B, 50 % unstructured",
    "ria_t4": "RIA Table 4 — WikiText-2 perplexity, unstructured / 2:4 / 4:8 ± channel permutation (± LSA)",
    "ria_t5": "RIA Table 5 — layer speedup over dense, LLaMA2-13B shapes",
    "ria_t6": "RIA Table 6 — zero-shot accuracy (%), LLaMA2-70B, N:M ± CP",
    "ria_t7": "RIA Table 7 — calibration-set sensitivity (LLaMA2-13B, 50 % unstructured)",
    "ria_t8": "RIA Table 8 — + weight reconstruction (LLaMA2-13B, 50 % unstructured)",
    "ria_t10": "RIA Table 10 — 1:4 / 2:4 / 3:4 vs unstructured 25 / 50 / 75 % (LLaMA2-7B)",
    "ria_t11": "RIA Table 11 — permutation time (s), greedy vs channel permutation",
}


# ------------------------------------------------------------------------------- small helpers


def _num(v: Any) -> float | None:
    if is_missing(v) or isinstance(v, bool):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _str(v: Any) -> str | None:
    return None if is_missing(v) else str(v)


def _close(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and abs(a - b) < 1e-9


def _paper(v: float | None) -> float | str:
    if v is None:
        return NO_PAPER
    return "nan" if math.isnan(v) else v


def _cell_pattern(keys: Mapping[str, Any]) -> dict[str, Any]:
    """kind/n/m/sparsity the cell asks for ("nm" + n/m columns, "2:4", "unstructured", ...)."""
    if keys.get("method") == "dense":
        return {"pattern_kind": "dense"}
    p = keys.get("pattern")
    if p == "nm" or (p is None and "n" in keys):
        return {"pattern_kind": "nm", "n": keys["n"], "m": keys["m"]}
    if p in ("unstructured", "structured"):
        return {"pattern_kind": p, "sparsity": keys.get("sparsity", 0.5)}
    f = pattern_fields(p)
    return {"pattern_kind": f["pattern_kind"], "n": f["n"], "m": f["m"]}


def _pattern_ok(rec: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    kind = want["pattern_kind"]
    if rec.get("pattern_kind") != kind:
        return False
    if kind == "nm":
        return _close(_num(rec.get("n")), want["n"]) and _close(_num(rec.get("m")), want["m"])
    if kind in ("unstructured", "structured"):
        have = _num(rec.get("sparsity"))
        return _close(0.5 if have is None else have, want["sparsity"])
    return True


def _calibration_ok(have: str | None, want: str | None, local: bool) -> bool:
    if want is None:
        return have == PAPER_CALIBRATION or (local and have == LOCAL_CORPUS)
    return have == want or (local and want == "wikitext2" and have == LOCAL_CORPUS)


def _alpha_ok(have: Any, local: bool) -> bool:
    """E-Sparse cells hold the presets' alpha: ``auto`` on the embedded models (the paper's 70 is
    tuned for LLaMA at 2048 tokens; see conf/metric/esparse.yaml), the paper's 70 at paper scale.
    A record without the key predates ``auto`` and ran 70."""
    if isinstance(have, str):
        return local and have == "auto"
    v = _num(have)
    return not local and _close(70.0 if v is None else v, 70.0)


def _matches(rec: Mapping[str, Any], keys: Mapping[str, Any], model: str, local: bool) -> bool:
    """Does this record run the cell's configuration (on ``model``)?"""
    if rec.get("model") != model:
        return False
    want = _cell_pattern(keys)
    if not _pattern_ok(rec, want):
        return False
    if want["pattern_kind"] == "dense":
        return True  # a dense record has no metric, shuffle or calibration
    metric = _str(rec.get("metric"))
    if metric != keys.get("method"):
        return False
    if (_str(rec.get("shuffle")) or "none") != keys.get("shuffle", "none"):
        return False
    rec_flag = not is_missing(rec.get("reconstruct")) and bool(rec.get("reconstruct"))
    if metric != "sparsegpt" and rec_flag != bool(keys.get("reconstruct", False)):
        return False
    if metric == "ria":
        a = _num(rec.get("metric_a"))
        if not _close(0.5 if a is None else a, float(keys.get("a", 0.5))):
            return False
    form = _str(rec.get("form")) or "alpha_entropy"
    if metric == "esparse" and form != keys.get("form", "alpha_entropy"):
        return False
    if metric == "esparse" and not _alpha_ok(rec.get("metric_alpha"), local and form == "alpha_entropy"):
        return False
    return _calibration_ok(_str(rec.get("calibration")), keys.get("calibration"), local)


# ------------------------------------------------------------------------------ value readers


def _ppl_keys(keys: Mapping[str, Any], local: bool) -> list[str]:
    ds = keys.get("dataset", "wikitext2")
    return [f"ppl/{ds}"] + ([f"ppl/{LOCAL_CORPUS}"] if local and ds == "wikitext2" else [])


def _zs_one(rec: Mapping[str, Any], task: str) -> tuple[float, str] | None:
    for k in (f"zeroshot/{task}/acc", f"zeroshot/{task}_local/acc"):
        v = _num(rec.get(k))
        if v is not None:
            return 100.0 * v, k
    return None


def _read_value(rec: Mapping[str, Any], keys: Mapping[str, Any], quantity: str, local: bool):
    """(value in the paper's unit, metric key read) or None if the record lacks it."""
    if quantity == "ppl":
        for k in _ppl_keys(keys, local):
            v = _num(rec.get(k))
            if v is not None:
                return v, k
        return None
    if quantity == "zeroshot_acc":
        task = keys["task"]
        if task != "avg":
            return _zs_one(rec, task)
        got = [_zs_one(rec, t) for t in keys["tasks"]]
        if any(g is None for g in got):
            return None
        return sum(g[0] for g in got) / len(got), "mean of " + ", ".join(g[1] for g in got)
    raise ValueError(f"unknown quantity {quantity!r}")


def _wanted_key(keys: Mapping[str, Any], quantity: str, local: bool) -> str:
    if quantity == "ppl":
        return " or ".join(_ppl_keys(keys, local))
    if quantity == "zeroshot_acc":
        task = keys["task"]
        return f"zeroshot/{task}/acc" if task != "avg" else "mean of zeroshot/<task>/acc"
    return quantity


def _lookup(cell: PaperCell, model: str, recs: list[dict], quantity: str, local: bool):
    """Newest matching record that has the value: (value, record, key) or None."""
    keys = cell.keys
    for rec in recs:
        if _matches(rec, keys, model, local):
            got = _read_value(rec, keys, quantity, local)
            if got is not None:
                return got[0], rec, got[1]
    if quantity == "ppl" and keys.get("method") == "dense":
        # the dense baseline a pruned run recorded beside its own numbers
        for rec in recs:
            if rec.get("model") == model:
                for k in _ppl_keys(keys, local):
                    v = _num(rec.get(f"dense/{k}"))
                    if v is not None:
                        return v, rec, f"dense/{k}"
    return None


def _line(cell: PaperCell, ours_model: str, found, wanted: str, same_model: bool) -> dict[str, Any]:
    paper = _paper(cell.value)
    line = {"row": cell.row, "column": cell.column, "paper": paper, "ours_model": ours_model}
    if found is None:
        return {
            **line,
            "ours": NOT_RUN,
            "diff": NOT_RUN,
            "device": NOT_RUN,
            "metric_key": wanted,
            "config_hash": NOT_RUN,
        }
    value, rec, key = found
    if not same_model:
        diff: float | str = OTHER_MODEL
    elif isinstance(paper, float):
        diff = value - paper
    else:
        diff = NO_PAPER_DIFF
    return {
        **line,
        "ours": value,
        "diff": diff,
        "device": _str(rec.get("device")) or "unknown",
        "metric_key": key,
        "config_hash": _str(rec.get("config_hash")) or "unknown",
    }


def _frame(lines: list[dict[str, Any]], table: PaperTable, notes: Iterable[str] = ()) -> pd.DataFrame:
    df = pd.DataFrame(lines, columns=OUT_COLUMNS)
    df.attrs.update(
        name=table.name,
        title=TITLES.get(table.name, table.name),
        paper=table.paper,
        table=table.table,
        where=table.where,
        caption=table.caption,
        notes=[*table.notes, *notes],
    )
    return df


def _signature(keys: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in keys.items() if k != "model"))


def _orientation(cells: Iterable[PaperCell]) -> list[PaperCell]:
    """One cell per configuration-without-model: the one of the paper's smallest model."""
    best: dict[tuple, PaperCell] = {}
    for c in cells:
        sig = _signature(c.keys)
        rank = model_rank(c.keys.get("model", ""))
        if sig not in best or rank < model_rank(best[sig].keys.get("model", "")):
            best[sig] = c
    return list(best.values())


def _done_list(records: pd.DataFrame) -> list[dict[str, Any]]:
    return rec_io.done(records).to_dict("records") if not records.empty else []


def _ref(ref: Mapping[str, PaperTable] | None) -> Mapping[str, PaperTable]:
    return ref if ref is not None else load_reference()


def _paper_vs_ours(name: str, records: pd.DataFrame, ref: Mapping[str, PaperTable] | None) -> pd.DataFrame:
    """Model-keyed tables (perplexity, zero-shot, memory): paper lines, then local lines."""
    ref = _ref(ref)
    table = ref[name]
    known = paper_models(ref)
    recs = _done_list(records)
    lines = []
    for cell in table.cells:
        model = cell.keys.get("model", "")
        found = _lookup(cell, model, recs, table.quantity, local=False)
        lines.append(_line(cell, model, found, _wanted_key(cell.keys, table.quantity, False), True))
    for other in sorted({r["model"] for r in recs} - set(table.models)):
        local = other not in known
        extra = []
        for cell in _orientation(table.cells):
            found = _lookup(cell, other, recs, table.quantity, local)
            extra.append(_line(cell, other, found, _wanted_key(cell.keys, table.quantity, local), False))
        if any(x["ours"] != NOT_RUN for x in extra):
            lines.extend(extra)
    return _frame(lines, table)


# ------------------------------------------------------------------------------- bench tables


def _sources(bench: pd.DataFrame | None) -> list[tuple[str, pd.DataFrame]]:
    """Bench rows grouped by source (a record or a file), newest source first."""
    if bench is None or bench.empty:
        return []
    b = bench.copy()
    b["_t"] = pd.to_datetime(b["finished_at"], utc=True, errors="coerce")
    order = b.groupby("source", sort=False)["_t"].max().sort_values(ascending=False, na_position="last")
    return [(src, b[b["source"] == src]) for src in order.index]


def _bench_pattern_ok(row_pattern: Any, keys: Mapping[str, Any]) -> bool:
    want = _cell_pattern(keys)
    have = pattern_fields(row_pattern if not is_missing(row_pattern) else "2:4")  # bench default: 2:4
    return _pattern_ok(have, want)


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
    rows = _pick_tokens(rows, _num(keys.get("tokens")))
    if set(rows["layer"]) != set(layers):
        return None
    tokens, dtype = _num(rows["tokens"].iloc[0]), _str(rows["dtype"].iloc[0])
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
    if len(rows) == 1 and _num(rows["speedup"].iloc[0]):
        sp = float(rows["speedup"].iloc[0])
        return (sp if field == "speedup" else 100.0 * (1.0 - 1.0 / sp)), how
    return None


def _gemm_table(name: str, bench: pd.DataFrame | None, ref: Mapping[str, PaperTable] | None) -> pd.DataFrame:
    table = _ref(ref)[name]
    sources = _sources(bench)
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
                model = _str(first["model"]) or "unknown"
                break
        lines.append(_line(cell, model, found, wanted, True))
    return _frame(lines, table)


def _bench_rec(source: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """What ``_line`` needs of a bench row: its device and the record (or file) behind it."""
    from_record = source.startswith("record:") and not is_missing(row["config_hash"])
    chash = row["config_hash"] if from_record else source
    return {"device": row["device"], "config_hash": chash}


def _memory_table(name: str, bench: pd.DataFrame | None, ref: Mapping[str, PaperTable] | None) -> pd.DataFrame:
    """Memory from bench rows (records' bench/memory/* and memory report files), newest first;
    models the paper does not report get oriented lines as in the model-keyed tables."""
    ref = _ref(ref)
    table = ref[name]
    mem: list[dict[str, Any]] = []
    if bench is not None and not bench.empty:
        for _, rows in _sources(bench[bench["dense_bytes"].notna()]):
            mem.extend(rows.to_dict("records"))
    key = "bench/memory/{dense,compressed}_bytes (GB = 1e9 B)"

    def lookup(cell: PaperCell, model: str):
        for r in mem:
            d, c = _num(r["dense_bytes"]), _num(r["compressed_bytes"])
            if r["model"] != model or not _bench_pattern_ok(r["pattern"], cell.keys) or not d or c is None:
                continue
            values = {"dense_gb": d / 1e9, "sparse_gb": c / 1e9, "saving_pct": 100.0 * (1.0 - c / d)}
            return values[cell.keys["field"]], _bench_rec(r["source"], r), key
        return None

    wanted = "bench/memory/dense_bytes, bench/memory/compressed_bytes"
    lines = [_line(c, c.keys["model"], lookup(c, c.keys["model"]), wanted, True) for c in table.cells]
    for other in sorted({r["model"] for r in mem if r["model"]} - set(table.models)):
        extra = [_line(c, other, lookup(c, other), wanted, False) for c in _orientation(table.cells)]
        if any(x["ours"] != NOT_RUN for x in extra):
            lines.extend(extra)
    return _frame(lines, table)


def _permutation_table(
    name: str, records: pd.DataFrame, bench: pd.DataFrame | None, ref: Mapping[str, PaperTable] | None
) -> pd.DataFrame:
    table = _ref(ref)[name]
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
                and _str(r.get("pattern")) in (None, "2:4")  # the paper times 2:4
                and _close(_num(r["escapes"]) or 0.0, float(k.get("escapes", 0)))
                and _close(_num(r["rows"]), k["rows"])
                and _close(_num(r["cols"]), k["cols"])
            ):
                found = (float(r["seconds"]), {"device": r["device"], "config_hash": r["source"]}, wanted)
                model = _str(r["model"]) or "—"
                used.add(idx)
                break
        lines.append(_line(cell, model, found, wanted, True))
    # our timings at shapes the paper did not time
    labels = {(c.keys["shuffle"], float(c.keys.get("escapes", 0))): c.row for c in table.cells}
    seen: set[tuple] = set()
    for idx, r in rows.iterrows():
        pat = _str(r.get("pattern"))
        key = (r["shuffle"], _num(r["escapes"]) or 0.0, _num(r["rows"]), _num(r["cols"]), pat)
        if idx in used or key in seen or key[2] is None or key[3] is None:
            continue
        seen.add(key)
        label = labels.get(key[:2], f"{r['shuffle']} (escapes={int(key[1])})")
        label += f", {pat}" if pat not in (None, "2:4") else ""
        cell = PaperCell(label, f"{int(key[2])} x {int(key[3])}", {}, None)
        found = (float(r["seconds"]), {"device": r["device"], "config_hash": r["source"]}, "bench seconds")
        lines.append(_line(cell, _str(r["model"]) or "—", found, "bench seconds", True))
    # whole-model permutation time from run records
    for rec in _done_list(records):
        secs = _num(rec.get("permutation/seconds"))
        if secs is None or (_str(rec.get("shuffle")) or "none") == "none":
            continue
        cell = PaperCell(f"{rec['shuffle']} ({rec.get('pattern')}, whole model)", "whole model", {}, None)
        lines.append(_line(cell, rec["model"], (secs, rec, "permutation/seconds"), "", True))
    notes = [] if not rows.empty else ["No permutation bench rows found under results/bench/."]
    return _frame(lines, table, notes)


# ---------------------------------------------------------------------------------- the tables
# Uniform signature: (records, bench=None, ref=None) -> one line per cell (OUT_COLUMNS).


def esparse_t1(records: pd.DataFrame, bench: pd.DataFrame | None = None, ref=None) -> pd.DataFrame:
    """E-Sparse T1: WikiText-2 ppl, LLaMA-7..65B × {magnitude, sparsegpt, wanda, esparse} × {2:4, 4:8}."""
    return _paper_vs_ours("esparse_t1", records, ref)


def esparse_t2(records: pd.DataFrame, bench: pd.DataFrame | None = None, ref=None) -> pd.DataFrame:
    """E-Sparse T2: zero-shot accuracy (acc × 100) on five tasks at 2:4; Avg. needs all five."""
    return _paper_vs_ours("esparse_t2", records, ref)


def esparse_t3(records: pd.DataFrame, bench: pd.DataFrame | None = None, ref=None) -> pd.DataFrame:
    """E-Sparse T3: WikiText-2 ppl of OPT-6.7B / 30B at 2:4 and 4:8."""
    return _paper_vs_ours("esparse_t3", records, ref)


def esparse_ablation(records: pd.DataFrame, bench: pd.DataFrame | None = None, ref=None) -> pd.DataFrame:
    """E-Sparse ablation (Fig. 4): wanda → esparse → +esparse_global → +esparse (local) shuffle, 2:4."""
    return _paper_vs_ours("esparse_ablation", records, ref)


def esparse_t5(records: pd.DataFrame, bench: pd.DataFrame | None = None, ref=None) -> pd.DataFrame:
    """E-Sparse T5: per-layer GEMM ms dense vs 2:4 and the latency reduction, context and decode.

    ``bench`` rows default to the records' own ``bench/gemm/...`` metrics."""
    if bench is None:
        bench = pd.DataFrame(benches.bench_rows_from_records(records), columns=list(benches.BENCH_COLUMNS))
    return _gemm_table("esparse_t5", bench, ref)


def esparse_t6(records: pd.DataFrame, bench: pd.DataFrame | None = None, ref=None) -> pd.DataFrame:
    """E-Sparse T6: dense vs 2:4-compressed weight memory (GB = 1e9 bytes) and the saving (%).

    ``bench`` rows default to the records' own ``bench/memory/...`` metrics."""
    if bench is None:
        bench = pd.DataFrame(benches.bench_rows_from_records(records), columns=list(benches.BENCH_COLUMNS))
    return _memory_table("esparse_t6", bench, ref)


def ria_t1(records: pd.DataFrame, bench: pd.DataFrame | None = None, ref=None) -> pd.DataFrame:
    """RIA T1: WikiText-2 ppl at 50 % unstructured, LLaMA / LLaMA2 / OPT-1.3B."""
    return _paper_vs_ours("ria_t1", records, ref)


def ria_t2(records: pd.DataFrame, bench: pd.DataFrame | None = None, ref=None) -> pd.DataFrame:
    """RIA T2: score ablation (|W|, RI, RIA a=1 / a=0.5; norm-only and one-sided scores if registered)."""
    return _paper_vs_ours("ria_t2", records, ref)


def ria_t3(records: pd.DataFrame, bench: pd.DataFrame | None = None, ref=None) -> pd.DataFrame:
    """RIA T3: zero-shot accuracy of LLaMA2-70B at 50 % unstructured."""
    return _paper_vs_ours("ria_t3", records, ref)


def ria_t4(records: pd.DataFrame, bench: pd.DataFrame | None = None, ref=None) -> pd.DataFrame:
    """RIA T4: ppl unstructured / 2:4 / 2:4+CP w/o LSA (ria_cp) / 2:4+CP (ria_cp_lsa) / 4:8 / 4:8+CP."""
    return _paper_vs_ours("ria_t4", records, ref)


def ria_t5(records: pd.DataFrame, bench: pd.DataFrame | None = None, ref=None) -> pd.DataFrame:
    """RIA T5: speedup per layer group (sum of dense ms / sum of sparse ms) per backend, context stage."""
    if bench is None:
        bench = pd.DataFrame(benches.bench_rows_from_records(records), columns=list(benches.BENCH_COLUMNS))
    return _gemm_table("ria_t5", bench, ref)


def ria_t6(records: pd.DataFrame, bench: pd.DataFrame | None = None, ref=None) -> pd.DataFrame:
    """RIA T6: zero-shot accuracy of LLaMA2-70B under N:M ± CP."""
    return _paper_vs_ours("ria_t6", records, ref)


def ria_t7(records: pd.DataFrame, bench: pd.DataFrame | None = None, ref=None) -> pd.DataFrame:
    """RIA T7: ppl on PTB / WikiText-2 / C4 × calibration on WikiText-2 / C4 / PTB."""
    return _paper_vs_ours("ria_t7", records, ref)


def ria_t8(records: pd.DataFrame, bench: pd.DataFrame | None = None, ref=None) -> pd.DataFrame:
    """RIA T8: with and without OBS reconstruction of the kept weights (metric.reconstruct)."""
    return _paper_vs_ours("ria_t8", records, ref)


def ria_t10(records: pd.DataFrame, bench: pd.DataFrame | None = None, ref=None) -> pd.DataFrame:
    """RIA T10: 1:4 / 2:4 / 3:4 (n zeros of m) against 25 / 50 / 75 % unstructured, LLaMA2-7B."""
    return _paper_vs_ours("ria_t10", records, ref)


def ria_t11(records: pd.DataFrame, bench: pd.DataFrame | None = None, ref=None) -> pd.DataFrame:
    """RIA T11: seconds to permute one d×d matrix; plus whole-model permutation/seconds of our runs."""
    return _permutation_table("ria_t11", records, bench, ref)


TableFn = Callable[..., pd.DataFrame]
TABLES: dict[str, TableFn] = {
    "esparse_t1": esparse_t1,
    "esparse_t2": esparse_t2,
    "esparse_t3": esparse_t3,
    "esparse_ablation": esparse_ablation,
    "esparse_t5": esparse_t5,
    "esparse_t6": esparse_t6,
    "ria_t1": ria_t1,
    "ria_t2": ria_t2,
    "ria_t3": ria_t3,
    "ria_t4": ria_t4,
    "ria_t5": ria_t5,
    "ria_t6": ria_t6,
    "ria_t7": ria_t7,
    "ria_t8": ria_t8,
    "ria_t10": ria_t10,
    "ria_t11": ria_t11,
}


def get(name: str) -> TableFn:
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}; known tables: {', '.join(TABLES)}")
    return TABLES[name]


# ---------------------------------------------------------------------------------- rendering


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{round(v, 4):.10g}"
    return str(v)


def not_run_count(df: pd.DataFrame) -> int:
    return int((df["ours"] == NOT_RUN).sum())


def _key_family(key: str) -> str:
    """``zeroshot/piqa/acc`` -> ``zeroshot/<task>/acc``, ``bench/gemm/...`` -> ``bench/gemm``."""
    key = key.split(" (")[0].replace("mean of ", "").split(", ")[0]
    if key.startswith("bench/"):
        return "/".join(key.split("/")[:2])
    return re.sub(r"^zeroshot/[^/]+/", "zeroshot/<task>/", key)


def ran_on(df: pd.DataFrame) -> str:
    """What produced our numbers: per device and metric keys, the models of the filled cells."""
    filled = df[df["ours"] != NOT_RUN]
    if filled.empty:
        return "nothing yet (no finished record matches any cell)"
    keys = filled["metric_key"].map(_key_family)
    parts = []
    for (device, key), g in filled.assign(_k=keys).groupby(["device", "_k"], sort=True):
        models = ", ".join(sorted(set(g["ours_model"])))
        parts.append(f"{models} on {device} [{key}]")
    return "; ".join(parts)


def to_markdown(df: pd.DataFrame) -> str:
    a = df.attrs
    paper = PAPERS.get(a.get("paper", ""), a.get("paper", ""))
    head = [
        f"# {a.get('title', a.get('name', 'table'))}",
        "",
        f"Paper: {paper}, {a.get('table', '')} ({a.get('where', '')}). Ours: {ran_on(df)}. "
        f"Not run: {not_run_count(df)} of {len(df)} cells.",
        "",
        f"Caption: {a.get('caption', '')}",
        "",
    ]
    notes = [f"- {n}" for n in a.get("notes", [])]
    body = _tabulate(df, "pipe") if len(df) else "(no cells)"
    return "\n".join(head + (["Notes:", *notes, ""] if notes else []) + [body, ""])


def _tabulate(df: pd.DataFrame, fmt: str) -> str:
    """tabulate directly (what pandas' to_markdown wraps), strings kept as written: a config hash
    of digits must not become a float, and pandas' Styler-based to_latex is 10x slower."""
    rows = [[_fmt(v) for v in r] for r in df.itertuples(index=False)]
    return tabulate(rows, headers=list(df.columns), tablefmt=fmt, disable_numparse=True)


def to_latex(df: pd.DataFrame) -> str:
    """A booktabs tabular with LaTeX specials escaped; the title as a comment line above it."""
    return f"% {df.attrs.get('title', df.attrs.get('name', ''))}\n" + _tabulate(df, "latex_booktabs") + "\n"


def build_all(
    results_dir: str | Path, out_dir: str | Path, names: Iterable[str] | None = None
) -> dict[str, pd.DataFrame]:
    """Every table from whatever ``results_dir`` holds → ``out_dir/<name>.{md,csv,tex}`` + ``index.md``.

    Unreadable records and bench files are listed in the index, never fatal; an empty or missing
    ``results_dir/runs`` gives tables whose our-columns all say "not run". A table whose builder
    raises is listed in the index (``failed`` attr of the result) while the others are written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ref = load_reference()
    records, errors = rec_io.read_records(results_dir)
    bench, warnings = benches.read_bench(results_dir, records)
    drifted = _drift_marks(results_dir)
    built: dict[str, pd.DataFrame] = {}
    failed: dict[str, str] = {}
    for name in names or TABLES:
        fn = get(name)
        try:
            df = fn(records, bench, ref)
        except Exception as e:  # one broken table must not cost the user all the others
            failed[name] = f"{type(e).__name__}: {e}"
            (out / f"{name}.md").write_text(f"# {TITLES.get(name, name)}\n\nbuild failed: {failed[name]}\n")
            continue
        df["drift"] = df["config_hash"].map(lambda h: drifted.get(str(h), ""))
        if name in ("esparse_t5", "ria_t5", "ria_t11") and warnings:
            df.attrs["notes"] = [*df.attrs.get("notes", []), *warnings]
        (out / f"{name}.md").write_text(to_markdown(df))
        df.to_csv(out / f"{name}.csv", index=False)
        (out / f"{name}.tex").write_text(to_latex(df))
        built[name] = df
    (out / "index.md").write_text(_index(built, records, errors, warnings, results_dir, failed))
    if failed:
        raise TableBuildError(failed)
    return built


def _drift_marks(results_dir: str | Path) -> dict[str, str]:
    """{config hash: mark} for your records that disagree with the committed reference record of
    the same config: the table shows yours (the newest) and says so, never silently."""
    from analysis import drift

    rd = Path(results_dir)
    report = drift.audit(rd / "runs", rd / "reference" / "runs")
    return {h: f"yours ≠ reference: {c.verdict} (python -m analysis drift)" for h, c in report.drifted().items()}


class TableBuildError(RuntimeError):
    """Some tables failed to build (the others were written); ``failed`` maps name -> error."""

    def __init__(self, failed: Mapping[str, str]):
        self.failed = dict(failed)
        super().__init__("tables failed: " + "; ".join(f"{k}: {v}" for k, v in failed.items()))


def _index(
    built: Mapping[str, pd.DataFrame],
    records: pd.DataFrame,
    errors: list[str],
    warnings: list[str],
    results_dir: str | Path,
    failed: Mapping[str, str],
) -> str:
    status = records["status"].fillna("unknown").value_counts().to_dict() if not records.empty else {}
    counts = ", ".join(f"{v} {k}" for k, v in sorted(status.items())) or "none"
    lines = [
        "# Paper tables",
        "",
        f"Built from the records in `{Path(results_dir) / 'runs'}` and `{Path(results_dir) / 'reference' / 'runs'}` "
        f"({len(records)} records: {counts}); "
        "only `done` records count. Regenerate with `python -m analysis tables`.",
        "",
        "| table | paper | title | cells | filled | not run | files |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, df in built.items():
        nr = not_run_count(df)
        lines.append(
            f"| [{name}]({name}.md) | {df.attrs.get('paper')} {df.attrs.get('table', '')} "
            f"| {df.attrs.get('title')} | {len(df)} | {len(df) - nr} | {nr} "
            f"| [md]({name}.md) [csv]({name}.csv) [tex]({name}.tex) |"
        )
    lines += [f"| {name} | | build failed: {err} | | | | |" for name, err in failed.items()]
    lines += ["", "## Records that could not be read", ""]
    lines += [f"- {e}" for e in errors] or ["none"]
    lines += ["", "## Bench files skipped", ""]
    lines += [f"- {w}" for w in warnings] or ["none"]
    return "\n".join(lines) + "\n"
