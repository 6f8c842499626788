"""The pruned weights of a run, kept until the run is done, so a later failure never costs the prune.

After the prune stage the whole model state (masked, and updated where a metric reconstructs) goes
to ``<cache_dir>/resume/<config_hash>/`` as safetensors (``safetensors.torch.save_model``: no
pickle, tied weights stored once) with the layer permutations beside it, and any extra tensors the
save stage needs (a quantized run's grids, for ``save_format=nm``'s integer codes). Re-running the same
command loads it into the freshly loaded model instead of calibrating and pruning again; the
weights are bit-identical, so every later number is too. A run that ends ``done`` removes it.
Disk cost: the model at its dtype (LLaMA-7B in float16: 6.74e9 parameters x 2 bytes = 13.5 GB).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

WEIGHTS, META, EXTRA = "weights.safetensors", "resume.json", "extra.safetensors"


def cache_dir(root: str | Path, config_hash: str) -> Path:
    return Path(root).expanduser() / "resume" / config_hash


def save(d: Path, model, config_hash: str, permutations: dict[str, list[int]], extra: Mapping | None = None) -> int:
    """Write the pruned state atomically (a temp dir renamed into place); returns its bytes on disk.
    ``extra``: named tensors kept beside it (:func:`load_extra`)."""
    from safetensors.torch import save_file, save_model

    tmp = d.with_name(f".{d.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        save_model(model, str(tmp / WEIGHTS))
        if extra:
            save_file(dict(extra), str(tmp / EXTRA))
        (tmp / META).write_text(json.dumps({"config_hash": config_hash, "permutations": permutations}))
        shutil.rmtree(d, ignore_errors=True)
        os.replace(tmp, d)
    except BaseException:  # a full disk leaves no half copy behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sum(f.stat().st_size for f in d.iterdir())


def load(d: Path, model, config_hash: str) -> dict[str, list[int]] | None:
    """Load the kept state into ``model`` (in place) and return the permutations; None if no
    complete state for this config is there."""
    from safetensors.torch import load_model

    try:
        meta: dict[str, Any] = json.loads((d / META).read_text())
    except (OSError, ValueError):
        return None
    if meta.get("config_hash") != config_hash or not (d / WEIGHTS).is_file():
        return None
    load_model(model, str(d / WEIGHTS), strict=True, device="cpu")  # copied into the params where they are
    return {k: list(v) for k, v in (meta.get("permutations") or {}).items()}


def load_extra(d: Path) -> dict[str, Any]:
    """The extra tensors :func:`save` kept ({} if none)."""
    from safetensors.torch import load_file

    return load_file(str(d / EXTRA)) if (d / EXTRA).is_file() else {}


def clear(d: Path) -> None:
    shutil.rmtree(d, ignore_errors=True)
