"""Zero-shot models paired item by item (McNemar's exact test), against values computed by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis.stats import headline, items


def test_mcnemar_counts_only_the_discordant_items():
    # items right in a only: 0 and 2; in b only: none; the two shared items say nothing
    p = items.mcnemar("1110", "0100")
    assert (p.only_a, p.only_b, p.n) == (2, 0, 4)
    assert p.p == pytest.approx(0.5)  # two fair coins both landing "a": 2 x 0.5^2
    assert p.mean == pytest.approx(0.5) and not p.significant


def test_mcnemar_exact_p_by_hand():
    assert items.mcnemar("1" * 10 + "0" * 5, "0" * 10 + "0" * 5).p == pytest.approx(2 * 0.5**10)
    # 7 vs 3 discordant: 2 x P(X >= 7 | 10, 1/2) = 2 x (120 + 45 + 10 + 1) / 1024
    seven_three = items.mcnemar("1111111000", "0000000111")
    assert seven_three.p == pytest.approx(2 * 176 / 1024) and seven_three.mark == "≈"
    assert items.mcnemar("0101", "0101").p == 1.0  # no discordant item: nothing to separate


def test_different_items_are_not_paired():
    a = {"piqa_local": {"n": 4, "docs_sha": "aaa", "acc": "1100"}}
    b = {"piqa_local": {"n": 4, "docs_sha": "bbb", "acc": "1000"}}
    assert items.compare(a, b, "piqa_local", "acc") is None
    assert items.compare(a, None, "piqa_local", "acc") is None  # a record made before items were logged
    assert items.compare(a, a, "piqa_local", "acc").p == 1.0
    with pytest.raises(ValueError, match="not the same items"):
        items.mcnemar("101", "10")


def _write(tmp: Path, h: str, cfg: dict, metrics: dict, details: dict | None = None) -> None:
    rec = {"config": cfg, "config_hash": h, "status": "done", "metrics": metrics, "env": {}, "details": details or {}}
    (tmp / "runs").mkdir(exist_ok=True)
    (tmp / "runs" / f"{h}.json").write_text(json.dumps(rec))


def _zs(tmp: Path, h: str, metric: str, outcome: str, docs: str = "same") -> None:
    cfg = {
        "model": {"name": "smollm2_135m"},
        "metric": {"name": metric, "reconstruct": False, **({"a": 0.5} if metric == "ria" else {})},
        "pattern": {"name": "2:4", "kind": "nm", "n": 2, "m": 4},
        "shuffle": {"name": "none"},
        "calibration": {"name": "bundled_wiki", "nsamples": 32, "seqlen": 512, "seed": 0},
        "eval": {"ppl": {"nsamples": 32, "seqlen": 512}, "zeroshot": {"limit": None}},
    }
    acc = outcome.count("1") / len(outcome)
    key = headline.ZEROSHOT
    metrics = {f"{key}/acc": acc, f"{key}/acc_stderr": 0.05, f"{key}/acc_norm": acc, f"{key}/acc_norm_stderr": 0.05}
    zs = {"items": {"piqa_local": {"n": len(outcome), "docs_sha": docs, "acc": outcome}}}
    _write(tmp, h, cfg, metrics, {"zeroshot": zs})
    _write(tmp, f"{h}ppl", cfg, {headline.VALUE: 100.0})  # the model needs a perplexity record for a section


def test_the_headline_pairs_whole_set_zero_shot_records_by_item(tmp_path):
    wanda = "1" * 60 + "0" * 40  # acc 0.60
    ria = "1" * 58 + "00" + "1" * 12 + "0" * 28  # wanda's first 58 and 12 of its wrong ones: acc 0.70
    _zs(tmp_path, "w", "wanda", wanda)
    _zs(tmp_path, "r", "ria", ria)
    _zs(tmp_path, "m", "magnitude", "1" * 50 + "0" * 50, docs="other items")  # never paired
    text = headline.build(tmp_path)
    # RIA right alone on 12 items, Wanda on 2: 2 x P(X <= 2 | 14, 1/2) = 2 x (1 + 14 + 91) / 16384 = 0.013
    want = "- survives Holm: acc: RIA (a = 0.5), 2:4 > Wanda, 2:4 (McNemar p=0.013, Holm p=0.013; 12 vs 2 of 100"
    assert want in text
    assert "Paired by item, PIQA acc (McNemar's exact test, 1 comparisons; Holm p: adjusted over the 1" in text
    assert "magnitude, 2:4 vs" not in text and "vs magnitude" not in text
