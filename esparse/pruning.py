"""Sequential layer-wise pruning (the Wanda/SparseGPT loop, with streaming statistics).

For each decoder block: hook the first linear of every shared-input group, stream the block's
calibration inputs through it to collect per-input-channel statistics (a second pass when the
score needs a histogram), then per group: score → (optional) input-channel permutation → mask →
(optional) OBS reconstruction → (optional) quantization → write the weights (``quant.order=quantize_first``
quantizes before the score instead). Finally re-run the block with its pruned
weights: those outputs are the next block's inputs, so later blocks calibrate on what the pruned
model really feeds them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from esparse import permutation as permutations
from esparse import quant as quantizers
from esparse import refine as refiners
from esparse import scores
from esparse.finite import all_finite
from esparse.masks import Pattern, TieBreak, make_mask
from esparse.models.adapters import Adapter, block_output, capture_block_kwargs, get_adapter
from esparse.models.placement import module_device, non_blocks_to, to_device
from esparse.records.memory import release_freed_heap
from esparse.sparsegpt import DEFAULT_BLOCKSIZE, DEFAULT_PERCDAMP, sparsegpt_prune
from esparse.stat_passes import inputs_bytes, second_pass, stat_hook
from esparse.stats import DEFAULT_BINS, ChannelStats, input_summary


@dataclass(frozen=True)
class PruneSpec:
    """What to do to every prunable linear; built from the resolved config by ``esparse.run.calibration.prune_spec``.

    The field defaults serve a library caller without a config; they are the library defaults of
    :func:`esparse.scores.library_defaults`, equal to conf/ (tested).
    """

    metric: str
    pattern: Pattern
    tie: TieBreak = TieBreak()
    metric_kwargs: Mapping[str, Any] = field(default_factory=dict)
    reconstruct: bool = scores.RECONSTRUCT.default
    shuffle: str = "none"
    shuffle_kwargs: Mapping[str, Any] = field(default_factory=dict)
    #: one input permutation per shared-input group (``group``: q/k/v share one, deployable by folding,
    #: RIA app. F.1a) or one per linear (``linear``: as RIA's official code permutes)
    share: str = "group"
    blocksize: int = DEFAULT_BLOCKSIZE
    percdamp: float = DEFAULT_PERCDAMP
    bins: int = DEFAULT_BINS
    #: mask refinement after the mask of any score and permutation (``none`` | ``dsnot``, esparse/refine.py)
    refine: str = "none"
    refine_kwargs: Mapping[str, Any] = field(default_factory=dict)
    #: fake-quant of every linear after the mask, or before the score (``none`` | ``rtn`` | ``gptq`` | ``awq``,
    #: esparse/quant.py); ``quant_kwargs`` are the group's keys (``bits``, ``group_size``, ``order``, ...)
    quant: str = "none"
    quant_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.refine != "none" and self.obs_selects:
            raise ValueError(f"refine={self.refine!r} cannot refine metric={self.metric!r}: OBS selects its own mask")
        if self.quant_first and self.uses_obs:
            raise ValueError(f"quant order=quantize_first: the OBS update of metric={self.metric!r} leaves the grid")

    @property
    def quant_first(self) -> bool:
        """Quantize before the score (which then reads the quantized weights), not after the mask."""
        return self.quant != "none" and self.quant_kwargs.get("order", "prune_first") == "quantize_first"

    @property
    def obs_selects(self) -> bool:
        """The score's method selects the mask and updates the weights by OBS itself (the registry's
        ``reconstructs``, e.g. sparsegpt)."""
        return scores.get(self.metric).reconstructs

    @property
    def uses_obs(self) -> bool:
        return self.obs_selects or self.reconstruct

    @property
    def permutes(self) -> bool:
        return self.shuffle != "none" and self.pattern.kind == "nm"


@dataclass
class PruneReport:
    """What pruning did, layer by layer; the pipeline turns it into record metrics/details."""

    layers: dict[str, dict[str, float]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    permutations: dict[str, list[int]] = field(default_factory=dict)
    group_members: dict[str, list[str]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    #: ``swaps`` (regrow/prune pairs) and ``seconds`` of the mask refinement, when one ran
    refine: dict[str, float] = field(default_factory=dict)
    #: ``rounded_to_zero`` (kept weights quantized to 0) and ``seconds`` of the quantization, when one ran
    quant: dict[str, float] = field(default_factory=dict)
    #: each quantized linear's grid (original column order), for ``save_format=nm``'s integer codes
    grids: dict[str, quantizers.Grid] = field(default_factory=dict)
    #: how the blocks' second statistics pass (entropy) ran: ``replayed`` from the kept linear inputs or
    #: ``rerun`` through the block, with the budget and the largest block's inputs (bytes)
    passes: dict[str, float] = field(default_factory=dict)

    def layer_permutations(self) -> dict[str, list[int]]:
        """Each group's permutation under the full name of every linear in the group."""
        return {
            name: self.permutations[key]
            for key, names in self.group_members.items()
            if key in self.permutations
            for name in names
        }

    @property
    def retained_before(self) -> float:
        return sum(g.get("retained_before", 0.0) for g in self.groups.values())

    @property
    def retained_after(self) -> float:
        return sum(g.get("retained_after", 0.0) for g in self.groups.values())

    @property
    def fallbacks(self) -> int:
        """Groups whose permutation the registry's guard replaced by the identity."""
        return sum(bool(g.get("fell_back")) for g in self.groups.values())


