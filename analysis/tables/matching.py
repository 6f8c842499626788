"""Records -> paper cells: which finished record fills a cell, what is read from it, the line it becomes.

Every table is one line per cell with the columns ``OUT_COLUMNS``:

- ``paper``: the printed number ("—" where the paper prints none, "nan" where it prints nan);
- ``ours``: our number in the paper's unit, or "not run" — never blank, never filled in;
- ``diff``: ours − paper; "n/a (other model)" on a local line (see below);
- ``config_hash``: the record behind ``ours`` ("bench:<file>" for a bench file's row).

Which records fill a cell: the finished (status "done") records whose config matches the cell
(model, metric, pattern, shuffle, reconstruct, RIA's ``a``, E-Sparse's ``form``, calibration), made
under the default tie-break rule, that carry the cell's metric: one per calibration seed (the newest
where a seed has several: ``env.finished_at``, else the file's mtime). ``ours`` is their mean, ``sd``
and ``n`` their spread and count (``analysis.stats.seeds``), and ``vs_best`` compares the line, paired by
seed, with the best line of its model and pattern in the table. Cells name no calibration when the
paper used its default, C4.

Local lines: a model that the paper table does not report (the embedded smollm2_135m, say) gets
one line per paper cell-without-model, placed next to the paper's smallest model for
orientation, with ``ours_model`` naming it. Its perplexity falls back to the bundled Wikipedia
corpus (``ppl/bundled_wiki``) where the paper used WikiText-2, and its calibration to the bundled
corpus where the paper used C4 or WikiText-2; ``metric_key`` says which key was read. A local line
reads only records of the embedded default's sizes (``LOCAL_SIZES``), so a reduced-size check never
stands in for the headline configuration.

Cells filled from bench rows (latency, memory, permutation time): ``analysis.tables.bench_tables``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from analysis import records as rec_io
from analysis.stats import seeds
from analysis.tables.reference import PaperCell, PaperTable, model_rank, paper_models
from analysis.tables.selection import (
    LOCAL_CORPUS,
    as_float,
    as_str,
    cell_pattern,
    matches,
)

NOT_RUN = "not run"
NO_PAPER = "—"
OTHER_MODEL = "n/a (other model)"
NO_PAPER_DIFF = "n/a (no paper value)"
OUT_COLUMNS = ["row", "column", "paper", "ours", "sd", "n", "vs_best", "diff", "ours_model", "device", "metric_key",
               "config_hash"]  # fmt: skip
#: the columns that describe our run (all "not run" where nothing ran; "—" where one does not apply)
OUR_COLUMNS = ("ours", "sd", "n", "vs_best", "diff", "device", "config_hash")

LOWER_IS_BETTER = {"ppl": True, "zeroshot_acc": False}

#: one line per cell (``OUT_COLUMNS``) and notes for the table's header
Lines = tuple[list[dict[str, Any]], list[str]]


def _paper(v: float | None) -> float | str:
    if v is None:
        return NO_PAPER
    return "nan" if math.isnan(v) else v


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


@dataclass(frozen=True)
class Found:
    """What fills a cell: the value of each calibration seed, the record of each, the key read."""

    summary: seeds.Summary
    recs: tuple[Mapping[str, Any], ...]
    key: str

    @property
    def value(self) -> float:
        return self.summary.mean


def seed_of(rec: Mapping[str, Any]) -> int:
    s = as_float(rec.get("seed"))
    return 0 if s is None else int(s)


def _lookup(cell: PaperCell, model: str, recs: list[dict], quantity: str, local: bool) -> Found | None:
    """Every calibration seed's newest matching record that has the value, or None."""
    keys = cell.keys
    per_seed: dict[int, tuple[float, Mapping[str, Any], str]] = {}
    for rec in recs:  # newest first: the first record of a seed is the one it shows
        if seed_of(rec) not in per_seed and matches(rec, keys, model, local):
            got = _read_value(rec, keys, quantity, local)
            if got is not None:
                per_seed[seed_of(rec)] = (got[0], rec, got[1])
    if per_seed:
        ordered = sorted(per_seed.items())
        summary = seeds.summarize({s: v for s, (v, _, _) in ordered})
        return Found(summary, tuple(r for _, (_, r, _) in ordered), ordered[0][1][2])
    if quantity == "ppl" and keys.get("method") == "dense":
        # the dense baseline a pruned run recorded beside its own numbers (no seed: it calibrates nothing)
        for rec in recs:
            if rec.get("model") == model:
                for k in _ppl_keys(keys, local):
                    v = as_float(rec.get(f"dense/{k}"))
                    if v is not None:
                        return Found(seeds.summarize({0: v}), (rec,), f"dense/{k}")
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
            "sd": NOT_RUN,
            "n": NOT_RUN,
            "vs_best": NOT_RUN,
            "diff": NOT_RUN,
            "device": NOT_RUN,
            "metric_key": wanted,
            "config_hash": NOT_RUN,
        }
    if isinstance(found, Found):
        value, rec, key, summary = found.value, found.recs[0], found.key, found.summary
        hashes = " ".join(as_str(r.get("config_hash")) or "unknown" for r in found.recs)
    else:  # a single measurement (a bench row)
        value, rec, key = found
        summary, hashes = None, as_str(rec.get("config_hash")) or "unknown"
    if not same_model:
        diff: float | str = OTHER_MODEL
    elif isinstance(paper, float):
        diff = value - paper
    else:
        diff = NO_PAPER_DIFF
    return {
        **line,
        "ours": value,
        "sd": NO_PAPER if summary is None or summary.n < 2 else summary.std,
        "n": NO_PAPER if summary is None else summary.n,
        "vs_best": NO_PAPER,
        "diff": diff,
        "device": as_str(rec.get("device")) or "unknown",
        "metric_key": key,
        "config_hash": hashes,
        "_summary": summary,
        "_group": (ours_model, cell.column, cell_pattern(cell.keys).get("pattern"), cell.keys.get("method") == "dense"),
    }


def mark_best(lines: list[dict[str, Any]], lower_is_better: bool) -> list[dict[str, Any]]:
    """Fill ``vs_best``: within each (model, column, pattern) of pruned lines, the best mean is "best"
    and every other line is compared with it paired by seed (``analysis.stats.seeds.paired``): "worse"
    where the t-test separates them, "not separable" where it does not, "no claim" under two common
    seeds. Lines alone in their group, dense lines and lines without seeds stay blank."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for line in lines:
        if line.get("_summary") is not None and not line["_group"][3]:
            groups.setdefault(line["_group"], []).append(line)
    for members in groups.values():
        if len(members) < 2:
            continue
        best = (min if lower_is_better else max)(members, key=lambda x: x["_summary"].mean)
        for line in members:
            if line is best:
                line["vs_best"] = "best" if best["_summary"].n > 1 else "best (n=1: no claim)"
                continue
            p = seeds.paired(line["_summary"], best["_summary"])
            if p.n < 2:
                line["vs_best"] = f"no claim (n={p.n})"
            else:
                line["vs_best"] = f"{'worse' if p.significant else 'not separable'} (p={p.p:.2g}, n={p.n})"
    return [{k: v for k, v in line.items() if not k.startswith("_")} for line in lines]


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
    return mark_best(lines, LOWER_IS_BETTER.get(table.quantity, True)), []


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
        models=list(table.models),
    )
    return df
