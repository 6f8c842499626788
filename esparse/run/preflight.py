"""Checks of the world a config points at, run before any model is loaded.

:func:`esparse.run.config.validate` judges the values; this module judges what they name: the
directories a run writes, the local corpora it reads, the model directory or hub cache, and the
zero-shot tasks and their data. Each problem names the key, the value and what is allowed, and all
of them are raised at once as one :class:`~esparse.run.config.ConfigError` (exit code 2).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from esparse.run.config import ConfigError
from esparse.run.preflight_memory import device_memory, host_memory

SAFETENSORS_HEADER_MAX = 100 * 2**20  # a header longer than this is a corrupt length field


def check(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Raise :class:`ConfigError` listing every problem found in what ``cfg`` points at; else return
    what was learnt on the way (``hub_unusable``: why the hub cannot be used, if it was probed)."""
    from esparse.models import hub

    hub_status = functools.cache(hub.unusable)  # one probe per check, only if something needs the hub
    stages = list(cfg.get("stages") or [])
    problems = device(cfg.get("device"))
    problems += writable("results_dir", cfg.get("results_dir"))
    if cfg.get("save_dir") and "prune" in stages:
        safe = save_dir_safe(cfg)
        problems += safe or writable("save_dir", cfg["save_dir"]) or staging_writable(cfg["save_dir"])
    problems += writable("paths.cache_dir", cache_root(cfg))
    problems += host_memory(cfg)
    problems += device_memory(cfg)
    problems += local_corpora(cfg)
    problems += model_source(cfg.get("model") or {}, hub_status)
    zs = (cfg.get("eval") or {}).get("zeroshot") or {}
    if "eval" in stages and zs.get("tasks"):
        from esparse.run.preflight_tasks import zeroshot_tasks

        problems += zeroshot_tasks(zs, hub_status)
    problems += hub_corpora(cfg, hub_status)
    if problems:
        raise ConfigError(problems)
    probed = hub_status.cache_info().currsize > 0
    return {"hub_unusable": hub_status() if probed else None}


def hub_corpora(cfg: Mapping[str, Any], hub_status: Callable[[], str | None]) -> list[str]:
    """A corpus read from the hub (no local path) needs the hub, or its dataset already cached."""
    from esparse.run.data import HUB_DATASETS
    from esparse.run.preflight_tasks import dataset_cached

    names = {n for ns in corpora_in_use(cfg).values() for n in ns if n in HUB_DATASETS}
    names = sorted(n for n in names if not ((cfg.get("data") or {}).get(n) or {}).get("path"))
    why = hub_status() if names else None  # probed only when a hub corpus is read
    return [
        f"data.{n}.path: null, so {n!r} is read from the Hugging Face hub ({HUB_DATASETS[n]}), which is {why}, "
        f"and it is not in the local cache; give a local copy with data.{n}.path=/file.txt (or .jsonl)"
        for n in names
        if why and not dataset_cached(HUB_DATASETS[n])
    ]


def device(value: Any) -> list[str]:
    """``device`` against what this torch can see: a CUDA device on a CPU build fails here, not as a
    raw torch error after the model has loaded."""
    import torch

    allowed = ["cpu"]
    if torch.cuda.is_available():
        allowed += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        allowed.append("mps")
    if value in allowed:
        return []
    why = ""
    if isinstance(value, str) and value.startswith("cuda") and not torch.cuda.is_available():
        why = f" (this torch {torch.__version__} sees no CUDA device)"
    return [f"device: {value!r} is not available{why}; allowed here: {['auto', *allowed]}"]


def writable(key: str, value: Any) -> list[str]:
    """Create the directory if needed, then create and remove a probe file in it."""
    if not value:
        return [f"{key}: {value!r} is empty; give a directory this user can write"]
    d = Path(str(value)).expanduser()
    probe = d / f".esparse-probe-{os.getpid()}"
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        os.close(fd)
        probe.unlink()
    except OSError as e:
        return [
            f"{key}: {str(value)!r} cannot be written ({e.strerror or type(e).__name__}); give a writable directory"
        ]
    return []


