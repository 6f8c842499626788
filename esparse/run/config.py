"""Config validation: every problem found before any model or data is loaded.

Each rule names the key, the bad value and what is allowed; all problems are reported at once so
a sweep's typo costs seconds, not the minutes of loading a model.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

STAGES = ("prune", "eval", "bench")
DTYPES = ("float32", "float16", "bfloat16")
EVAL_SPLITS = ("eval", "test", "validation")
RECONSTRUCTION = ("blocksize", "percdamp")  # the OBS settings under ``reconstruction``


class ConfigError(ValueError):
    """One or more invalid config values (the message lists them all)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid config:\n  - " + "\n  - ".join(problems))


def normalize(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical form: a dense run ignores metric, shuffle and calibration (so every spelling of
    "dense" shares one record; a dense run that quantizes keeps its calibration and prune stage, where
    the quantization runs), integral score exponents are floats, and device=auto is resolved."""
    from esparse.quant import active

    cfg = dict(cfg)
    if (cfg.get("pattern") or {}).get("kind") == "dense":
        cfg["metric"] = {"name": "dense"}
        cfg["shuffle"] = {"name": "none"}
        cfg["refine"] = {"name": "none"}
        if not active(cfg.get("quant")):
            cfg["calibration"] = None
            cfg["stages"] = [s for s in cfg.get("stages", []) if s != "prune"]
    metric = dict(cfg.get("metric") or {})
    for key in _number_options(metric.get("name")):  # metric.alpha=70 and 70.0 are one experiment, so one record
        if isinstance(metric.get(key), int) and not isinstance(metric[key], bool):
            metric[key] = float(metric[key])
    if metric:
        cfg["metric"] = metric
    if cfg.get("device", "auto") == "auto":
        import torch

        cfg["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    return cfg


def _number_options(metric: Any) -> list[str]:
    """The options the score ``metric`` declares as numbers (esparse: alpha, ria: a)."""
    from esparse import scores

    if metric not in scores.names():
        return []
    return [k for k, opt in scores.get(metric).options.items() if opt.kind == "number"]


def validate(cfg: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` listing every invalid value in a resolved, normalized config."""
    from esparse import permutation, quant, refine, scores
    from esparse.masks import Pattern, TieBreak
    from esparse.run.data import CORPORA

    problems: list[str] = []
    model = cfg.get("model") or {}
    arch = model.get("arch") or {}
    ctx = model.get("context_length")

    stages = list(cfg.get("stages") or [])
    if not stages:
        problems.append(f"stages: {cfg.get('stages')!r} is empty; give one or more of {list(STAGES)}")
    for s in stages:
        if s not in STAGES:
            problems.append(f"stages: {s!r} is not one of {list(STAGES)}")

    pat_cfg = cfg.get("pattern") or {}
    pattern = None
    try:
        pattern = Pattern.parse(dict(pat_cfg))
        pattern.validate()
    except (ValueError, TypeError, KeyError) as e:
        problems.append(f"pattern ({pat_cfg.get('name')!r}): {e}")
    try:
        TieBreak.from_cfg(pat_cfg)
    except (ValueError, TypeError) as e:
        problems.append(f"pattern.tie_break/tie_seed ({pat_cfg.get('tie_break')!r}, {pat_cfg.get('tie_seed')!r}): {e}")
    else:
        if _is_int(pat_cfg.get("tie_seed")) and pat_cfg["tie_seed"] < 0:
            problems.append(f"pattern.tie_seed: {pat_cfg['tie_seed']} must be an integer >= 0")
    dense = pattern is not None and pattern.kind == "dense"

    if not dense:
        metric = (cfg.get("metric") or {}).get("name")
        if metric not in scores.names():
            problems.append(f"metric.name: {metric!r} is not one of {sorted(scores.names())}")
        shuffle = (cfg.get("shuffle") or {}).get("name", "none")
        if shuffle not in permutation.names():
            problems.append(f"shuffle.name: {shuffle!r} is not one of {sorted(permutation.names())}")
        elif shuffle != "none" and pattern is not None and pattern.kind != "nm":
            problems.append(f"shuffle.name: {shuffle!r} needs an N:M pattern, got pattern={pattern.name!r}")
        if pattern is not None and pattern.kind == "nm" and arch:
            problems += _divisibility(arch, model.get("family", "llama"), pattern.m)
        problems += _metric_types(cfg.get("metric") or {})
        problems += refine.check_options(cfg.get("refine"), metric)
        problems += _shuffle_sizes(cfg.get("shuffle") or {}, pattern)
        share = (cfg.get("shuffle") or {}).get("share", "group")
        if share not in ("group", "linear"):
            problems.append(f"shuffle.share: {share!r} is not one of ['group', 'linear']")
    if not dense or quant.active(cfg.get("quant")):  # dense + quant calibrates too
        problems += _calibration(cfg.get("calibration") or {}, model)
    problems += quant.check_options(cfg.get("quant"), obs=not dense and _obs(cfg.get("metric") or {}))

    ev = (cfg.get("eval") or {}).get("ppl") or {}
    if "eval" in stages:
        if ev.get("split", "eval") not in EVAL_SPLITS:
            problems.append(f"eval.ppl.split: {ev.get('split')!r} is not one of {list(EVAL_SPLITS)}")
        dense_baseline = (cfg.get("eval") or {}).get("dense_baseline", True)
        if not isinstance(dense_baseline, bool):
            problems.append(f"eval.dense_baseline: {dense_baseline!r} must be true or false")
        for ds in ev.get("datasets") or []:
            if ds not in CORPORA:
                problems.append(f"eval.ppl.datasets: {ds!r} is not one of {sorted(CORPORA)}")
        problems += _positive(ev, "eval.ppl", ("seqlen", "batch_size"))
        if _is_int(ev.get("seqlen")) and ev["seqlen"] == 1:
            problems.append("eval.ppl.seqlen: 1 must be >= 2 (a window of one token predicts nothing)")
        if ev.get("nsamples") is not None:
            problems += _positive(ev, "eval.ppl", ("nsamples",))
        if ctx and isinstance(ev.get("seqlen"), int) and ev["seqlen"] > ctx:
            problems.append(f"eval.ppl.seqlen: {ev['seqlen']} exceeds model {model.get('name')!r} context_length {ctx}")

    zs = (cfg.get("eval") or {}).get("zeroshot") or {}
    if "eval" in stages and zs.get("tasks"):
        from esparse.evaluation.zeroshot import resolve_config

        try:
            resolve_config(zs)
        except ValueError as e:
            problems.append(str(e))

    if "bench" in stages:
        problems += _bench(cfg.get("bench") or {})
    for key in ("offload", "force", "progress", "keep_pruned"):
        if not isinstance(cfg.get(key, False), bool):
            problems.append(f"{key}: {cfg.get(key)!r} must be true or false")
    if model.get("dtype", "float32") not in DTYPES:
        problems.append(f"model.dtype: {model.get('dtype')!r} is not one of {list(DTYPES)}")
    rec = cfg.get("reconstruction") or {}
    problems += [f"reconstruction.{k}: missing (conf/config.yaml gives it)" for k in RECONSTRUCTION if k not in rec]
    problems += _positive(rec, "reconstruction", tuple(k for k in ("blocksize",) if k in rec))
    if "percdamp" in rec and (not _is_number(rec["percdamp"]) or rec["percdamp"] < 0):
        problems.append(f"reconstruction.percdamp: {rec['percdamp']!r} must be a number >= 0")
    problems += _device(cfg.get("device"))
    budget = cfg.get("replay_budget_gb", 0.0)
    if not _is_number(budget) or budget < 0:
        problems.append(f"replay_budget_gb: {budget!r} must be a number >= 0 (GB; 0 reruns every block)")
    if cfg.get("activations_on", "device") not in ("device", "cpu"):
        problems.append(f"activations_on: {cfg.get('activations_on')!r} is not one of ['device', 'cpu']")
    if cfg.get("device_map") is not None and cfg.get("offload"):
        problems.append(
            f"device_map: {cfg.get('device_map')!r} places the model itself; it cannot be combined with offload=true"
        )
    save_format = cfg.get("save_format", "safetensors")
    if save_format not in ("safetensors", "nm"):
        problems.append(f"save_format: {save_format!r} is not one of ['safetensors', 'nm']")
    elif save_format == "nm" and cfg.get("save_dir") and not (pattern is not None and pattern.kind == "nm"):
        problems.append(f"save_format: 'nm' needs an N:M pattern, got pattern={pat_cfg.get('name')!r}")
    if model.get("path") and not (Path(str(model["path"])).expanduser() / "config.json").is_file():
        problems.append(f"model.path: {model['path']!r} has no config.json")
    if model.get("source") not in ("bundled_gguf", "hub") and not model.get("path"):
        problems.append(f"model.source: {model.get('source')!r} is not one of ['bundled_gguf', 'hub']")
    named = {p.split(":", 1)[0] for p in problems}
    problems += [p for p in _non_finite(cfg) if p.split(":", 1)[0] not in named]
    if problems:
        raise ConfigError(problems)


def _calibration(cal: Mapping[str, Any], model: Mapping[str, Any]) -> list[str]:
    """The ``calibration`` section of a run that prunes (or quantizes)."""
    from esparse.run.data import CORPORA

    out = []
    if cal.get("name") not in CORPORA:
        out.append(f"calibration.name: {cal.get('name')!r} is not one of {sorted(CORPORA)}")
    out += _positive(cal, "calibration", ("nsamples", "seqlen", "batch_size"))
    if not _is_int(cal.get("seed", 0)) or cal.get("seed", 0) < 0:
        out.append(f"calibration.seed: {cal.get('seed')!r} must be an integer >= 0")
    ctx = model.get("context_length")
    if ctx and isinstance(cal.get("seqlen"), int) and cal["seqlen"] > ctx:
        out.append(f"calibration.seqlen: {cal['seqlen']} exceeds model {model.get('name')!r} context_length {ctx}")
    return out


def _obs(metric: Mapping[str, Any]) -> bool:
    """Whether the pruning updates the kept weights by OBS (``metric=sparsegpt``, ``metric.reconstruct``)."""
    from esparse import scores

    name = metric.get("name")
    return metric.get("reconstruct") is True or (name in scores.names() and scores.get(name).reconstructs)


def _non_finite(node: Any, prefix: str = "") -> list[str]:
    """NaN or infinity anywhere in the config: no key takes one (RIA's ``metric.a``, E-Sparse's
    ``metric.alpha``, ``reconstruction.percdamp``, ...); each is named with its value."""
    if isinstance(node, float) and not math.isfinite(node):
        return [f"{prefix}: {node!r} is not a finite number"]
    if isinstance(node, Mapping):
        return [p for k, v in node.items() for p in _non_finite(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(node, list | tuple):
        return [p for i, v in enumerate(node) for p in _non_finite(v, f"{prefix}[{i}]")]
    return []


def _shuffle_sizes(shuffle: Mapping[str, Any], pattern: Any) -> list[str]:
    """The permutation's sizes: ``block`` at least one group of m channels (E-Sparse's block shuffle;
    a block that is not a multiple of m is rounded down to one), ``communities`` (null: from
    ``community_size``; ``official``: RIA's fixed count by the linear's role), ``sweeps``,
    ``community_size``, ``max_iters`` and ``rounds`` at least 1, ``seed`` at least 0."""
    keys = ("block", "max_iters", "sweeps", "community_size", "rounds")
    out = _positive(shuffle, "shuffle", tuple(k for k in keys if k in shuffle))
    if "seed" in shuffle and (not _is_int(shuffle["seed"]) or shuffle["seed"] < 0):
        out.append(f"shuffle.seed: {shuffle['seed']!r} must be an integer >= 0")
    communities = shuffle.get("communities")
    if _is_int(communities):
        out += _positive(shuffle, "shuffle", ("communities",))
    elif communities is not None and communities != "official":
        out.append(f"shuffle.communities: {communities!r} must be an integer >= 1, null or 'official'")
    m = getattr(pattern, "m", None) if getattr(pattern, "kind", None) == "nm" else None
    block = shuffle.get("block")
    if m and _is_int(block) and 1 <= block < m:
        out.append(f"shuffle.block: {block} is smaller than pattern.m={m}; a block holds whole groups of m channels")
    return out


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _metric_types(metric: Mapping[str, Any]) -> list[str]:
    """``metric.*`` as the score registry declares it for ``metric.name``: an option the score does
    not take, a bad value, or a missing one (the scorer would fail on them only after the model has
    loaded). An unknown score is reported by ``validate`` itself."""
    from esparse import scores

    if metric.get("name") not in scores.names():
        return []
    return scores.check_options(metric["name"], metric)


def require(cfg: Mapping[str, Any], key: str) -> Any:
    """``cfg`` at the dotted ``key`` (``"reconstruction.blocksize"``). The composed config gives every
    key, and the code fills none in: a missing one is a :class:`ConfigError` naming it."""
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ConfigError([f"{key}: missing from the config (conf/ gives it; compose the config from conf/)"])
        node = node[part]
    return node


def _bench(bench: Mapping[str, Any]) -> list[str]:
    """The bench stage's keys (it runs last: a typo there would cost the whole prune and eval)."""
    from esparse.bench import BACKENDS, bench_defaults

    known = bench_defaults()
    out = [f"bench.{k}: unknown key; known: {sorted(known)}" for k in bench if k not in known and k != "name"]
    if bench.get("backend", "cusparselt") not in BACKENDS:
        out.append(f"bench.backend: {bench.get('backend')!r} is not one of {list(BACKENDS)}")
    if bench.get("dtype", "float16") not in DTYPES:
        out.append(f"bench.dtype: {bench.get('dtype')!r} is not one of {list(DTYPES)}")
    out += _positive(bench, "bench", tuple(k for k in ("repeats", "prompt_len", "gen_len") if k in bench))
    if "warmup" in bench and (not _is_int(bench["warmup"]) or bench["warmup"] < 0):
        out.append(f"bench.warmup: {bench['warmup']!r} must be an integer >= 0")
    for k in ("batch_sizes", "seqlens", "e2e_batch_sizes"):
        v = bench.get(k)
        if v is not None and (not isinstance(v, list | tuple) or not v or not all(_is_int(x) and x > 0 for x in v)):
            out.append(f"bench.{k}: {v!r} must be a non-empty list of integers >= 1")
    if not isinstance(bench.get("e2e", False), bool):
        out.append(f"bench.e2e: {bench.get('e2e')!r} must be true or false")
    return out


def _device(device: Any) -> list[str]:
    """The spelling of ``device``; whether this machine has it is checked by the preflight."""
    if isinstance(device, str) and re.fullmatch(r"cpu|mps|cuda(:\d+)?", device):
        return []
    return [f"device: {device!r} is not one of ['auto', 'cpu', 'cuda', 'cuda:<index>', 'mps']"]


def _positive(section: Mapping[str, Any], prefix: str, keys: tuple[str, ...]) -> list[str]:
    out = []
    for k in keys:
        v = section.get(k)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            out.append(f"{prefix}.{k}: {v!r} must be an integer >= 1")
    return out


def _divisibility(arch: Mapping[str, Any], family: str, m: int) -> list[str]:
    """Every prunable linear's input width must split into groups of m."""
    hidden = arch.get("hidden_size")
    heads, head_dim = arch.get("num_attention_heads"), arch.get("head_dim")
    widths = {
        ("model.arch.hidden_size", "q/k/v, gate/up, fc1 input"): hidden,
        ("model.arch.intermediate_size", "down_proj/fc2 input"): arch.get("intermediate_size"),
        ("model.arch.num_attention_heads*head_dim", "o_proj input"): heads * head_dim if heads and head_dim else None,
    }
    return [
        f"pattern.m: {m} does not divide {key}={w} ({what}); in_features must split into groups of m"
        for (key, what), w in widths.items()
        if w and w % m
    ]
