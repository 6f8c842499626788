"""Run records: one JSON per resolved config, written atomically; W&B mirrors the same record.

The record's name is the hash of the config's *semantic* part (what changes the numbers), so
re-running a finished config is a no-op and an interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Mapping
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
    "keep_pruned",
    "stages_note",
)


#: the bundled PIQA copy is byte-identical to the files this path named when it was the default,
#: so ``eval.zeroshot.data_dir: null`` (the bundled copy) hashes as that old default did
LEGACY_PIQA_DATA_DIR = "../shared/data/piqa"
#: per-corpus keys added later; left out of the hash while they hold their default (None), so every
#: config that does not use them keeps its hash
HASH_NEUTRAL_DATA_KEYS = ("split_percent",)
#: the tie-break knob came later: its default rule (what every earlier record used) and the seed of a
#: rule that ignores it stay out of the hash
DEFAULT_TIE_BREAK = "low_index"
#: a preset's name groups runs (records, W&B) but changes no number: hashed as null, so one
#: configuration has one record whichever preset (or plain override) asked for it
LABEL_KEYS = ("experiment",)
#: bench keys whose defaults lived in Python until conf/bench/default.yaml held them, with the value
#: they had then; left out of the hash while they hold it, so every config keeps its hash
HASH_NEUTRAL_BENCH_KEYS = {"device": None, "memory_dtype_bytes": 2, "e2e_batch_sizes": [1, 8, 16, 64],
                           "prompt_len": 128, "gen_len": 32}  # fmt: skip


def semantic_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg.items() if k not in NON_SEMANTIC_KEYS}


def _hash_view(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The semantic config as the hash sees it: later, hash-neutral defaults put back to the form
    records were hashed in before those keys existed."""
    view = semantic_config(cfg)
    for key in LABEL_KEYS:
        if key in view:
            view[key] = None
    zs = ((view.get("eval") or {}).get("zeroshot") or {}) if isinstance(view.get("eval"), Mapping) else {}
    if isinstance(zs, Mapping) and "data_dir" in zs and zs["data_dir"] is None:
        view["eval"] = {**view["eval"], "zeroshot": {**zs, "data_dir": LEGACY_PIQA_DATA_DIR}}
    if isinstance(view.get("data"), Mapping):
        view["data"] = {
            name: {k: v for k, v in d.items() if not (k in HASH_NEUTRAL_DATA_KEYS and v is None)}
            if isinstance(d, Mapping)
            else d
            for name, d in view["data"].items()
        }
    if isinstance(view.get("pattern"), Mapping):
        pat = dict(view["pattern"])
        if pat.get("tie_break", DEFAULT_TIE_BREAK) != "random":
            pat.pop("tie_seed", None)
        if pat.get("tie_break") == DEFAULT_TIE_BREAK:
            pat.pop("tie_break")
        view["pattern"] = pat
    if isinstance(view.get("bench"), Mapping):
        view["bench"] = {
            k: v
            for k, v in view["bench"].items()
            if not (k in HASH_NEUTRAL_BENCH_KEYS and _plain(v) == HASH_NEUTRAL_BENCH_KEYS[k])
        }
    return view


def _plain(value: Any) -> Any:
    """A list for a tuple too (Python callers), so a default compares equal however it was spelled."""
    return list(value) if isinstance(value, (list, tuple)) else value