def cache_root(cfg: Mapping[str, Any]) -> Path:
    """Where a run caches (converted bundled models, hub downloads, the resume copy)."""
    from esparse.models.loading import default_cache_dir

    root = (cfg.get("paths") or {}).get("cache_dir")
    return Path(str(root)).expanduser() if root else default_cache_dir()


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def save_dir_safe(cfg: Mapping[str, Any]) -> list[str]:
    """``save_dir`` must not overwrite what a run reads or keeps: not ``model.path`` or inside it,
    not ``<results_dir>/runs`` or inside it, and not a non-empty directory that is not an earlier
    esparse checkpoint (one with an ``esparse.json`` sidecar is replaced, nothing else is)."""
    from esparse.checkpoint import SIDECAR

    raw = str(cfg["save_dir"])
    save = Path(raw).expanduser().resolve()
    problems = []
    model_path = (cfg.get("model") or {}).get("path")
    if model_path and _within(save, Path(str(model_path)).expanduser().resolve()):
        problems.append(
            f"save_dir: {raw!r} is model.path {str(model_path)!r} or inside it: the checkpoint would overwrite "
            "the model it is pruned from; give another directory"
        )
    runs = (Path(str(cfg.get("results_dir") or ".")).expanduser() / "runs").resolve()
    if _within(save, runs):
        problems.append(
            f"save_dir: {raw!r} is {str(runs)!r} (results_dir/runs, the run records) or inside it; "
            "give a directory outside the records"
        )
    if save.is_dir() and any(save.iterdir()) and not (save / SIDECAR).is_file():
        problems.append(
            f"save_dir: {raw!r} is a non-empty directory that is not an esparse checkpoint (no {SIDECAR}); "
            "it would be overwritten: give a new or empty directory, or an earlier checkpoint's to replace it"
        )
    return problems


def staging_writable(save_dir: Any) -> list[str]:
    """The checkpoint is written into a temporary sibling of ``save_dir`` and renamed into place."""
    from esparse.records.store import staging_dir

    tmp = staging_dir(str(save_dir))
    try:
        tmp.mkdir()
        tmp.rmdir()
    except OSError as e:
        return [
            f"save_dir: {str(save_dir)!r}: its parent {str(tmp.parent)!r} cannot be written "
            f"({e.strerror or type(e).__name__}); the checkpoint is written beside it, then renamed into place"
        ]
    return []


def corpora_in_use(cfg: Mapping[str, Any]) -> dict[str, list[str]]:
    """``{"calibration": [corpus], "eval": [corpora]}`` that this run will actually read."""
    from esparse.quant import active

    stages = list(cfg.get("stages") or [])
    cal = cfg.get("calibration") or {}
    # a dense run calibrates only to quantize
    dense = (cfg.get("pattern") or {}).get("kind") == "dense" and not active(cfg.get("quant"))
    ppl = (cfg.get("eval") or {}).get("ppl") or {}
    return {
        "calibration": [cal["name"]] if "prune" in stages and not dense and cal.get("name") else [],
        "eval": list(ppl.get("datasets") or []) if "eval" in stages else [],
    }


def local_corpora(cfg: Mapping[str, Any]) -> list[str]:
    """Every local corpus file the run reads: present, UTF-8, non-empty, jsonl rows with ``text``; a
    file used for calibration and evaluation alike only with ``split_percent`` (no overlap)."""
    from esparse.run.data import DataUnavailableError, dataset_kwargs, read_local

    problems, files = [], {}
    for use, names in corpora_in_use(cfg).items():
        for name in names:
            kw = dataset_kwargs(cfg.get("data"), name)
            pct = kw.get("split_percent")
            if pct is not None and (isinstance(pct, bool) or not isinstance(pct, int) or not 1 <= pct <= 99):
                problems.append(f"data.{name}.split_percent: {pct!r} must be an integer in [1, 99] (or null)")
            if not kw.get("path"):
                continue
            resolved = Path(str(kw["path"])).expanduser().resolve()
            files.setdefault(resolved, []).append((use, name, pct))
            if len(files[resolved]) == 1:
                try:
                    docs = read_local(resolved, key=f"data.{name}.path")
                except DataUnavailableError as e:
                    problems.append(str(e))
                    continue
                problems += _too_short(cfg, use, name, sum(len(d.encode()) for d in docs))
    for path, uses in files.items():
        if {u for u, _, _ in uses} == {"calibration", "eval"} and any(p is None for _, _, p in uses):
            keys = sorted({f"data.{n}.path" for _, n, _ in uses})
            problems.append(
                f"{', '.join(keys)}: {str(path)!r} is used for calibration and for evaluation, so the two "
                f"would overlap; give separate files or set data.<corpus>.split_percent=P to hold out P % "
                f"of its documents for evaluation"
            )
    return problems


