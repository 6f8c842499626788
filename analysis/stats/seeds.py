"""Uncertainty across runs: mean ± std over calibration seeds, and method comparisons paired by seed.

One run per cell is an anecdote: on the embedded default the calibration seed alone moves a 2:4
perplexity by several percent. A cell therefore holds every seed that ran, reported as
``mean ± std (n)`` (sample std, ddof=1), and two methods are compared on the seeds both ran,
**paired** (the same seed means the same calibration windows, so the seed's shared effect cancels):
a two-sided paired t-test on the per-seed differences at ``ALPHA``. Why the t-test and not a sign
test: with 3 seeds a sign test cannot reach p < 0.05 even when every seed agrees (its smallest
two-sided p is 0.25), so it could never separate anything; the t-test uses the sizes of the
differences, at the price of assuming they are roughly normal. A cell with one seed says n=1 and
claims nothing; a difference that is not significant is reported as "not separable".

A table makes many comparisons at once, so ``holm`` adjusts their p-values for the family (Holm's
step-down: controls the chance of any false separation at ``ALPHA`` without assuming independence,
and is never weaker than Bonferroni). Both are reported: the per-comparison p says what one
comparison shows, the adjusted p what survives the whole table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

ALPHA = 0.05


def _mean(values: Mapping[int, float]) -> float:
    return sum(values.values()) / len(values) if values else math.nan


@dataclass(frozen=True)
class Summary:
    """One cell: the value of every seed that ran."""

    values: Mapping[int, float] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return _mean(self.values)

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof=1); NaN for one seed (nothing to spread)."""
        if self.n < 2:
            return math.nan
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values.values()) / (self.n - 1))

    def format(self, digits: int = 1) -> str:
        if not self.n:
            return ""
        if self.n == 1:
            return f"{self.mean:.{digits}f} (n=1)"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f} ({self.n})"


def summarize(values: Mapping[int, float]) -> Summary:
    return Summary({int(k): float(v) for k, v in sorted(values.items())})


@dataclass(frozen=True)
class Paired:
    """``a - b`` on the seeds both ran, and what may be said of it."""

    diffs: Mapping[int, float]
    p: float

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def mean(self) -> float:
        return _mean(self.diffs)

    @property
    def significant(self) -> bool:
        return self.n >= 2 and not math.isnan(self.p) and self.p < ALPHA

    @property
    def mark(self) -> str:
        """``<`` or ``>`` (a vs b) where the test separates them, ``≈`` where it does not."""
        return ("<" if self.mean < 0 else ">") if self.significant else "≈"

    def verdict(self, a: str, b: str, holm: float | None = None) -> str:
        """The sentence a table states; ``holm`` (the family-adjusted p) is shown beside a separation."""
        if self.n < 2:
            return f"n={self.n}: no claim"
        if not self.significant:
            return f"{a} vs {b}: not separable (p={self.p:.2g}, n={self.n})"
        adjusted = "" if holm is None else f", Holm p={holm:.2g}"
        return f"{a} {self.mark} {b} (p={self.p:.2g}, n={self.n}{adjusted})"


def paired(a: Summary, b: Summary) -> Paired:
    """Paired two-sided t-test of ``a - b`` over the seeds both cells ran."""
    from scipy import stats

    common = sorted(set(a.values) & set(b.values))
    diffs = {s: a.values[s] - b.values[s] for s in common}
    if len(common) < 2:
        return Paired(diffs, math.nan)
    d = list(diffs.values())
    if all(x == d[0] for x in d):  # no spread: the t statistic is undefined (0/0 or x/0)
        return Paired(diffs, 1.0 if d[0] == 0 else 0.0)
    return Paired(diffs, float(stats.ttest_rel([a.values[s] for s in common], [b.values[s] for s in common]).pvalue))


def holm(ps: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the order given: the i-th smallest of k is multiplied by k - i + 1,
    then made non-decreasing in that order and capped at 1."""
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    out = [math.nan] * len(ps)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(ps) - rank) * ps[i]))
        out[i] = running
    return out