def _needs(spec: PruneSpec) -> frozenset[str]:
    needs = set(scores.get(spec.metric).needs)
    if spec.uses_obs:
        needs.add("hessian")
    if spec.refine != "none":
        needs.add("moments")
    return frozenset(needs | quantizers.needs(spec.quant))


def _run_block(block: nn.Module, inps: list[torch.Tensor], kwargs: dict[int, list[dict]], i: int) -> list[torch.Tensor]:
    """The block's outputs for every stored batch, left where the inputs are stored; inputs and
    kwargs visit the block's device (one GPU, one of several under device_map, or the CPU)."""
    dev = module_device(block)
    kw = {bs: to_device(per_block[i], dev) for bs, per_block in kwargs.items()}
    return [block_output(block(x.to(dev), **kw[x.shape[0]])).to(x.device) for x in inps]


@torch.no_grad()
def prune_model(
    model: nn.Module,
    calib_ids: torch.Tensor,
    spec: PruneSpec,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    progress: bool = True,
    adapter: Adapter | None = None,
    offload: bool = False,
    store: str | torch.device | None = None,
    on_block: Callable[[dict[str, float]], None] | None = None,
    replay_budget: float = 0.0,
) -> PruneReport:
    """Prune ``model`` in place with calibration token ids ``calib_ids`` (nsamples, seqlen).

    ``on_block`` is called after each decoder block with its :func:`block_summary` (a W&B history
    step per block, so a dashboard draws curves as the prune goes).

    ``offload=True``: the model stays where it is (the CPU) and each block visits ``device`` only
    while it is calibrated, pruned and re-run, so the accelerator holds one block at a time.
    ``store`` is where the calibration activations wait between blocks (default ``device``; ``"cpu"``
    trades host-device copies for accelerator memory). Neither changes the result.

    A score whose statistics take two passes (E-Sparse's entropy) keeps a block's linear inputs from
    the first pass and replays them for the second when they fit ``replay_budget`` bytes, instead of
    running the block again: the same tensors in the same order, so the same statistics bit for bit.
    """
    adapter = adapter or get_adapter(model)
    score_fn = scores.get(spec.metric)
    perm_fn = permutations.get_checked(spec.shuffle) if spec.permutes else None
    needs = _needs(spec)
    report = PruneReport()
    if spec.refine != "none":
        report.refine = {"swaps": 0, "seconds": 0.0}
    if spec.quant != "none":
        report.quant = {"rounded_to_zero": 0, "seconds": 0.0}
    t0 = time.perf_counter()
    blocks = adapter.blocks(model)
    home = module_device(blocks[0])
    store = torch.device(store if store is not None else device)

    inps: list[torch.Tensor] = []
    kwargs: dict[int, list[dict]] = {}
    if offload and needs:
        non_blocks_to(model, adapter, device)
    try:
        for start in range(0, calib_ids.shape[0] if needs else 0, batch_size):
            ids = calib_ids[start : start + batch_size].to(device)
            hidden, per_block = capture_block_kwargs(model, adapter, ids)
            inps.append(hidden.to(store))
            kwargs.setdefault(ids.shape[0], per_block)
    finally:
        if offload and needs:
            non_blocks_to(model, adapter, home)
    report.seconds["capture"] = time.perf_counter() - t0

    if not needs:  # the score ignores activations (magnitude): no calibration forward is needed at all
        for i, block in enumerate(tqdm(blocks, desc=f"prune {spec.metric} {spec.pattern.name}", disable=not progress)):
            tb = time.perf_counter()
            for group, role in zip(adapter.linear_groups(block), adapter.roles, strict=True):
                _prune_group(f"{adapter.blocks_path}.{i}", group, None, spec, score_fn, perm_fn, report, role)
            if on_block is not None:
                on_block(block_summary(report, f"{adapter.blocks_path}.{i}", i, time.perf_counter() - tb))
        report.seconds["total"] = time.perf_counter() - t0
        return report
    for i, block in enumerate(tqdm(blocks, desc=f"prune {spec.metric} {spec.pattern.name}", disable=not progress)):
        tb = time.perf_counter()
        if offload:
            block.to(device)
        groups = adapter.linear_groups(block)
        stats = [
            ChannelStats(
                group[0][1].in_features,
                bins=spec.bins,
                entropy="entropy" in needs,
                hessian="hessian" in needs,
                device=module_device(block),
                moments="moments" in needs,
                absmean="absmean" in needs,
            )
            for group in groups
        ]
        size = inputs_bytes(inps, groups)
        kept: list[list[torch.Tensor]] | None = [[] for _ in groups] if size <= replay_budget else None
        hooks = [
            group[0][1].register_forward_hook(
                stat_hook(st, f"{adapter.blocks_path}.{i}.{group[0][0]}", kept[j] if kept is not None else None)
            )
            for j, (group, st) in enumerate(zip(groups, stats, strict=True))
        ]
        try:
            _run_block(block, inps, kwargs, i)
            for st in stats:
                st.finalize()
            if any(st.needs_second_pass for st in stats):
                how = second_pass(stats, kept, hooks, partial(_run_block, block, inps, kwargs, i))
                report.passes[how] = report.passes.get(how, 0) + 1
                report.passes["budget_bytes"] = float(replay_budget)
                report.passes["block_inputs_bytes"] = max(float(size), report.passes.get("block_inputs_bytes", 0.0))
        finally:
            for h in hooks:
                h.remove()
        del kept

        for group, st, role in zip(groups, stats, adapter.roles, strict=True):
            _prune_group(f"{adapter.blocks_path}.{i}", group, st, spec, score_fn, perm_fn, report, role)
        del stats
        inps = _run_block(block, inps, kwargs, i)
        if offload:
            block.to(home)
        release_freed_heap()  # the block's freed statistics and kept inputs: off the RSS before the next block
        if on_block is not None:
            on_block(block_summary(report, f"{adapter.blocks_path}.{i}", i, time.perf_counter() - tb))
    report.seconds["total"] = time.perf_counter() - t0
    return report