def _too_short(cfg: Mapping[str, Any], use: str, name: str, nbytes: int) -> list[str]:
    """A file with fewer bytes than one window surely has fewer tokens (a token is >= 1 byte), so
    this is known before the tokenizer loads; the exact count is checked once it has."""
    key = "calibration.seqlen" if use == "calibration" else "eval.ppl.seqlen"
    seqlen = (cfg.get("calibration") or {}).get("seqlen") if use == "calibration" else None
    if use == "eval":
        seqlen = ((cfg.get("eval") or {}).get("ppl") or {}).get("seqlen")
    if isinstance(seqlen, int) and nbytes <= seqlen:
        return [
            f"{key}: {seqlen}: data.{name}.path holds {nbytes} bytes, fewer tokens than one window; give a longer file"
        ]
    return []


def model_source(model: Mapping[str, Any], hub_status: Callable[[], str | None]) -> list[str]:
    """A local model dir (or the hub cache snapshot when the hub is unusable) holds a config, a
    tokenizer and complete weights; a hub model the hub cannot serve fails here, in seconds."""
    if model.get("path"):
        d = Path(str(model["path"])).expanduser()
        if not (d / "config.json").is_file():
            return []  # config.validate reports the missing config.json
        return model_dir(d, "model.path")
    if model.get("source") != "hub":
        return []
    from esparse.models import hub

    hf_id = model.get("hf_id")
    why = hub_status()
    if why is None:
        return []
    snap = hub.cached_snapshot(str(hf_id))
    if snap is None:
        return [
            f"model.hf_id: {hf_id!r} (model {model.get('name')!r}) is not in the local Hugging Face cache and "
            f"the hub is {why}; download it where the hub is reachable, or pass model.path=/dir/with/config.json"
        ]
    return model_dir(snap, f"model.hf_id ({hf_id!r}, cached at {snap})")


def model_dir(d: Path, key: str) -> list[str]:
    """Tokenizer files present; every safetensors file complete (its header fits and its tensors end
    where the file ends), so a truncated download fails here, naming the file."""
    problems = []
    tok_files = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
    if not any((d / f).is_file() for f in tok_files):
        problems.append(f"{key}: {str(d)!r} has no tokenizer (none of {list(tok_files)})")
    shards = sorted(d.glob("*.safetensors"))
    index = d / "model.safetensors.index.json"
    if index.is_file():
        try:
            wanted = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError) as e:
            return [*problems, f"{key}: {str(index)!r} is not a valid safetensors index ({e})"]
        problems += [
            f"{key}: {str(d / w)!r} (listed in {index.name}) is missing" for w in wanted if not (d / w).is_file()
        ]
    if not shards and not any(d.glob("*.bin")):
        problems.append(f"{key}: {str(d)!r} has no weights (*.safetensors)")
    for f in shards:
        why = safetensors_problem(f)
        if why:
            problems.append(f"{key}: {str(f)!r} is {why}; download or save it again")
    return problems


def safetensors_problem(path: Path) -> str | None:
    """Why a safetensors file is unusable (truncated, bad header), or None; reads only the header."""
    size = path.stat().st_size
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return f"truncated ({size} bytes, no header)"
            n = int.from_bytes(head, "little")
            if n > min(size - 8, SAFETENSORS_HEADER_MAX):
                return f"truncated or corrupt (header of {n} bytes in a {size}-byte file)"
            header = json.loads(fh.read(n))
    except (OSError, ValueError) as e:
        return f"not a safetensors file ({type(e).__name__})"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    need = 8 + n + max(ends, default=0)
    return f"truncated ({size} bytes, its tensors need {need})" if size < need else None
