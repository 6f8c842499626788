"""Steps after a score's mask, each against the same run without it, paired by seed.

Two steps run on top of any score: DSnoT's mask refinement (``refine=dsnot``), with or without a
channel permutation before it, and quantization of the pruned weights (``quant=gptq|awq``, RIA's
appendix I). A step is worth its cost only where it separates from its own base: the same score,
pattern, permutation and calibration seed without the step. Each table's comparisons are one Holm
family (``analysis.stats.claims``).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from analysis.stats import claims, seeds
from analysis.stats.cells import ESPARSE, RIA, WANDA, Row, cells_of, lines, md

DSNOT_ROWS = (WANDA, RIA, ESPARSE)
#: (column, the records' fields) of the DSnoT table: each permutation without, then with DSnoT
DSNOT_COLUMNS = tuple((f"{name}{step}", {"shuffle": shuffle, **refine})
                      for name, shuffle in (("no permutation", "none"), ("`ria_cp_lsa`", "ria_cp_lsa"))
                      for step, refine in (("", {}), (" + DSnoT", {"refine": "dsnot"})))  # fmt: skip

#: RIA Table 12's rows: magnitude and RIA over the whole layer at 50 % unstructured (Table 1's
#: reading), Wanda and SparseGPT per row; at 2:4 every score per row
UNSTRUCTURED = {"pattern": "unstructured", "sparsity": 0.5}
QUANT_ROWS = (
    Row("magnitude (whole layer)", {"metric": "magnitude", "scope": "layer", "reconstruct": False}),
    Row("SparseGPT", {"metric": "sparsegpt", "scope": "row"}),
    Row("Wanda", {**WANDA.where, "scope": "row"}),
    Row("RIA (whole layer)", {**RIA.where, "scope": "layer"}),
)
QUANT_ROWS_NM = (
    Row("magnitude", {"metric": "magnitude", "reconstruct": False}),
    Row("SparseGPT", {"metric": "sparsegpt"}),
    WANDA,
    RIA,
)
#: the quantization the presets run (conf/experiment/ria_t12_*.yaml): 4 bits in groups of 128, pruned first
QUANT_SETTING = {"quant_bits": 4.0, "quant_group_size": 128.0, "quant_order": "prune_first"}
QUANT_COLUMNS = (
    ("as pruned", {}),
    ("+ GPTQ (4-bit, g128)", {"quant": "gptq", **QUANT_SETTING}),
    ("+ AWQ (4-bit, g128)", {"quant": "awq", **QUANT_SETTING}),
)


def _table(recs: pd.DataFrame, rows: Sequence[Row], cols, where: dict, steps: Sequence[str]):
    """The rows with a record in any of the ``steps`` columns (none: no table), and every cell."""
    columns = [(c, {**where, **w}) for c, w in cols]
    cells = cells_of(recs, rows, columns)
    stepped = {r.label for r in rows if any(cells[(r.label, c)].n for c in steps)}
    table = [row for row in lines(cells, rows, columns) if row[0] in stepped]
    return table, cells


def _step_claims(cells: dict, rows: Sequence[Row], steps: Sequence[tuple[str, str]]) -> list[claims.Claim]:
    """Each ``(with the step, without it)`` column pair in every row, paired by seed."""
    out = []
    for r in rows:
        for with_step, base in steps:
            p = seeds.paired(cells[(r.label, with_step)], cells[(r.label, base)])
            if p.n >= 2:
                out.append(claims.Claim(r.label, with_step, base, p))
    return out


def dsnot_part(recs: pd.DataFrame, model: str, pattern: str) -> list[str]:
    """DSnoT on each score's mask, without and after ``ria_cp_lsa``, and whether it separates from
    its base; nothing when no DSnoT record exists for this model and pattern."""
    names = [c for c, _ in DSNOT_COLUMNS]
    table, cells = _table(recs, DSNOT_ROWS, DSNOT_COLUMNS, {"model": model, "pattern": pattern}, names[1::2])
    if not table:
        return []
    found = _step_claims(cells, DSNOT_ROWS, [(names[1], names[0]), (names[3], names[2])])
    return [f"DSnoT at {pattern} (`refine=dsnot`, its official defaults):", md([pattern, *names], table),
            claims.render(found, "DSnoT against the same mask without it")]  # fmt: skip


def quant_part(recs: pd.DataFrame, model: str) -> list[str]:
    """RIA Table 12 on this model: prune, then quantize; each quantizer against the pruned model and
    against the other; nothing when no quantized record exists."""
    parts = []
    for what, rows, where in (("50 % unstructured (RIA Table 12's setting)", QUANT_ROWS, UNSTRUCTURED),
                              ("2:4 (ours)", QUANT_ROWS_NM, {"pattern": "2:4"})):  # fmt: skip
        names = [c for c, _ in QUANT_COLUMNS]
        table, cells = _table(recs, rows, QUANT_COLUMNS, {"model": model, **where}, names[1:])
        if not table:
            continue
        found = _step_claims(cells, rows, [(names[1], names[0]), (names[2], names[0]), (names[1], names[2])])
        parts += [f"Prune, then quantize, at {what}:", md(["score", *names], table),
                  claims.render(found, "each quantizer against the pruned model, and GPTQ against AWQ")]  # fmt: skip
    return parts
