"""Compose real configs from conf/ the way run.py does (no subprocess)."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]


def compose_cfg(overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)


def tiny_overrides(model_dir: Path, corpus: Path, results: Path, cache: Path) -> list[str]:
    """A complete run on a tiny random model and a local text file: seconds on CPU."""
    return [
        f"model.path={model_dir}",
        "model.name=tiny_llama",
        "model.source=hub",
        "model.context_length=256",
        "model.arch.hidden_size=32",
        "model.arch.intermediate_size=64",
        "model.arch.num_attention_heads=4",
        "model.arch.head_dim=8",
        "calibration=wikitext2",
        f"data.wikitext2.path={corpus}",
        "data.wikitext2.split_percent=50",  # one file for calibration and eval: half its lines each
        "calibration.nsamples=4",
        "calibration.seqlen=32",
        "calibration.batch_size=2",
        "eval.ppl.datasets=[wikitext2]",
        "eval.ppl.seqlen=32",
        "eval.ppl.nsamples=4",
        "logger=none",
        "progress=false",
        f"results_dir={results}",
        f"paths.cache_dir={cache}",
    ]
