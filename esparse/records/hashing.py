"""A record's name: the hash of the config's *semantic* part (what changes the numbers).

Re-running a finished config is then a no-op and an interrupted sweep resumes where it stopped;
keys added later stay out of the hash while they hold their default, so no record is renamed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

#: keys that do not change a run's numbers (where to write, how to log, whether to redo)
NON_SEMANTIC_KEYS = (
    "results_dir",
    "save_dir",
    "save_format",
    "offload",
    "activations_on",
    "replay_budget_gb",
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
#: E-Sparse's norm convention came later: its default (what every earlier record used) stays out of the hash
DEFAULT_NORM = "wanda"
#: so did the permutation's sharing: one per shared-input group, what every earlier record did
DEFAULT_SHARE = "group"
#: the mask refinement came later: ``refine: none`` (what every earlier record did) stays out of the hash
DEFAULT_REFINE = "none"
#: so did quantization: ``quant: none`` (no record before it quantized) stays out of the hash
DEFAULT_QUANT = "none"
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
    metric = view.get("metric")
    if isinstance(metric, Mapping) and metric.get("norm") == DEFAULT_NORM:
        view["metric"] = {k: x for k, x in metric.items() if k != "norm"}
    shuffle = view.get("shuffle")
    if isinstance(shuffle, Mapping) and shuffle.get("share") == DEFAULT_SHARE:
        view["shuffle"] = {k: x for k, x in shuffle.items() if k != "share"}
    for group, default in (("refine", DEFAULT_REFINE), ("quant", DEFAULT_QUANT)):
        section = view.get(group)
        if isinstance(section, Mapping) and section.get("name") == default and len(section) == 1:
            view.pop(group)
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
