"""One run: resolved config → validate → load → prune → eval → bench → one record.

The record is written (atomically) when the run starts, after every stage, and at the end, so a
crash leaves an honest ``status: failed``/``running`` record and every finished number; a
re-run of a ``done`` config is skipped unless ``force=true``.
"""

from __future__ import annotations

import copy
import logging
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import torch

from esparse import provenance, tracking
from esparse.config import normalize, validate

log = logging.getLogger(__name__)


def dense_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The dense baseline of a config: same model and evaluation, no pruning."""
    d = copy.deepcopy(dict(cfg))
    d["pattern"] = {"name": "dense", "kind": "dense", "n": 0, "m": 0, "sparsity": 0.0, "scope": "row"}
    d["stages"] = [s for s in d.get("stages", []) if s == "eval"]
    d["save_dir"] = None
    d["experiment"] = None
    return normalize(d)


class Run:
    """A record being filled in; every ``save()`` is an atomic rewrite."""

    def __init__(self, cfg: dict[str, Any]):
        self.cfg = cfg
        self.hash = tracking.config_hash(cfg)
        self.path = tracking.record_path(cfg["results_dir"], self.hash)
        self.record: dict[str, Any] = {
            "config": cfg,
            "config_hash": self.hash,
            "status": "running",
            "metrics": {},
            "timings": {},
            "memory": {},
            "env": {**provenance.environment(cfg.get("device", "cpu")), "started_at": tracking.now_iso()},
            "details": {},
        }

    def save(self) -> None:
        tracking.write_json_atomic(self.path, self.record)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage and record its peak host/device memory (``record["memory"][name]``), also
        when it fails."""
        mem, t = tracking.PeakMemory(self.cfg.get("device", "cpu")), time.perf_counter()
        try:
            with mem:
                yield
        finally:
            self.record["timings"][name] = round(time.perf_counter() - t, 3)
            self.record["memory"][name] = mem.as_dict()


