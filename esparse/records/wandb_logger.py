"""W&B mirror of a record: offline unless the user says otherwise."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}, for W&B filtering and pandas columns."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


class WandbLogger:
    """Mirror of a record in W&B. Offline unless the user set WANDB_MODE, so no login or network."""

    def __init__(self, project: str, group: str | None, name: str, config: Mapping[str, Any], dir: str | Path):
        os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        Path(dir).mkdir(parents=True, exist_ok=True)
        self._wandb = wandb
        self.run = wandb.init(
            project=project,
            group=group,
            name=name,
            config=flatten(config),
            dir=str(dir),
            reinit="finish_previous",
        )

    def log_block(self, summary: Mapping[str, float]) -> None:
        """One history step per pruned decoder block (``block/<key>``), so W&B draws per-block curves
        (sparsity, retained score against its bound, seconds, host memory) and compares a sweep's runs."""
        self.run.log({f"block/{k}": v for k, v in summary.items()}, step=int(summary["block"]))

    def log_record(self, record: Mapping[str, Any]) -> None:
        metrics = {k: v for k, v in record.get("metrics", {}).items() if isinstance(v, (int, float, bool))}
        metrics.update({f"time/{k}": v for k, v in record.get("timings", {}).items()})
        for stage, peaks in record.get("memory", {}).items():
            metrics.update({f"memory/{stage}/{k}": v for k, v in peaks.items() if v is not None})
        self.run.summary.update(metrics)
        self.run.summary["status"] = record.get("status")
        self.run.summary["config_hash"] = record.get("config_hash")

    def finish(self) -> None:
        self.run.finish()