def block_summary(report: PruneReport, prefix: str, index: int, seconds: float) -> dict[str, float]:
    """One decoder block as the report has it: its sparsity over every pruned linear, and for N:M the
    retained score of its groups before and after the permutation and their unstructured bound (sums,
    so ``after / bound`` is the block's share of the best any permutation could keep), and how many
    of its groups' permutations fell back to the identity."""
    from esparse.records.memory import host_rss_bytes

    layers = [v for k, v in report.layers.items() if k.startswith(prefix + ".")]
    groups = [v for k, v in report.groups.items() if k.startswith(prefix + ".") and "retained_before" in v]
    out = {"block": float(index), "seconds": seconds,
           "sparsity": sum(v["zeros"] for v in layers) / max(1, sum(v["numel"] for v in layers))}  # fmt: skip
    if groups:
        for key in ("retained_before", "retained_after", "upper_bound"):
            out[key] = float(sum(g[key] for g in groups))
        out["retained_after_of_bound"] = out["retained_after"] / out["upper_bound"] if out["upper_bound"] else 1.0
        out["perm_seconds"] = float(sum(g.get("perm_seconds", 0.0) for g in groups))
        out["perm_fallbacks"] = float(sum(bool(g.get("fell_back")) for g in groups))
    rss = host_rss_bytes()
    if rss is not None:
        out["host_rss_gb"] = rss / 1e9
    return out


def _shuffle_kwargs(spec: PruneSpec, role: str | None) -> dict[str, Any]:
    """The permutation's options for a group of ``role``: ``communities=official`` becomes RIA's
    fixed count for the role, contiguous chunks."""
    kw = dict(spec.shuffle_kwargs)
    if kw.get("communities") == "official":
        kw.update(permutations.official_communities(role))
    return kw


