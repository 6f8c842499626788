"""The second bundled family loads from a fresh clone: Gemma-3-270M's GGUF ships as four chunk
packages that the first run joins (sha256 checked) and dequantises. Real weights, real text."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from helpers import compose_cfg


@pytest.mark.slow
def test_gemma3_loads_from_its_chunk_packages_and_predicts_held_out_wikipedia(tmp_path):
    from esparse.run import pipeline

    cfg = compose_cfg(
        [
            "model=gemma3_270m",
            "pattern=dense",
            "stages=[eval]",
            "eval.ppl.seqlen=256",
            "eval.ppl.nsamples=4",
            "logger=none",
            "progress=false",
            f"results_dir={tmp_path}",
        ]  # fmt: skip
    )
    rec = pipeline.run(cfg)
    assert rec["status"] == "done"
    assert rec["details"]["loaded_arch"]["num_hidden_layers"] == 18
    ppl = rec["metrics"]["ppl/bundled_wiki"]
    assert 5 < ppl < 500, ppl  # the real model; random weights over a 262k-token vocabulary give ~1e5
    gguf = Path(cfg["paths"]["cache_dir"]).expanduser() / "gguf" / cfg["model"]["gguf_file"]
    assert hashlib.sha256(gguf.read_bytes()).hexdigest() == cfg["model"]["sha256"]
