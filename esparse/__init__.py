"""esparse: N:M semi-structured pruning of LLMs (E-Sparse, RIA, Wanda, SparseGPT, magnitude).

Public API (docs/INTERFACES.md, "Public interface"): ``load_model(cfg)``, ``prune(model, tokenizer, cfg)``, and the
modules ``stats``, ``scores``, ``masks``, ``permutation``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__version__ = "0.1.0"


def load_model(cfg: Mapping[str, Any]):
    """``(model, tokenizer)`` for a full config (uses ``cfg.model``) or a ``cfg.model`` mapping."""
    from esparse.models import load_model as _load

    model_cfg = cfg.get("model", cfg)
    cache = (cfg.get("paths") or {}).get("cache_dir") if "model" in cfg else None
    return _load(model_cfg, cache_dir=cache)


def prune(model, tokenizer, cfg: Mapping[str, Any]):
    """Prune ``model`` in place as the config says (calibration from ``cfg.calibration``).

    Returns the :class:`esparse.pruning.PruneReport`.
    """
    from esparse import data
    from esparse.pruning import PruneSpec, prune_model

    cal = cfg["calibration"]
    cache = (cfg.get("paths") or {}).get("cache_dir")
    texts = data.load_texts(cal["name"], "calibration", cache, **data.dataset_kwargs(cfg.get("data"), cal["name"]))
    calib, _ = data.calibration_windows(
        data.tokenize_stream(texts, tokenizer), cal["nsamples"], cal["seqlen"], cal["seed"]
    )
    device = next(model.parameters()).device
    return prune_model(model, calib, PruneSpec.from_cfg(cfg), batch_size=cal.get("batch_size", 4), device=device)