def _prune_group(
    prefix: str,
    group: list[tuple[str, nn.Linear]],
    stats: ChannelStats | None,
    spec: PruneSpec,
    score_fn,
    perm_fn: permutations.CheckedFn | None,
    report: PruneReport,
    role: str | None = None,
) -> None:
    """Score, permute, mask and write one shared-input group; ``role`` is the group's adapter role
    (``shuffle.communities=official`` reads it)."""
    if spec.share == "linear" and perm_fn is not None and len(group) > 1:  # each linear its own permutation
        for member in group:
            _prune_group(prefix, [member], stats, spec, score_fn, perm_fn, report, role)
        return
    pattern = spec.pattern
    c = group[0][1].in_features
    if pattern.kind == "nm" and c % pattern.m:
        raise ValueError(f"{prefix}.{group[0][0]}: in_features={c} is not divisible by m={pattern.m}")
    group_scores = []
    for path, lin in group:
        w = lin.weight.data
        if not all_finite(w):
            raise FloatingPointError(f"non-finite weights in {prefix}.{path}")
        if spec.quant_first:  # RIA app. I's other order: the score reads the quantized weights
            w.copy_(_quantize(spec, f"{prefix}.{path}", w, None, stats, None, None, report))
        group_scores.append(score_fn(w.float(), stats, **spec.metric_kwargs))
    name = f"{prefix}.{'+'.join(p for p, _ in group)}"
    report.group_members[name] = [f"{prefix}.{p}" for p, _ in group]

    perm = None
    info: dict[str, Any] = input_summary(stats) if stats is not None else {}  # what the score read
    if pattern.kind == "nm":
        stacked = torch.cat(group_scores, 0)
        info["retained_before"] = permutations.retained_score(stacked, pattern.n, pattern.m)
        if perm_fn is not None:
            t = time.perf_counter()
            perm, info["fell_back"] = perm_fn(stacked, pattern.n, pattern.m, **_shuffle_kwargs(spec, role))
            info["perm_seconds"] = time.perf_counter() - t
            report.permutations[name] = perm.tolist()
            info["retained_after"] = permutations.retained_score(stacked, pattern.n, pattern.m, perm)
        else:
            info["retained_after"], info["fell_back"] = info["retained_before"], False
        info["upper_bound"] = permutations.upper_bound(stacked, pattern.n, pattern.m)
    if info:
        report.groups[name] = info

    for (path, lin), score in zip(group, group_scores, strict=True):
        w = lin.weight.data
        if perm is not None:
            w, score = w[:, perm], score[:, perm]
        tie = spec.tie.derive(f"{prefix}.{path}")
        hessian = None
        if spec.uses_obs:
            hessian = stats.hessian if perm is None else stats.hessian[perm][:, perm]
        if spec.obs_selects:
            new_w, mask = sparsegpt_prune(
                w, hessian, pattern, blocksize=spec.blocksize, percdamp=spec.percdamp, tie=tie
            )
        else:
            mask = make_mask(score, pattern, tie)
            if spec.refine != "none":
                t, before = time.perf_counter(), mask
                mask = refiners.refine_mask(name, path, w, mask, score, stats, perm, pattern, spec.refine_kwargs)
                report.refine["swaps"] += int((mask & ~before).sum())
                report.refine["seconds"] += time.perf_counter() - t
            if spec.reconstruct:
                new_w, mask = sparsegpt_prune(
                    w, hessian, pattern, blocksize=spec.blocksize, percdamp=spec.percdamp, mask=mask
                )
            else:
                new_w = w * mask
        if spec.quant != "none" and not spec.quant_first:
            new_w = _quantize(spec, f"{prefix}.{path}", new_w, mask, stats, perm, hessian, report, pattern)
        if perm is not None:
            inv = torch.argsort(perm)
            new_w, mask = new_w[:, inv], mask[:, inv]
        lin.weight.data.copy_(new_w.to(lin.weight.dtype))
        zeros = int((lin.weight.data == 0).sum())
        report.layers[f"{prefix}.{path}"] = {"zeros": zeros, "numel": lin.weight.numel()}


def _quantize(spec: PruneSpec, label, w, mask, stats, perm, hessian, report: PruneReport, pattern=None) -> torch.Tensor:
    """One linear quantized as ``spec.quant`` says (esparse/quant.py), counted in the report."""
    t = time.perf_counter()
    q, rounded = quantizers.apply(
        spec.quant, w, mask, stats, perm, spec.quant_kwargs, pattern, hessian, label, report.grids
    )
    report.quant["rounded_to_zero"] += rounded
    report.quant["seconds"] += time.perf_counter() - t
    return q
