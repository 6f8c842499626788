"""Cells of the results page: which records a row and a column select, and their summary over seeds.

Rows are the scores the papers compare (and the variants of them we run); a cell is
``mean ± std (n)`` over calibration seeds (``analysis.stats.seeds``), one record per seed, read from
records of the embedded default's sizes only (``selection.LOCAL_SIZES``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import records as rec_io
from analysis.stats import claims, seeds
from analysis.tables.matching import seed_of
from analysis.tables.selection import DEFAULT_TIE_BREAK, as_float, at_local_sizes, is_close

VALUE = "ppl/bundled_wiki"


@dataclass(frozen=True)
class Row:
    """One line of a table: its label and the record fields that select it."""

    label: str
    where: Mapping[str, Any]


MAGNITUDE = Row("magnitude", {"metric": "magnitude"})
WANDA = Row("Wanda", {"metric": "wanda", "reconstruct": False})
RIA = Row("RIA (a = 0.5)", {"metric": "ria", "metric_a": 0.5, "reconstruct": False})
ESPARSE = Row(
    "E-Sparse, α = auto (default)",
    {"metric": "esparse", "metric_alpha": "auto", "form": "alpha_entropy", "metric_norm": "wanda"},
)
SPARSEGPT = Row("SparseGPT", {"metric": "sparsegpt"})
RI = Row("RI (RIA without activations)", {"metric": "ri", "reconstruct": False})
ESPARSE_70 = Row(
    "E-Sparse, α = 70, α·H + ‖X‖",
    {"metric": "esparse", "metric_alpha": 70.0, "form": "alpha_entropy", "metric_norm": "wanda"},
)
ESPARSE_70_L2 = Row(
    "E-Sparse, α = 70, α·H + ‖X‖₂ over all tokens (`norm=l2`, the paper's text)",
    {"metric": "esparse", "metric_alpha": 70.0, "form": "alpha_entropy", "metric_norm": "l2"},
)
ESPARSE_70_NORM = Row(
    "E-Sparse, α = 70, H + α·‖X‖ (`form=alpha_norm`)",
    {"metric": "esparse", "metric_alpha": 70.0, "form": "alpha_norm", "metric_norm": "wanda"},
)
WANDA_REC = Row("Wanda + rec", {"metric": "wanda", "reconstruct": True})
RIA_CP_GROUP = Row("RIA + `ria_cp_lsa`, one permutation per input group (default)",
                   {"metric": "ria", "metric_a": 0.5, "reconstruct": False, "shuffle": "ria_cp_lsa"})  # fmt: skip
RIA_CP_LINEAR = Row("RIA + `ria_cp_lsa`, one per linear (`share=linear`, RIA's code)",
                    {"metric": "ria", "metric_a": 0.5, "reconstruct": False, "shuffle": "ria_cp_lsa",
                     "shuffle_share": "linear"})  # fmt: skip
RIA_CP_OFFICIAL = Row("RIA + `ria_cp_lsa` as RIA's code: per linear, 4/8/16 contiguous communities (`official`)",
                      {"metric": "ria", "metric_a": 0.5, "reconstruct": False, "shuffle": "ria_cp_lsa",
                       "shuffle_share": "linear", "shuffle_communities": "official"})  # fmt: skip
RIA_REC = Row("RIA + rec", {"metric": "ria", "metric_a": 0.5, "reconstruct": True})
SCORES = (MAGNITUDE, RI, WANDA, RIA, ESPARSE, ESPARSE_70, ESPARSE_70_L2, ESPARSE_70_NORM, SPARSEGPT, WANDA_REC, RIA_REC,
          RIA_CP_GROUP, RIA_CP_LINEAR, RIA_CP_OFFICIAL)  # fmt: skip
# What the score table tests: every pair of the methods the papers compare, and each variant against
# the one score it varies. Not every pair of rows: "Wanda + rec vs E-Sparse at α = 70" answers no
# question, and each such comparison only widens the family Holm adjusts over.
PAPER_SCORES = (MAGNITUDE, WANDA, RIA, ESPARSE, SPARSEGPT)
VARIANT_OF = ((RI, RIA), (ESPARSE_70, ESPARSE), (ESPARSE_70_L2, ESPARSE), (ESPARSE_70_L2, WANDA),
              (ESPARSE_70_NORM, ESPARSE), (WANDA_REC, WANDA), (RIA_REC, RIA),
              (RIA_CP_LINEAR, RIA_CP_GROUP), (RIA_CP_OFFICIAL, RIA_CP_GROUP))  # fmt: skip
SHUFFLE_ROWS = (WANDA, RIA, ESPARSE)
#: the permutation table's columns, in reading order (the runs browser sorts its shuffle axis by them)
SHUFFLES = ("none", "esparse_global", "esparse", "ria_cp", "ria_cp_lsa", "lsa_relabel")
SPREAD_ROWS = PAPER_SCORES
PATTERNS = ("2:4", "4:8")


def local_records(results_dir: str | Path, value: str = VALUE) -> pd.DataFrame:
    """Finished records of the embedded default's sizes that carry ``value``, newest first (one per
    config hash)."""
    recs = rec_io.done(rec_io.load_records(results_dir))
    if recs.empty or value not in recs:
        return recs.iloc[0:0]
    recs = recs.drop_duplicates("config_hash")
    keep = recs.apply(at_local_sizes, axis=1)
    return recs[keep & recs[value].notna()]


def equal(have: Any, want: Any) -> bool:
    if isinstance(want, bool):
        return bool(have) == want if not rec_io.is_missing(have) else not want
    if isinstance(want, float):
        return is_close(as_float(have), want)
    return str(have) == str(want)


def cell(recs: pd.DataFrame, where: Mapping[str, Any]) -> seeds.Summary:
    """The summary over seeds of the records whose fields equal ``where`` (one record per seed: the
    newest; the default tie rule, permutation sharing and communities, no mask refinement and no
    quantization unless
    ``where`` names them)."""
    want = {"tie_break": DEFAULT_TIE_BREAK, "shuffle": "none", "shuffle_share": "group", "shuffle_communities": "auto",
            "refine": "none", "quant": "none", **where}  # fmt: skip
    per_seed: dict[int, float] = {}
    for r in recs.to_dict("records"):
        if all(equal(r.get(k), v) for k, v in want.items()):
            per_seed.setdefault(seed_of(r), float(r[VALUE]))
    return seeds.summarize(per_seed)


def md(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


Columns = Sequence[tuple[str, Mapping[str, Any]]]


def cells_of(recs: pd.DataFrame, rows: Sequence[Row], columns: Columns) -> dict[tuple[str, str], seeds.Summary]:
    return {(r.label, c): cell(recs, {**r.where, **w}) for r in rows for c, w in columns}


def lines(cells: Mapping[tuple[str, str], seeds.Summary], rows: Sequence[Row], columns: Columns) -> list[list[str]]:
    return [[r.label] + [cells[(r.label, c)].format() or "not run" for c, _ in columns] for r in rows]


def grid(recs: pd.DataFrame, rows: Sequence[Row], columns: Columns, among: Sequence[Row], skip: str = ""):
    """Cells, and the paired claims between the rows ``among`` in every column but ``skip`` (one
    already compared elsewhere)."""
    cells = cells_of(recs, rows, columns)
    table = [row for row in lines(cells, rows, columns) if any(c != "not run" for c in row[1:])]  # never run: no line
    found = [v for c, _ in columns if c != skip
             for v in claims.verdicts({r.label: cells[(r.label, c)] for r in among}, c)]  # fmt: skip
    return table, found, cells


def models(recs: pd.DataFrame) -> list[str]:
    """The embedded default first, then the others by name."""
    return sorted(set(recs["model"]), key=lambda m: (m != "smollm2_135m", m))
