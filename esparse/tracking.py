"""Run records: one JSON per resolved config, written atomically; W&B mirrors the same record.

The record's name is the hash of the config's *semantic* part (what changes the numbers), so
re-running a finished config is a no-op and an interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

#: keys that do not change a run's numbers (where to write, how to log, whether to redo)
NON_SEMANTIC_KEYS = (
    "results_dir",
    "save_dir",
    "save_format",
    "offload",
    "activations_on",
    "device_map",
    "logger",
    "force",
    "paths",
    "hydra",
    "progress",
    "stages_note",
)


def semantic_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg.items() if k not in NON_SEMANTIC_KEYS}


def config_hash(cfg: Mapping[str, Any]) -> str:
    """12 hex chars of sha256 over the canonical JSON of the semantic config."""
    blob = json.dumps(semantic_config(cfg), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def record_path(results_dir: str | Path, chash: str) -> Path:
    return Path(results_dir) / "runs" / f"{chash}.json"


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Temp file in the same dir + fsync + rename: readers see the old file or the new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; records are meant to be shared
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=False, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_record(path: str | Path) -> dict[str, Any] | None:
    """The record at ``path``, or None if absent or unreadable (an unreadable one is redone)."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def is_done(path: str | Path) -> bool:
    rec = read_record(path)
    return bool(rec) and rec.get("status") == "done"


def _git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        sha = out.stdout.strip()
        if not sha:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: str = "cpu") -> dict[str, Any]:
    import torch

    versions = {}
    for pkg in ("torch", "transformers", "lm-eval", "datasets", "scipy", "numpy", "hydra-core", "esparse"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    dev = device
    if str(device).startswith("cuda") and torch.cuda.is_available():
        dev = torch.cuda.get_device_name(torch.device(device))
    return {
        "versions": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(dev),
        "cuda": torch.version.cuda,
        "torch_threads": torch.get_num_threads(),
        "git_sha": _git_sha(),
        "host": platform.node(),
    }


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


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

    def log_record(self, record: Mapping[str, Any]) -> None:
        metrics = {k: v for k, v in record.get("metrics", {}).items() if isinstance(v, (int, float, bool))}
        metrics.update({f"time/{k}": v for k, v in record.get("timings", {}).items()})
        self.run.summary.update(metrics)
        self.run.summary["status"] = record.get("status")
        self.run.summary["config_hash"] = record.get("config_hash")

    def finish(self) -> None:
        self.run.finish()
