"""Paired claims under a table, and how they are stated.

A table's comparisons form one family: each gets its per-comparison p and its Holm-adjusted p over
the family (``seeds.holm``). A list then says, honestly apart, what **survives Holm**, what holds
**per comparison only** (p < α, not after the adjustment) and what is **not separable**; only the
first is a claim a reader should repeat.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from analysis.stats import items as item_tests
from analysis.stats import seeds


@dataclass(frozen=True)
class Claim:
    """One paired comparison a table makes: ``a`` vs ``b`` within ``where`` (a column or a row)."""

    where: str
    a: str
    b: str
    paired: seeds.Paired | item_tests.ItemPaired

    def text(self, holm: float | None = None) -> str:
        return f"{self.where}: " + self.paired.verdict(self.a, self.b, holm)


def pairwise(ranked: Sequence[tuple[str, Any]], test: Callable[[Any, Any], Any], where: str) -> list[Claim]:
    """``test`` on every pair of ``ranked`` (the better one first, as ranked), where it gives a
    comparison (``None``: nothing to pair)."""
    out = []
    for i, (a, xa) in enumerate(ranked):
        for b, xb in ranked[i + 1 :]:
            p = test(xa, xb)
            if p is not None:
                out.append(Claim(where, a, b, p))
    return out


def seed_pair(a: seeds.Summary, b: seeds.Summary) -> seeds.Paired | None:
    p = seeds.paired(a, b)
    return p if p.n >= 2 else None


def verdicts(cells: Mapping[str, seeds.Summary], column: str) -> list[Claim]:
    """Every pair with two or more common seeds, lower mean first (perplexity: lower is better)."""
    ranked = sorted(((k, s) for k, s in cells.items() if s.n >= 2), key=lambda ks: ks[1].mean)
    return pairwise(ranked, seed_pair, column)


def against(cells: Mapping[tuple[str, str], seeds.Summary], pairs: Sequence[tuple[str, str]], columns: Sequence[str]):
    """Each ``(variant, base)`` row pair in every column, the variant named first."""
    out = []
    for c in columns:
        for variant, base in pairs:
            p = seeds.paired(cells[(variant, c)], cells[(base, c)])
            if p.n >= 2:
                out.append(Claim(c, variant, base, p))
    return out


def vs_baseline(cells: Mapping[tuple[str, str], seeds.Summary], base: str) -> list[Claim]:
    """Each row's other columns against its own ``base`` column, paired by seed: does the step help?"""
    out = []
    for (label, col), s in cells.items():  # row by row, as the cells were built
        if col != base:
            p = seeds.paired(s, cells[(label, base)])
            if p.n >= 2:
                out.append(Claim(label, f"`{col}`", f"`{base}`", p))
    return out


def adjusted(claims: Sequence[Claim]) -> list[tuple[Claim, float]]:
    """Each claim with its Holm-adjusted p over the list."""
    return list(zip(claims, seeds.holm([c.paired.p for c in claims]), strict=True))


def surviving(claims: Sequence[Claim]) -> list[tuple[Claim, float]]:
    """The separations that hold after Holm's adjustment over the list."""
    return [(c, h) for c, h in adjusted(claims) if c.paired.significant and h < seeds.ALPHA]


def render(claims: list[Claim], what: str = "", by: str = "seed", test: str = "two-sided paired t-test") -> str:
    """The list under a table: what survives Holm, what holds per comparison only, what is not
    separable, each separation with both p-values."""
    of = f", {what}" if what else ""
    if not claims:
        return f"Paired by {by}{of}: no pair has two common {by}s yet, so no ordering is claimed."
    k = len(claims)
    both = adjusted(claims)
    held = [c.text(h) for c, h in both if c.paired.significant and h < seeds.ALPHA]
    only = [c.text(h) for c, h in both if c.paired.significant and h >= seeds.ALPHA]
    none = [c.text() for c, _ in both if not c.paired.significant]
    lines = [f"Paired by {by}{of} ({test}, {k} comparisons; Holm p: adjusted over the {k}, "
             f"family-wise α = {seeds.ALPHA}):"]  # fmt: skip
    lines += [f"- survives Holm: {x}" for x in held] or ["- survives Holm: none"]
    lines += [f"- per comparison only (p < {seeds.ALPHA}, not after Holm): {x}" for x in only]
    lines += [f"- {x}" for x in none]
    return "\n".join(lines)
