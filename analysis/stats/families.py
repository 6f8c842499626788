"""Across families: each model's score cells side by side, and whether an ordering (or a channel
permutation's gain) holds in every model.

The papers claim their orderings across LLaMA and OPT; here the families are the bundled models. An
ordering holds across families only where every model separates it the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from analysis.stats import seeds
from analysis.stats.cells import PAPER_SCORES, PATTERNS, SHUFFLE_ROWS, SHUFFLES, cell, cells_of, lines, md

FAMILY_ROWS = PAPER_SCORES


def _sign(p: seeds.Paired) -> str:
    return f"{p.mark} (p={p.p:.2g}, n={p.n})" if p.n >= 2 else "no claim"


def _across(per: Sequence[seeds.Paired], models: Sequence[str], a: str, b: str) -> str:
    """Whether every model says the same of ``a`` vs ``b``."""
    if any(p.n < 2 for p in per):
        return "no claim (a model has < 2 common seeds)"
    marks = [p.mark for p in per]
    if set(marks) == {"≈"}:
        return "not separable in any"
    if len(set(marks)) == 1:
        return f"yes: {a} {marks[0]} {b}"
    if "<" in marks and ">" in marks:
        return "no: opposite orders"
    return "no: separable in " + ", ".join(m for m, k in zip(models, marks, strict=True) if k != "≈") + " only"


Pair = tuple[str, str, str, Sequence[seeds.Summary], Sequence[seeds.Summary]]


def _across_rows(pairs: Sequence[Pair], models: Sequence[str], better_first: bool = True) -> list[list[str]]:
    """One line per pair ``(row prefix, a, b, a's cells, b's cells)`` (a cell per model) that at least
    two models pair on two or more seeds: each model's verdict, then whether they all agree. With
    ``better_first`` the lower one over the models is named first, as the claims do."""
    rows = []
    for prefix, a, b, xa, xb in pairs:
        per = [seeds.paired(x, y) for x, y in zip(xa, xb, strict=True)]
        if sum(p.n >= 2 for p in per) < 2:  # one model alone says nothing across families
            continue
        if better_first and sum(p.mean for p in per if p.n >= 2) > 0:
            a, b, per = b, a, [seeds.paired(y, x) for x, y in zip(xa, xb, strict=True)]
        rows.append([f"{prefix}{a} vs {b}", *(_sign(p) for p in per), _across(per, models, a, b)])
    return rows


def families_table(recs: pd.DataFrame, models: Sequence[str]) -> str:
    """The scores on every model side by side, then each pair's paired verdict per model, then each
    channel permutation against ``none`` per model: an ordering or a gain holds across families only
    where every model separates it the same way."""
    cols = [(f"{m} {p}", {"model": m, "pattern": p}) for m in models for p in PATTERNS]
    cells = cells_of(recs, FAMILY_ROWS, cols)
    table = md(["score", *(c for c, _ in cols)], lines(cells, FAMILY_ROWS, cols))
    parts = ["Every model's cells side by side:", table]
    how = (f"paired by seed per model (`<`/`>`: separable at α = {seeds.ALPHA} per comparison, uncorrected; "
           "`≈`: not separable)")  # fmt: skip
    for pat in PATTERNS:
        col = [f"{m} {pat}" for m in models]
        pairs = [("", a.label, b.label, [cells[(a.label, c)] for c in col], [cells[(b.label, c)] for c in col])
                 for i, a in enumerate(FAMILY_ROWS) for b in FAMILY_ROWS[i + 1 :]]  # fmt: skip
        if rows := _across_rows(pairs, models):
            parts += [f"At {pat}, each pair {how}:", md([f"{pat} pair", *models, "same in every model"], rows)]
    for pat in PATTERNS:
        per_model = {(r.label, s): [cell(recs, {**r.where, "model": m, "pattern": pat, "shuffle": s}) for m in models]
                     for r in SHUFFLE_ROWS for s in SHUFFLES}  # fmt: skip
        pairs = [(f"{r.label}: ", f"`{s}`", "`none`", per_model[(r.label, s)], per_model[(r.label, "none")])
                 for r in SHUFFLE_ROWS for s in SHUFFLES if s != "none"]  # fmt: skip
        if rows := _across_rows(pairs, models, better_first=False):
            head = f"At {pat}, each channel permutation against `none`, {how}:"
            parts += [head, md([f"{pat} permutation", *models, "same in every model"], rows)]
    return "\n\n".join(parts)
