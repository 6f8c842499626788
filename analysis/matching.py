"""Records -> paper cells: which finished record fills a cell, what is read from it, the line it becomes.

Every table is one line per cell with the columns ``OUT_COLUMNS``:

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

The cells filled from bench rows (latency, memory, permutation time) are in ``analysis.bench_tables``;
they share this module's line format and pattern matching.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from analysis import records as rec_io
from analysis.records import is_missing, pattern_fields
from analysis.reference import PaperCell, PaperTable, model_rank, paper_models

NOT_RUN = "not run"
NO_PAPER = "—"
OTHER_MODEL = "n/a (other model)"
NO_PAPER_DIFF = "n/a (no paper value)"
OUT_COLUMNS = ["row", "column", "paper", "ours", "diff", "ours_model", "device", "metric_key", "config_hash"]
#: the columns that describe our run (all "not run" where nothing ran)
OUR_COLUMNS = ("ours", "diff", "device", "config_hash")

PAPER_CALIBRATION = "c4"  # both papers: 128 x 2048-token C4 samples
LOCAL_CORPUS = "bundled_wiki"  # the embedded default's corpus: Wikipedia text shipped offline (esparse/data.py)

#: one line per cell (``OUT_COLUMNS``) and notes for the table's header
Lines = tuple[list[dict[str, Any]], list[str]]


def as_float(v: Any) -> float | None:
    """A record field as a number; None where it is missing or no number (a bool is a flag, not 1.0)."""
    if is_missing(v) or isinstance(v, bool):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def as_str(v: Any) -> str | None:
    """A record field as text; None where it is missing (NaN in a frame column)."""
    return None if is_missing(v) else str(v)


def is_close(a: float | None, b: float | None) -> bool:
    """Equal as config numbers (float noise aside); a missing side matches nothing."""
    return a is not None and b is not None and abs(a - b) < 1e-9


def _paper(v: float | None) -> float | str:
    if v is None:
        return NO_PAPER
    return "nan" if math.isnan(v) else v


def cell_pattern(keys: Mapping[str, Any]) -> dict[str, Any]:
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


def pattern_ok(rec: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    """Do a record's (or bench row's) pattern fields run ``want`` (a ``cell_pattern``)? No sparsity: 0.5."""
    kind = want["pattern_kind"]
    if rec.get("pattern_kind") != kind:
        return False
    if kind == "nm":
        return is_close(as_float(rec.get("n")), want["n"]) and is_close(as_float(rec.get("m")), want["m"])
    if kind in ("unstructured", "structured"):
        have = as_float(rec.get("sparsity"))
        return is_close(0.5 if have is None else have, want["sparsity"])
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
    v = as_float(have)
    return not local and is_close(70.0 if v is None else v, 70.0)


def _matches(rec: Mapping[str, Any], keys: Mapping[str, Any], model: str, local: bool) -> bool:
    """Does this record run the cell's configuration (on ``model``)?"""
    if rec.get("model") != model:
        return False
    want = cell_pattern(keys)
    if not pattern_ok(rec, want):
        return False
    if want["pattern_kind"] == "dense":
        return True  # a dense record has no metric, shuffle or calibration
    metric = as_str(rec.get("metric"))
    if metric != keys.get("method"):
        return False
    if (as_str(rec.get("shuffle")) or "none") != keys.get("shuffle", "none"):
        return False
    rec_flag = not is_missing(rec.get("reconstruct")) and bool(rec.get("reconstruct"))
    if metric != "sparsegpt" and rec_flag != bool(keys.get("reconstruct", False)):
        return False
    if metric == "ria":
        a = as_float(rec.get("metric_a"))
        if not is_close(0.5 if a is None else a, float(keys.get("a", 0.5))):
            return False
    form = as_str(rec.get("form")) or "alpha_entropy"
    if metric == "esparse" and form != keys.get("form", "alpha_entropy"):
        return False
    if metric == "esparse" and not _alpha_ok(rec.get("metric_alpha"), local and form == "alpha_entropy"):
        return False
    return _calibration_ok(as_str(rec.get("calibration")), keys.get("calibration"), local)


