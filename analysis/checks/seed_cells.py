"""Reference cells: the committed records of one experiment but for the calibration seed.

Across machines a pruned perplexity is another draw of the noise the calibration seed makes, so drift
judges it against its cell's seed spread (``analysis.checks.drift``). The cell key is the config
as esparse's config hash sees it (``esparse.records.hashing``; analysis imports no esparse, and
tests/test_drift.py holds the two equal over every committed record) with the seed set to null.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from analysis.stats import seeds

#: config keys that change no number (esparse.records.hashing.NON_SEMANTIC_KEYS; analysis imports no
#: esparse, tests/test_drift.py holds the grouping equal to the hash's)
NON_SEMANTIC_KEYS = ("results_dir", "save_dir", "save_format", "offload", "activations_on", "replay_budget_gb",
                     "device_map", "logger", "force", "paths", "hydra", "progress", "keep_pruned", "stages_note",
                     "experiment")  # fmt: skip
#: keys esparse's hash leaves out while they hold these defaults (esparse.records.hashing._hash_view)
_NEUTRAL_BENCH = {"device": None, "memory_dtype_bytes": 2, "e2e_batch_sizes": [1, 8, 16, 64],
                  "prompt_len": 128, "gen_len": 32}  # fmt: skip
_LEGACY_PIQA_DATA_DIR = "../shared/data/piqa"


def seedless_key(cfg: Mapping[str, Any]) -> str:
    """The reference cell a config belongs to: its semantic config, the hash-neutral defaults put
    back as esparse's config hash sees them, with ``calibration.seed`` set to null. Two records share
    it iff they are the same experiment but for the calibration seed."""
    view: dict[str, Any] = {k: v for k, v in cfg.items() if k not in NON_SEMANTIC_KEYS}
    if isinstance(view.get("calibration"), Mapping):
        view["calibration"] = {**view["calibration"], "seed": None}
    ev = view.get("eval")
    zs = ev.get("zeroshot") if isinstance(ev, Mapping) else None
    if isinstance(zs, Mapping) and "data_dir" in zs and zs["data_dir"] is None:
        view["eval"] = {**ev, "zeroshot": {**zs, "data_dir": _LEGACY_PIQA_DATA_DIR}}
    if isinstance(view.get("data"), Mapping):
        view["data"] = {
            n: {k: v for k, v in d.items() if not (k == "split_percent" and v is None)} if isinstance(d, Mapping) else d
            for n, d in view["data"].items()
        }
    metric = view.get("metric")
    if isinstance(metric, Mapping) and metric.get("norm") == "wanda":
        view["metric"] = {k: v for k, v in metric.items() if k != "norm"}
    for group in ("refine", "quant"):  # the defaults: unhashed
        sect = view.get(group)
        if isinstance(sect, Mapping) and sect.get("name") == "none" and len(sect) == 1:
            view.pop(group)
    shuffle = view.get("shuffle")
    if isinstance(shuffle, Mapping) and shuffle.get("share") == "group":  # the permutation's sharing: its default
        view["shuffle"] = {k: v for k, v in shuffle.items() if k != "share"}
    if isinstance(view.get("pattern"), Mapping):
        pat = dict(view["pattern"])
        if pat.get("tie_break", "low_index") != "random":
            pat.pop("tie_seed", None)
        if pat.get("tie_break") == "low_index":
            pat.pop("tie_break")
        view["pattern"] = pat
    if isinstance(view.get("bench"), Mapping):
        view["bench"] = {
            k: v
            for k, v in view["bench"].items()
            if not (k in _NEUTRAL_BENCH and (list(v) if isinstance(v, (list, tuple)) else v) == _NEUTRAL_BENCH[k])
        }
    return json.dumps(view, sort_keys=True, default=str, separators=(",", ":"))


def _seed(rec: Mapping[str, Any]) -> int | None:
    cal = (rec.get("config") or {}).get("calibration")
    s = cal.get("seed") if isinstance(cal, Mapping) else None
    return int(s) if isinstance(s, (int, float)) and not isinstance(s, bool) else None


def reference_cells(refs: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """{seedless_key: the reference records of that cell, one per calibration seed}."""
    out: dict[str, dict[int | None, Mapping[str, Any]]] = {}
    for rec in refs:
        out.setdefault(seedless_key(rec.get("config") or {}), {}).setdefault(_seed(rec), rec)
    return {k: list(v.values()) for k, v in out.items()}


def seed_summary(cell: Iterable[Mapping[str, Any]], key: str) -> seeds.Summary:
    """The value of ``key`` on each seed of a reference cell that recorded it (a number)."""
    values = {}
    for rec in cell:
        s, v = _seed(rec), (rec.get("metrics") or {}).get(key)
        if s is not None and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            values[s] = float(v)
    return seeds.summarize(values)
