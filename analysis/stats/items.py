"""Zero-shot models compared item by item: McNemar's exact test on the items they disagree on.

Two models scored on the same PIQA items are paired data: an item both get right (or both wrong)
says nothing about which is better, so only the discordant items count. Under "equally good" each
discordant item is a fair coin, so the two-sided exact binomial test of "a right, b wrong" among
them is McNemar's exact test. It separates far smaller differences than two independent stderrs
(± 0.011 each on 1,838 items), because the models share most of their errors. It needs each
record's per-item outcomes (``details.zeroshot.items``, written since the zero-shot stage logs
samples) and the same items in both (equal ``docs_sha``); otherwise there is nothing to pair.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from analysis.stats import seeds


@dataclass(frozen=True)
class ItemPaired:
    """``a`` vs ``b`` over the same items: ``only_a`` items right in ``a`` alone, ``only_b`` in ``b``
    alone. Reads like ``seeds.Paired`` (``p``, ``significant``, ``mark``, ``verdict``), so a claims
    list can hold both; the mark compares accuracy, so ``>`` means ``a`` is the better one."""

    only_a: int
    only_b: int
    n: int
    p: float

    @property
    def mean(self) -> float:
        """Accuracy of ``a`` minus accuracy of ``b``."""
        return (self.only_a - self.only_b) / self.n if self.n else math.nan

    @property
    def significant(self) -> bool:
        return not math.isnan(self.p) and self.p < seeds.ALPHA

    @property
    def mark(self) -> str:
        return (">" if self.mean > 0 else "<") if self.significant else "≈"

    def verdict(self, a: str, b: str, holm: float | None = None) -> str:
        counts = f"{self.only_a} vs {self.only_b} of {self.n} items right in one only"
        if not self.significant:
            return f"{a} vs {b}: not separable (McNemar p={self.p:.2g}; {counts})"
        adjusted = "" if holm is None else f", Holm p={holm:.2g}"
        return f"{a} {self.mark} {b} (McNemar p={self.p:.2g}{adjusted}; {counts})"


def mcnemar(a: str, b: str) -> ItemPaired:
    """Exact McNemar test of two equal-length 0/1 outcome strings (one character per item)."""
    from scipy import stats

    if len(a) != len(b):
        raise ValueError(f"outcome strings differ in length ({len(a)} vs {len(b)}): not the same items")
    only_a = sum(x == "1" and y == "0" for x, y in zip(a, b, strict=True))
    only_b = sum(x == "0" and y == "1" for x, y in zip(a, b, strict=True))
    k = only_a + only_b
    p = 1.0 if k == 0 else float(stats.binomtest(only_a, k, 0.5).pvalue)
    return ItemPaired(only_a, only_b, len(a), p)


def outcomes(items: Any, task: str, metric: str) -> tuple[str, str] | None:
    """``(docs_sha, outcome string)`` of one task and metric from a record's items, or None."""
    entry = items.get(task) if isinstance(items, Mapping) else None
    if not isinstance(entry, Mapping) or not isinstance(entry.get(metric), str):
        return None
    return str(entry.get("docs_sha")), entry[metric]


def compare(items_a: Any, items_b: Any, task: str, metric: str) -> ItemPaired | None:
    """McNemar of two records' items, or None when either lacks them or they are not the same items."""
    a, b = outcomes(items_a, task, metric), outcomes(items_b, task, metric)
    if a is None or b is None or a[0] != b[0]:
        return None
    return mcnemar(a[1], b[1])
