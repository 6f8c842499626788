"""Corpora: deterministic article split with no overlap, windows, calibration sampling."""

from __future__ import annotations

import json

import pytest
import torch

from esparse.run import data


def test_split_is_deterministic_and_disjoint(tmp_path):
    titles = [f"Article {i}" for i in range(500)]
    ev = {t for t in titles if data.is_eval_article(t)}
    assert ev == {t for t in reversed(titles) if data.is_eval_article(t)}  # order-independent
    assert 0.1 < len(ev) / len(titles) < 0.3


def test_bundled_wiki_split_has_no_overlap(tmp_path):
    pytest.importorskip("gensim")
    cal = data.load_texts("bundled_wiki", "calibration", tmp_path)
    ev = data.load_texts("bundled_wiki", "eval", tmp_path)
    assert len(cal) > 50 and len(ev) > 10
    assert not set(cal) & set(ev)
    assert sum(len(t.split()) for t in cal + ev) > 400_000  # the real corpus, not a stub
    assert (tmp_path / "data" / "bundled_wiki.json").is_file()  # cached for the next run


def test_eval_windows_non_overlapping():
    stream = torch.arange(103)
    w = data.eval_windows(stream, 10)
    assert w.shape == (10, 10)
    assert torch.equal(w.flatten(), torch.arange(100))
    assert data.eval_windows(stream, 10, nsamples=3).shape == (3, 10)
    with pytest.raises(data.DataUnavailableError, match="fewer than one window"):
        data.eval_windows(torch.arange(5), 10)


def test_calibration_windows_seeded():
    stream = torch.arange(1000)
    a, sa = data.calibration_windows(stream, 8, 16, seed=0)
    b, sb = data.calibration_windows(stream, 8, 16, seed=0)
    c, sc = data.calibration_windows(stream, 8, 16, seed=1)
    assert torch.equal(a, b) and sa == sb and sa != sc
    for row, s in zip(a, sa, strict=True):
        assert torch.equal(row, torch.arange(s, s + 16))
    with pytest.raises(ValueError, match="nsamples=0"):
        data.calibration_windows(stream, 0, 16, seed=0)


def test_unknown_dataset_and_missing_local_file(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        data.load_texts("nope", "eval", tmp_path)
    with pytest.raises(data.DataUnavailableError, match="does not exist"):
        data.load_texts("wikitext2", "eval", tmp_path, path=str(tmp_path / "missing.txt"))


def test_local_override(tmp_path, tokenizer):
    p = tmp_path / "w.txt"
    p.write_text("the of and to")
    texts = data.load_texts("wikitext2", "eval", tmp_path, path=str(p))
    assert texts == ["the of and to"]
    assert data.tokenize_stream(texts, tokenizer).numel() == 4


def test_split_percent_splits_one_local_file_without_overlap(tmp_path):
    from esparse.run.data import load_texts

    lines = [f"line {i} " + "word " * (i % 7) for i in range(400)]
    p = tmp_path / "one.txt"
    p.write_text("\n".join(lines))
    cal = load_texts("wikitext2", "calibration", tmp_path, path=str(p), split_percent=20)
    ev = load_texts("wikitext2", "eval", tmp_path, path=str(p), split_percent=20)
    assert not set(cal) & set(ev) and sorted(cal + ev) == sorted(lines)  # disjoint, and nothing lost
    assert 40 < len(ev) < 120  # about 20 %
    assert ev == load_texts("wikitext2", "eval", tmp_path, path=str(p), split_percent=20)  # deterministic
    shuffled = tmp_path / "shuffled.jsonl"  # by content, not position: order does not move a document
    shuffled.write_text("\n".join(json.dumps({"text": t}) for t in reversed(lines)))
    ev2 = load_texts("wikitext2", "eval", tmp_path, path=str(shuffled), split_percent=20)
    assert sorted(ev2) == sorted(ev)