# ------------------------------------------------------------------------------ value readers


def _ppl_keys(keys: Mapping[str, Any], local: bool) -> list[str]:
    ds = keys.get("dataset", "wikitext2")
    return [f"ppl/{ds}"] + ([f"ppl/{LOCAL_CORPUS}"] if local and ds == "wikitext2" else [])


def _zs_one(rec: Mapping[str, Any], task: str) -> tuple[float, str] | None:
    for k in (f"zeroshot/{task}/acc", f"zeroshot/{task}_local/acc"):
        v = as_float(rec.get(k))
        if v is not None:
            return 100.0 * v, k
    return None


def _read_value(rec: Mapping[str, Any], keys: Mapping[str, Any], quantity: str, local: bool):
    """(value in the paper's unit, metric key read) or None if the record lacks it."""
    if quantity == "ppl":
        for k in _ppl_keys(keys, local):
            v = as_float(rec.get(k))
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
                    v = as_float(rec.get(f"dense/{k}"))
                    if v is not None:
                        return v, rec, f"dense/{k}"
    return None


def cell_line(cell: PaperCell, ours_model: str, found, wanted: str, same_model: bool) -> dict[str, Any]:
    """One line: the paper's number beside ``found`` = (value, record, key read), or "not run" in every
    our-column (and ``wanted``, the key that would have been read) where nothing was found."""
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
        "device": as_str(rec.get("device")) or "unknown",
        "metric_key": key,
        "config_hash": as_str(rec.get("config_hash")) or "unknown",
    }


def _signature(keys: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in keys.items() if k != "model"))


def orientation(cells: Iterable[PaperCell]) -> list[PaperCell]:
    """One cell per configuration-without-model: the one of the paper's smallest model."""
    best: dict[tuple, PaperCell] = {}
    for c in cells:
        sig = _signature(c.keys)
        rank = model_rank(c.keys.get("model", ""))
        if sig not in best or rank < model_rank(best[sig].keys.get("model", "")):
            best[sig] = c
    return list(best.values())


def done_list(records: pd.DataFrame) -> list[dict[str, Any]]:
    """Finished records, newest first: the first match is the newest, which is the one a cell shows."""
    return rec_io.done(records).to_dict("records") if not records.empty else []


def record_cells(
    table: PaperTable, ref: Mapping[str, PaperTable], records: pd.DataFrame, bench: pd.DataFrame | None = None
) -> Lines:
    """Model-keyed tables (perplexity, zero-shot): paper lines, then local lines. Reads no bench rows."""
    known = paper_models(ref)
    recs = done_list(records)
    lines = []
    for cell in table.cells:
        model = cell.keys.get("model", "")
        found = _lookup(cell, model, recs, table.quantity, local=False)
        lines.append(cell_line(cell, model, found, _wanted_key(cell.keys, table.quantity, False), True))
    for other in sorted({r["model"] for r in recs} - set(table.models)):
        local = other not in known
        extra = []
        for cell in orientation(table.cells):
            found = _lookup(cell, other, recs, table.quantity, local)
            extra.append(cell_line(cell, other, found, _wanted_key(cell.keys, table.quantity, local), False))
        if any(x["ours"] != NOT_RUN for x in extra):
            lines.extend(extra)
    return lines, []


def table_frame(lines: list[dict[str, Any]], table: PaperTable, title: str, notes: Iterable[str] = ()) -> pd.DataFrame:
    """The lines as one frame; ``attrs`` carry what the rendered header says (title, paper, caption, notes)."""
    df = pd.DataFrame(lines, columns=OUT_COLUMNS)
    df.attrs.update(
        name=table.name,
        title=title,
        paper=table.paper,
        table=table.table,
        where=table.where,
        caption=table.caption,
        notes=[*table.notes, *notes],
    )
    return df
