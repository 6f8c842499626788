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
    """Prune ``model`` in place as the config says (calibration from ``cfg.calibration``), on the
    device the model is on.

    Returns the :class:`esparse.pruning.PruneReport`.
    """
    from esparse.run import calibration

    calib = calibration.calibration_ids(cfg, tokenizer)
    return calibration.prune(model, calib.ids, cfg, device=next(model.parameters()).device)
