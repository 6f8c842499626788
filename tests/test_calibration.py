"""One calibrate-then-prune sequence: esparse.prune, the pipeline and the observations script draw
the same windows from a config through esparse.run.calibration."""

from __future__ import annotations

import pytest
import torch
from helpers import compose_cfg, tiny_overrides

import esparse
from esparse.run import calibration, data
from esparse.run.config import ConfigError


@pytest.fixture
def cfg(tiny_model_dir, text_corpus, tmp_path):
    return compose_cfg(tiny_overrides(tiny_model_dir, text_corpus, tmp_path / "results", tmp_path / "cache"))


def test_calibration_ids_are_the_configured_windows(cfg, tokenizer):
    cal = calibration.calibration_ids(cfg, tokenizer)
    c = cfg["calibration"]
    kw = data.dataset_kwargs(cfg["data"], c["name"])
    texts = data.load_texts(c["name"], "calibration", cfg["paths"]["cache_dir"], **kw)
    stream = data.tokenize_stream(texts, tokenizer)
    ids, starts = data.calibration_windows(stream, c["nsamples"], c["seqlen"], c["seed"])
    assert torch.equal(cal.ids, ids) and cal.starts == starts and cal.ids.shape == (c["nsamples"], c["seqlen"])
    assert cal.details == {"tokens": stream.numel(), "starts_sha": data.hash_ints(starts)}
    del cfg["calibration"]["seed"]
    with pytest.raises(ConfigError, match="calibration.seed: missing"):
        calibration.calibration_ids(cfg, tokenizer)


def test_esparse_prune_is_the_pipeline_prune(cfg, tmp_path):
    """The public API and a run prune to the same weights and report the same calibration."""
    from esparse.run.pipeline import run

    cfg = {**cfg, "metric": {"name": "wanda", "reconstruct": False}, "stages": ["prune"], "device": "cpu"}
    model, tok = esparse.load_model(cfg)
    report = esparse.prune(model, tok, cfg)
    rec = run({**cfg, "save_dir": str(tmp_path / "ckpt")})
    assert rec["details"]["layers"] == report.layers
    assert rec["details"]["calibration"] == calibration.calibration_ids(cfg, tok).details
    saved, _ = esparse.load_model({**cfg, "model": {**cfg["model"], "path": str(tmp_path / "ckpt")}})
    for (name, p), (_, q) in zip(model.named_parameters(), saved.named_parameters(), strict=True):
        assert torch.equal(p, q), name
