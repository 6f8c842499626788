"""The README's measured section is what the committed records give, number for number, and its
claims follow the paired test: a README number without a record behind it fails here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis import headline

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def reference_only(tmp_path: Path) -> Path:
    """A results dir holding only the committed records (a developer's own runs/ must not count)."""
    (tmp_path / "reference").mkdir()
    (tmp_path / "reference" / "runs").symlink_to(ROOT / "results" / "reference" / "runs")
    return tmp_path


def test_the_readme_block_is_generated_from_the_committed_records(reference_only):
    text = (ROOT / "README.md").read_text()
    block = text.split(headline.BEGIN, 1)[1].split(headline.END, 1)[0].strip()
    assert block == headline.build(reference_only), (
        "README's measured section differs from the records: run `python -m analysis headline --readme README.md`"
    )


def _rec(tmp: Path, h: str, metric: str, seed: int, ppl: float, **pattern) -> None:
    cfg = {
        "model": {"name": "smollm2_135m"},
        "metric": {"name": metric, "reconstruct": False, **({"a": 0.5} if metric == "ria" else {})},
        "pattern": {"name": "2:4", "kind": "nm", "n": 2, "m": 4, **pattern},
        "shuffle": {"name": "none"},
        "calibration": {"name": "bundled_wiki", "nsamples": 32, "seqlen": 512, "seed": seed},
        "eval": {"ppl": {"nsamples": 32, "seqlen": 512}},
    }
    rec = {"config": cfg, "config_hash": h, "status": "done", "metrics": {headline.VALUE: ppl}, "env": {}}
    (tmp / "runs").mkdir(exist_ok=True)
    (tmp / "runs" / f"{h}.json").write_text(json.dumps(rec))


def test_cells_claims_and_spreads_by_hand(tmp_path):
    for s, (w, r) in enumerate([(180.0, 170.0), (190.0, 171.0), (170.0, 169.0)]):
        _rec(tmp_path, f"w{s}", "wanda", s, w)
        _rec(tmp_path, f"r{s}", "ria", s, r)
    _rec(tmp_path, "rhigh", "ria", 0, 174.0, tie_break="high_index")
    _rec(tmp_path, "rrand", "ria", 0, 168.3, tie_break="random")
    text = headline.build(tmp_path)
    assert "| Wanda | 180.0 ± 10.0 (3) | not run |" in text
    assert "| RIA (a = 0.5) | 170.0 ± 1.0 (3) | not run |" in text
    # Wanda - RIA = 10, 19, 1: mean 10, sd 9, t = 10 / (9 / sqrt 3) = 1.92, two-sided p(2 df) = 0.19
    assert "2:4: RIA (a = 0.5) vs Wanda: not separable (p=0.19, n=3)" in text
    assert "separable: none" in text
    # seed range (171 - 169) / 170 = 1.2 %; tie range (174 - 168.3) / mean(170, 174, 168.3) = 3.3 %
    assert "| RIA (a = 0.5) | 170.0 ± 1.0 (3) | 170.0 | 174.0 | 168.3 | 1.2% | 3.3% |" in text
