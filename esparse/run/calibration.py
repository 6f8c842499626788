"""Calibrate, then prune: the seeded calibration windows a config names, and the layer-wise prune
that reads them.

``esparse.prune``, the pipeline's prune stage and ``experiments/observations.py`` all draw their
calibration tokens through :func:`calibration_ids`, so one config means the same tokens (and the
same ``starts_sha`` in a record) wherever it is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from esparse import scores
from esparse.masks import Pattern, TieBreak
from esparse.pruning import PruneSpec
from esparse.run.config import ConfigError, require

__all__ = ["Calibration", "calibration_ids", "prune", "prune_fields", "prune_spec"]


@dataclass(frozen=True)
class Calibration:
    """Calibration windows and where they came from."""

    ids: torch.Tensor  # (nsamples, seqlen) token ids
    tokens: int  # length of the tokenized corpus they were drawn from
    starts: list[int]  # each window's offset in it

    @property
    def details(self) -> dict[str, Any]:
        """What a record keeps of them (``details.calibration``): enough to prove two runs saw the same tokens."""
        from esparse.run.data import hash_ints

        return {"tokens": self.tokens, "starts_sha": hash_ints(self.starts)}


def calibration_ids(cfg: Mapping[str, Any], tokenizer) -> Calibration:
    """``calibration.nsamples`` windows of ``calibration.seqlen`` tokens from the calibration split of
    corpus ``calibration.name`` (``data.<name>`` options, ``paths.cache_dir``), seeded by
    ``calibration.seed``."""
    from esparse.run import data

    name, nsamples, seqlen, seed = (require(cfg, f"calibration.{k}") for k in ("name", "nsamples", "seqlen", "seed"))
    cache_dir = (cfg.get("paths") or {}).get("cache_dir")
    texts = data.load_texts(name, "calibration", cache_dir, **data.dataset_kwargs(cfg.get("data"), name))
    stream = data.tokenize_stream(texts, tokenizer, what=f"calibration corpus {name!r}")
    ids, starts = data.calibration_windows(stream, nsamples, seqlen, seed)
    return Calibration(ids, int(stream.numel()), starts)


def prune_spec(cfg: Mapping[str, Any]) -> PruneSpec:
    """The spec of a resolved config. Every key is read from it, as the score registry declares
    the score's options; a missing, unknown or bad one is a ConfigError naming it."""
    metric = require(cfg, "metric")
    name = require(cfg, "metric.name")
    if name == "dense":  # pattern=dense with quant: the quantization alone, no score decides anything
        metric, name = {"name": "magnitude", "reconstruct": False}, "magnitude"
    problems = scores.check_options(name, metric)
    if problems:
        raise ConfigError(problems)
    options = scores.get(name).options
    shuffle = dict(require(cfg, "shuffle"))
    share = shuffle.pop("share", "group")
    refine = dict(cfg.get("refine") or {"name": "none"})  # a config from before the refine group: none
    quant = dict(cfg.get("quant") or {"name": "none"})  # ... and before the quant group
    return PruneSpec(
        metric=name,
        pattern=Pattern.parse(dict(require(cfg, "pattern"))),
        tie=TieBreak.from_cfg(cfg["pattern"]),
        metric_kwargs={k: metric[k] for k, opt in options.items() if opt.kwarg},
        reconstruct=bool(metric["reconstruct"]),
        shuffle=shuffle.pop("name"),
        shuffle_kwargs={k: v for k, v in shuffle.items() if v is not None},
        share=share,
        blocksize=int(require(cfg, "reconstruction.blocksize")),
        percdamp=float(require(cfg, "reconstruction.percdamp")),
        refine=refine.pop("name"),
        refine_kwargs=refine,
        quant=quant.pop("name"),
        quant_kwargs=quant,
        **({"bins": int(metric["bins"])} if "bins" in options else {}),  # only scores with entropy take it
    )


def prune(model, calib_ids: torch.Tensor, cfg: Mapping[str, Any], device, adapter=None, on_block=None):
    """Prune ``model`` in place as ``cfg`` says (:func:`prune_spec`), on
    ``device``, calibrating in batches of ``calibration.batch_size``; ``offload``, ``activations_on``,
    ``replay_budget_gb`` and ``progress`` place the work and change no number. Returns the
    :class:`esparse.pruning.PruneReport`."""
    from esparse import pruning

    return pruning.prune_model(
        model,
        calib_ids,
        prune_spec(cfg),
        batch_size=require(cfg, "calibration.batch_size"),
        device=device,
        progress=require(cfg, "progress"),
        adapter=adapter,
        offload=bool(require(cfg, "offload")),
        store="cpu" if require(cfg, "activations_on") == "cpu" else device,
        on_block=on_block,
        replay_budget=float(require(cfg, "replay_budget_gb")) * 1e9,
    )


def prune_fields(cfg: Mapping[str, Any], model, adapter, report) -> dict[str, Any]:
    """What a prune adds to its record: the pattern check of the pruned model, the permutation,
    refinement and quantization numbers of its report, and how its statistics passes ran."""
    from esparse import quant
    from esparse.masks import check

    pattern = Pattern.parse(dict(cfg["pattern"]))
    mask_report = check(model, pattern, adapter=adapter, permutations=report.layer_permutations())
    metrics = {"sparsity/actual": mask_report.sparsity, "sparsity/pattern_ok": mask_report.ok}
    if pattern.kind == "nm":
        metrics["permutation/retained_before"] = report.retained_before
        metrics["permutation/retained_after"] = report.retained_after
        metrics["permutation/upper_bound"] = sum(g["upper_bound"] for g in report.groups.values())
        metrics["permutation/seconds"] = sum(g.get("perm_seconds", 0.0) for g in report.groups.values())
        metrics["permutation/fallbacks"] = report.fallbacks  # groups whose permutation fell back to the identity
    if report.refine:
        metrics["refine/swaps"], metrics["refine/seconds"] = report.refine["swaps"], report.refine["seconds"]
    details = {"layers": report.layers, "groups": report.groups, "prune_seconds": report.seconds}
    if report.quant:  # what is evaluated next is fake-quant (dequantized weights): the record says so
        metrics.update({f"quant/{k}": v for k, v in report.quant.items()})  # rounded_to_zero, seconds
        details["quant"] = quant.record_details(cfg["quant"], report.quant)
    if report.passes:  # E-Sparse's second statistics pass: blocks replayed from kept inputs or rerun
        details["statistics_passes"] = report.passes
    return {"metrics": metrics, "details": details}