def config_hash(cfg: Mapping[str, Any]) -> str:
    """12 hex chars of sha256 over the canonical JSON of the semantic config."""
    blob = json.dumps(_hash_view(cfg), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def record_path(results_dir: str | Path, chash: str) -> Path:
    return Path(results_dir) / "runs" / f"{chash}.json"


def write_json_atomic(path: str | Path, data: Any, compact: bool = False) -> Path:
    """Temp file in the same dir + fsync + rename: readers see the old file or the new, never half.

    ``compact`` writes no indentation or spaces (files of long number lists stay small)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; records are meant to be shared
    try:
        with os.fdopen(fd, "w") as fh:
            layout: dict[str, Any] = {"separators": (",", ":")} if compact else {"indent": 2}
            json.dump(data, fh, sort_keys=False, default=str, **layout)
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
        rec = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return rec if isinstance(rec, dict) else None


def unreadable_why(path: str | Path) -> str | None:
    """Why the file at ``path`` is not a record (a phrase), or None if it is one or is absent."""
    p = Path(path)
    if not p.exists():
        return None
    try:
        rec = json.loads(p.read_text(encoding="utf-8"))
    except IsADirectoryError:
        return "a directory"
    except UnicodeDecodeError:
        return "not UTF-8 text"
    except json.JSONDecodeError as e:
        return f"not valid JSON ({e.msg}, line {e.lineno}; truncated?)"
    except OSError as e:
        return f"unreadable ({e.strerror or type(e).__name__})"
    return None if isinstance(rec, dict) else f"not a JSON object (a {type(rec).__name__})"


def load_record(path: str | Path) -> dict[str, Any] | None:
    """The record at ``path``, or None if absent. One that is not a record is moved aside to
    ``<name>.corrupt-<UTC time>`` with a warning (never a crash, never silently overwritten)."""
    why = unreadable_why(path)
    if why is None:
        return read_record(path)
    p = Path(path)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    aside = p.with_name(f"{p.name}.corrupt-{stamp}")
    os.replace(p, aside)
    logging.getLogger(__name__).warning("record %s is %s: moved aside to %s; the point is recomputed", p, why, aside)
    return None


def is_done(path: str | Path) -> bool:
    rec = read_record(path)
    return bool(rec) and rec.get("status") == "done"


def host_rss_bytes() -> int | None:
    """Resident set size of this process now (Linux ``/proc``); None where it cannot be read."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class PeakMemory:
    """Peak memory while the block runs: host RSS sampled by a thread (the caching allocators hide
    frees, so RSS is what a job scheduler sees), and the accelerator's ``max_memory_allocated`` when
    ``device`` is CUDA (reset on entry, so each stage gets its own peak even in one process)."""

    def __init__(self, device: str = "cpu", interval: float = 0.02):
        self.device, self.interval = str(device), interval
        self.host_peak: int | None = None
        self.device_peak: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while True:
            rss = host_rss_bytes()
            if rss is not None:
                self.host_peak = max(self.host_peak or 0, rss)
            if self._stop.wait(self.interval):
                return

    def _cuda(self) -> bool:
        import torch

        return self.device.startswith("cuda") and torch.cuda.is_available()

    def __enter__(self) -> PeakMemory:
        if self._cuda():
            import torch

            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        if host_rss_bytes() is not None:
            self._thread = threading.Thread(target=self._sample, name="esparse-peak-rss", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.host_peak = max(self.host_peak or 0, host_rss_bytes() or 0)
        else:  # no /proc (macOS): the process-lifetime peak is the best there is; Windows: none
            try:
                import resource

                scale = 1 if sys.platform == "darwin" else 1024
                self.host_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
            except ImportError:
                self.host_peak = None
        if self._cuda():
            import torch

            torch.cuda.synchronize(self.device)
            self.device_peak = int(torch.cuda.max_memory_allocated(self.device))

    def as_dict(self) -> dict[str, float | None]:
        gb = 1e9
        return {
            "host_peak_gb": None if self.host_peak is None else round(self.host_peak / gb, 4),
            "device_peak_gb": None if self.device_peak is None else round(self.device_peak / gb, 4),
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
        for stage, peaks in record.get("memory", {}).items():
            metrics.update({f"memory/{stage}/{k}": v for k, v in peaks.items() if v is not None})
        self.run.summary.update(metrics)
        self.run.summary["status"] = record.get("status")
        self.run.summary["config_hash"] = record.get("config_hash")

    def finish(self) -> None:
        self.run.finish()