def run(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Execute one resolved config and return its record (the existing one if already done)."""
    cfg = normalize(cfg)
    validate(cfg)
    path = tracking.record_path(cfg["results_dir"], tracking.config_hash(cfg))
    if tracking.is_done(path) and not cfg.get("force"):
        log.info("skip: %s already done (force=true to redo)", path)
        return tracking.read_record(path)

    run_ = Run(cfg)
    run_.save()
    logger = _make_logger(cfg, run_)
    try:
        _execute(cfg, run_)
        run_.record["status"] = "done"
    except BaseException as e:
        run_.record["status"] = "failed"
        run_.record["error"] = f"{type(e).__name__}: {e}"
        run_.record["traceback"] = traceback.format_exc(limit=8)
        raise
    finally:
        run_.record["env"]["finished_at"] = tracking.now_iso()
        run_.save()
        if logger is not None:
            logger.log_record(run_.record)
            logger.finish()
    return run_.record


def _make_logger(cfg: Mapping[str, Any], run_: Run):
    lg = cfg.get("logger") or {}
    if lg.get("name") != "wandb":
        return None
    name = f"{cfg['model']['name']}-{cfg['metric']['name']}-{cfg['pattern']['name']}-{cfg['shuffle']['name']}"
    return tracking.WandbLogger(
        project=lg.get("project", "esparse"),
        group=cfg.get("experiment") or "adhoc",
        name=f"{name}-{run_.hash}",
        config=run_.cfg,
        dir=lg.get("dir") or Path(cfg["results_dir"]) / "wandb",
    )


def _execute(cfg: dict[str, Any], run_: Run) -> None:
    from esparse import data
    from esparse.masks import Pattern
    from esparse.models import get_adapter, load_model
    from esparse.models.placement import stream_blocks

    rec, metrics = run_.record, run_.record["metrics"]
    cache_dir = cfg.get("paths", {}).get("cache_dir")
    device = cfg["device"]
    stages = cfg.get("stages", [])

    offload = bool(cfg.get("offload", False))
    with run_.stage("load"):
        model, tok = load_model(
            cfg["model"], cache_dir=cache_dir, device="cpu" if offload else device, device_map=cfg.get("device_map")
        )
    adapter = get_adapter(model)
    rec["details"]["loaded_arch"] = _loaded_arch(model)
    # offload: the model stays on the CPU and its blocks visit the device one at a time, in eval too
    placed = partial(stream_blocks, model, adapter, device) if offload else nullcontext

    eval_sets = {}
    if "eval" in stages:
        with run_.stage("eval_data"):
            eval_sets = _eval_windows(cfg, tok, cache_dir)
        pattern = Pattern.parse(dict(cfg["pattern"]))
        if pattern.kind != "dense" and cfg["eval"].get("dense_baseline", True):
            with placed():
                metrics.update(_dense_baseline(cfg, model, eval_sets))
            run_.save()

    if "prune" in stages:
        from esparse.masks import check
        from esparse.pruning import PruneSpec, prune_model

        cal = cfg["calibration"]
        with run_.stage("calibration_data"):
            stream = data.tokenize_stream(
                data.load_texts(
                    cal["name"], "calibration", cache_dir, **data.dataset_kwargs(cfg.get("data"), cal["name"])
                ),
                tok,
            )
            calib, starts = data.calibration_windows(stream, cal["nsamples"], cal["seqlen"], cal["seed"])
        rec["details"]["calibration"] = {"tokens": int(stream.numel()), "starts_sha": data.hash_ints(starts)}
        spec = PruneSpec.from_cfg(cfg)
        with run_.stage("prune"):
            report = prune_model(
                model,
                calib,
                spec,
                batch_size=cal.get("batch_size", 4),
                device=device,
                progress=cfg.get("progress", True),
                adapter=adapter,
                offload=offload,
                store="cpu" if cfg.get("activations_on", "device") == "cpu" else device,
            )
        mask_report = check(model, spec.pattern, adapter=adapter, permutations=report.layer_permutations())
        metrics["sparsity/actual"] = mask_report.sparsity
        metrics["sparsity/pattern_ok"] = mask_report.ok
        if spec.pattern.kind == "nm":
            metrics["permutation/retained_before"] = report.retained_before
            metrics["permutation/retained_after"] = report.retained_after
            ub = sum(g["upper_bound"] for g in report.groups.values())
            metrics["permutation/upper_bound"] = ub
            metrics["permutation/seconds"] = sum(g.get("perm_seconds", 0.0) for g in report.groups.values())
        rec["details"]["layers"] = report.layers
        rec["details"]["groups"] = report.groups
        rec["details"]["prune_seconds"] = report.seconds
        run_.save()
        if cfg.get("save_dir"):
            with run_.stage("save"):
                if cfg.get("save_format", "safetensors") == "nm":
                    from esparse.compressed import save_compressed

                    extra = {"config_hash": run_.hash, "metric": dict(cfg["metric"]), "model": cfg["model"]["name"]}
                    info = save_compressed(
                        model, tok, cfg["save_dir"], cfg["pattern"], report.layer_permutations(), extra
                    )
                    metrics["save/file_bytes"] = info["file_bytes"]
                else:
                    from esparse.checkpoint import save_pruned

                    save_pruned(model, tok, cfg["save_dir"], cfg, run_.hash, report.layer_permutations())

    if "eval" in stages:
        with run_.stage("eval"), placed():
            for name, windows in eval_sets.items():
                _record_ppl(rec, name, _ppl(cfg, model, windows, f"ppl {name}"))
                run_.save()
            zs = cfg["eval"].get("zeroshot") or {}
            if zs.get("tasks"):
                from esparse.evaluation.zeroshot import evaluate_zeroshot

                zs_metrics, zs_details = evaluate_zeroshot(model, tok, {**zs, "device": device})
                metrics.update(zs_metrics)
                rec["details"]["zeroshot"] = zs_details

    if "bench" in stages:
        from esparse.bench import run_bench

        with run_.stage("bench"):
            metrics.update(run_bench(model, dict(cfg.get("bench") or {})))
    del adapter


def _loaded_arch(model) -> dict[str, Any] | None:
    """The architecture of the model actually loaded (from its own config, not ours): a record says
    what it ran on, and memory projections can use it."""
    from esparse.bench import arch_from_hf_config

    try:
        return arch_from_hf_config(model.config)
    except ValueError:  # a model type without a memory layout: nothing to project, nothing wrong
        return None


def _eval_windows(cfg: Mapping[str, Any], tok, cache_dir) -> dict[str, torch.Tensor]:
    from esparse import data

    ev = cfg["eval"]["ppl"]
    out = {}
    for name in ev.get("datasets") or []:
        texts = data.load_texts(name, ev.get("split", "eval"), cache_dir, **data.dataset_kwargs(cfg.get("data"), name))
        out[name] = data.eval_windows(data.tokenize_stream(texts, tok), ev["seqlen"], ev.get("nsamples"))
    return out


def _record_ppl(rec: dict[str, Any], name: str, ppl) -> None:
    """``ppl/<name>`` and its window-bootstrap 95 % interval in the metrics, the per-window NLLs in
    the details (so analysis can pair two runs window by window)."""
    lo, hi = ppl.interval()
    rec["metrics"].update({f"ppl/{name}": ppl.value, f"ppl_lo/{name}": lo, f"ppl_hi/{name}": hi})
    rec["details"].setdefault("ppl_windows", {})[name] = {"tokens_per_window": ppl.tokens, "nll": ppl.window_nll}


def _ppl(cfg: Mapping[str, Any], model, windows: torch.Tensor, desc: str):
    from esparse.evaluation.ppl import perplexity

    ev = cfg["eval"]["ppl"]
    return perplexity(
        model,
        windows,
        batch_size=ev.get("batch_size", 4),
        device=cfg["device"],
        desc=desc,
        progress=cfg.get("progress", True),
    )


def baseline_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The config of the dense-perplexity record a pruned run reuses: its dense config with the
    zero-shot tasks dropped, since the baseline computes perplexity only (a record must never claim
    an evaluation it did not run; the dense zero-shot numbers come from a dense run of their own)."""
    d = dense_config(cfg)
    d["eval"] = {**d["eval"], "zeroshot": {**(d["eval"].get("zeroshot") or {}), "tasks": []}}
    return d


def _dense_baseline(cfg: dict[str, Any], model, eval_sets: dict[str, torch.Tensor]) -> dict[str, float]:
    """Dense perplexities from the dense record (computed now, on the not-yet-pruned model, if absent)."""
    if not eval_sets:
        return {}  # no perplexity asked for: nothing to compare, no record to write
    dcfg = baseline_config(cfg)
    path = tracking.record_path(dcfg["results_dir"], tracking.config_hash(dcfg))
    rec = tracking.read_record(path)
    if not (rec and rec.get("status") == "done"):
        drun = Run(dcfg)
        with drun.stage("eval"):
            for name, windows in eval_sets.items():
                _record_ppl(drun.record, name, _ppl(dcfg, model, windows, f"dense ppl {name}"))
        drun.record["status"] = "done"
        drun.record["env"]["finished_at"] = tracking.now_iso()
        drun.save()
        rec = drun.record
    return {f"dense/{k}": v for k, v in rec["metrics"].items() if k.startswith(("ppl/", "ppl_lo/", "ppl_hi/"))}


def summary_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """The one-line result a user reads at the end of a run."""
    c, m = record["config"], record["metrics"]
    row = {
        "model": c["model"]["name"],
        "metric": c["metric"]["name"],
        "pattern": c["pattern"]["name"],
        "shuffle": c["shuffle"]["name"],
    }
    for k, v in m.items():
        if k.startswith(("ppl/", "dense/ppl/", "zeroshot/avg")) or k == "sparsity/actual":
            row[k] = round(v, 3) if isinstance(v, float) else v
    row["seconds"] = round(sum(record.get("timings", {}).values()), 1)
    for where in ("host", "device"):  # the highest stage peak; none where nothing was measured
        peaks = [
            m[f"{where}_peak_gb"] for m in record.get("memory", {}).values() if m.get(f"{where}_peak_gb") is not None
        ]
        if peaks:
            row[f"peak_{where}_gb"] = round(max(peaks), 2)
    row["record"] = f"runs/{record['config_hash']}.json"
    return row
