"""Pruned checkpoints: HF safetensors + a JSON sidecar that says how they were made.

The sidecar carries the config hash, the pattern and the input permutations, so
``model.path=<save_dir>`` reloads the model and :func:`load_pruned` re-verifies the pattern.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from esparse.records import store

SIDECAR = "esparse.json"


def save_pruned(
    model,
    tokenizer,
    save_dir: str | Path,
    cfg: Mapping[str, Any],
    config_hash: str,
    permutations: Mapping[str, list[int]] | None = None,
) -> Path:
    """Write the pruned model (dense tensors with exact zeros) and its sidecar, whole or not at all:
    into a temporary sibling renamed to ``save_dir`` when complete. An existing ``save_dir`` is
    replaced only if empty or an earlier esparse checkpoint (FileExistsError otherwise)."""
    save_dir = Path(save_dir).expanduser()
    with store.staged_dir(save_dir, SIDECAR) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        store.write_json_atomic(
            tmp / SIDECAR,
            {
                "config_hash": config_hash,
                "pattern": dict(cfg["pattern"]),
                "metric": dict(cfg["metric"]),
                "shuffle": dict(cfg["shuffle"]),
                "model": cfg["model"]["name"],
                "permutations": dict(permutations or {}),
            },
        )
    return save_dir


def load_pruned(save_dir: str | Path, device: str = "cpu", deploy: bool = False):
    """``(model, tokenizer, sidecar)``; raises ValueError naming the layer if the pattern is broken.

    ``deploy=True`` also rewrites permuted layers into their N:M-contiguous deployed form
    (:func:`esparse.deploy.deploy`); the logits do not change.
    """
    from esparse.masks import check
    from esparse.models.loading import load_model

    save_dir = Path(save_dir).expanduser()
    sidecar = store.read_record(save_dir / SIDECAR)
    if sidecar is None:
        raise FileNotFoundError(f"{save_dir} has no readable {SIDECAR}: not an esparse checkpoint")
    model, tok = load_model({"path": str(save_dir), "dtype": "float32"}, device=device)
    check(model, sidecar["pattern"], permutations=sidecar.get("permutations")).raise_if_bad()
    if deploy and sidecar.get("permutations"):
        from esparse.deploy import deploy as _deploy

        _deploy(model, sidecar["permutations"])
    return model, tok, sidecar
