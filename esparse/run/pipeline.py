"""One run: resolved config → validate → load → prune → eval → bench → one record.

The record is written (atomically) when the run starts, after every stage, and at the end, so a
crash leaves an honest ``status: failed``/``running`` record and every finished number (Ctrl-C,
SIGTERM and SIGHUP: ``interrupted``, with the stage it was in); a re-run of a ``done`` config is
skipped unless ``force=true``, any other is resumed.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from esparse.compressed import grid_tensors, grids_from_tensors
from esparse.models import hub
from esparse.records import claims, hashing, resume, store, wandb_logger
from esparse.run import baseline, calibration, preflight
from esparse.run.config import normalize, validate
from esparse.run.record import Added, Run, stop_signals_interrupt

log = logging.getLogger(__name__)


def run(cfg: Mapping[str, Any]) -> dict[str, Any] | None:
    """Execute one resolved config and return its record (the existing one if already done; None
    if another live process has claimed the point, which it then computes)."""
    cfg = normalize(cfg)
    validate(cfg)
    with stop_signals_interrupt():  # SIGTERM/SIGHUP end the run as Ctrl-C does: record interrupted, claim released
        return _run(cfg)


def _run(cfg: dict[str, Any]) -> dict[str, Any] | None:
    path = store.record_path(cfg["results_dir"], hashing.config_hash(cfg))
    previous = store.load_record(path)  # an unreadable record is moved aside here
    if previous and previous.get("status") == "done" and not cfg.get("force"):
        log.info("skip: %s already done (force=true to redo)", path)
        return previous
    facts = preflight.check(cfg)

    run_ = Run(cfg)
    held = claims.claim(path, run_.record["env"]["started_at"])
    if held is None:
        who = claims.owner(path) or {}
        log.warning("skip: %s is being computed by pid %s on %s", path, who.get("pid"), who.get("host"))
        return None
    with held:
        previous = store.load_record(path)  # again, now that it is ours: another may just have finished
        if previous and previous.get("status") == "done" and not cfg.get("force"):
            log.info("skip: %s was finished by another process meanwhile", path)
            return previous
        run_.record["env"]["pid"] = os.getpid()
        keep = resume.cache_dir(_cache_root(cfg), run_.hash)
        if cfg.get("force"):
            resume.clear(keep)
        elif previous:
            run_.carry_over(previous)
        run_.save()
        logger = _make_logger(cfg, run_)
        run_.on_block = logger.log_block if logger is not None else None
        try:
            with hub.offline(bool(facts.get("hub_unusable"))):
                _execute(cfg, run_, keep)
            run_.record["status"] = "done"
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM/SIGHUP (record.Interrupted)
            run_.record["status"] = "interrupted"
            by = getattr(e, "signal_name", "SIGINT")
            run_.record["interrupted"] = {"by": by, "stage": run_.stage_now, "at": store.now_iso()}
            raise
        except BaseException as e:
            run_.record["status"] = "failed"
            run_.record["stage"] = run_.stage_now
            run_.record["error"] = f"{type(e).__name__}: {e}"
            run_.record["traceback"] = traceback.format_exc(limit=8)
            raise
        finally:
            run_.record["env"]["finished_at"] = store.now_iso()
            try:
                run_.save()
            except OSError as e:  # the error that ended the run (if any) stays the one raised
                log.error("the record could not be saved: %s", e)
                if sys.exc_info()[0] is None:
                    raise
            if logger is not None:
                logger.log_record(run_.record)
                logger.finish()
        resume.clear(keep)  # done: the record has every number, the kept weights are not needed
    return run_.record


def _cache_root(cfg: Mapping[str, Any]) -> Path:
    return preflight.cache_root(cfg)


def _make_logger(cfg: Mapping[str, Any], run_: Run):
    lg = cfg.get("logger") or {}
    if lg.get("name") != "wandb":
        return None
    name = f"{cfg['model']['name']}-{cfg['metric']['name']}-{cfg['pattern']['name']}-{cfg['shuffle']['name']}"
    return wandb_logger.WandbLogger(
        project=lg.get("project", "esparse"),
        group=cfg.get("experiment") or "adhoc",
        name=f"{name}-{run_.hash}",
        config=run_.cfg,
        dir=lg.get("dir") or Path(cfg["results_dir"]) / "wandb",
    )


def _execute(cfg: dict[str, Any], run_: Run, keep: Path) -> None:
    """Read every corpus, load the model, then run the configured stages in order, each adding to the
    record as it finishes; a stage a resumed run kept (``stages_done``) is not redone."""
    from esparse.masks import Pattern
    from esparse.models.loading import load_tokenizer

    stages, done = cfg["stages"], set(run_.record["stages_done"])
    evaluate = "eval" in stages and "eval" not in done
    kept = "prune" in done and (keep / resume.META).is_file()  # an earlier run of this config pruned
    cache_dir = cfg.get("paths", {}).get("cache_dir")

    # the tokenizer and every corpus first: a short or broken corpus fails before the model loads
    tok = load_tokenizer(cfg["model"], cache_dir)
    eval_sets, calib = {}, None
    if evaluate:
        with run_.stage("eval_data"):
            eval_sets = _eval_windows(cfg, tok, cache_dir)
        run_.merge({"details": {"eval_used": _eval_used(cfg, eval_sets)}})
    if "prune" in stages and not kept:
        with run_.stage("calibration_data"):
            cal = calibration.calibration_ids(cfg, tok)
        run_.merge({"details": {"calibration": cal.details}})
        calib = cal.ids

    m = _load(cfg, run_, tok)
    if eval_sets and Pattern.parse(dict(cfg["pattern"])).kind != "dense" and cfg["eval"].get("dense_baseline", True):
        with m.placed():
            run_.add(baseline.dense_baseline(cfg, m.model, eval_sets, run_.record["env"], _ppl, _ppl_fields))
    if "prune" in stages:
        run_.add_all(_prune_stage(cfg, run_, m, calib, keep))
    if evaluate:
        run_.add_all(_eval_stage(cfg, run_, m, eval_sets))
    if "bench" in stages:
        run_.add_all(_bench_stage(cfg, run_, m))


@dataclass(frozen=True)
class _Loaded:
    """The model a run works on, its tokenizer and family adapter; ``placed()`` is where it computes
    (with offload the model stays on the CPU and its blocks visit the device one at a time)."""

    model: Any
    tok: Any
    adapter: Any
    placed: Callable[[], AbstractContextManager]


def _load(cfg: Mapping[str, Any], run_: Run, tok) -> _Loaded:
    from esparse.models import get_adapter, load_model
    from esparse.models.arch import check_identity
    from esparse.models.loading import model_identity
    from esparse.models.placement import stream_blocks

    offload, device = bool(cfg.get("offload", False)), cfg["device"]
    with run_.stage("load"):
        model, tok = load_model(
            cfg["model"],
            cache_dir=cfg.get("paths", {}).get("cache_dir"),
            device="cpu" if offload else device,
            device_map=cfg.get("device_map"),
            tokenizer=tok,
        )
    adapter = get_adapter(model)
    run_.record["details"]["loaded_arch"] = _loaded_arch(model)
    if cfg["model"].get("path"):  # a local dir claims to be the named model; a hub id is its own identity
        check_identity(cfg["model"]["name"], run_.record["details"]["loaded_arch"])  # before any pruning
    run_.record["details"]["model_identity"] = model_identity(model, cfg["model"])
    placed = partial(stream_blocks, model, adapter, device) if offload else nullcontext
    return _Loaded(model, tok, adapter, placed)


def _prune_stage(cfg: Mapping[str, Any], run_: Run, m: _Loaded, calib, keep: Path) -> Iterator[Added]:
    """Prune in place, or load the pruned weights an earlier run of this config kept (``calib`` is
    None then); keep them while a later stage could still fail; write them to ``save_dir``."""
    done = list(run_.record["stages_done"])
    permutations = resume.load(keep, m.model, run_.hash) if calib is None else None
    bits = int((cfg.get("quant") or {}).get("bits", 0))  # a quantized run's grids, for save_format=nm
    grids = grids_from_tensors(resume.load_extra(keep), bits) if permutations is not None else {}
    if permutations is not None:
        log.info("resume: pruned weights of %s loaded from %s (prune not redone)", run_.hash, keep)
    else:
        with run_.stage("prune"):
            report = calibration.prune(
                m.model, calib, cfg, device=cfg["device"], adapter=m.adapter, on_block=run_.on_block
            )
        permutations, grids = report.layer_permutations(), report.grids
        yield calibration.prune_fields(cfg, m.model, m.adapter, report)
        later = bool(cfg.get("save_dir")) or "eval" in cfg["stages"] or "bench" in cfg["stages"]
        if later and cfg.get("keep_pruned", True):  # something after the prune could still fail
            try:  # best effort: a full or unwritable cache costs the resume, never the run
                with run_.stage("keep"):
                    kept_bytes = resume.save(keep, m.model, run_.hash, permutations, grid_tensors(grids))
            except OSError as e:
                log.warning("resume copy not written to %s (%s); the run goes on without it", keep, e)
                yield {"details": {"resume_cache_error": f"{type(e).__name__}: {e}"}}
            else:
                yield {"details": {"resume_cache_bytes": kept_bytes}}
        if "prune" not in done:
            yield {"done": "prune"}
    if cfg.get("save_dir") and "save" not in done:
        with run_.stage("save"):
            saved = _save(cfg, run_.hash, m, permutations, grids)
        yield {**saved, "done": "save"}


def _save(cfg: Mapping[str, Any], config_hash: str, m: _Loaded, permutations: dict[str, list[int]], grids) -> Added:
    if cfg.get("save_format", "safetensors") == "nm":
        from esparse.compressed import save_compressed

        extra = {"config_hash": config_hash, "metric": dict(cfg["metric"]), "model": cfg["model"]["name"]}
        q = {"quant": cfg.get("quant"), "grids": grids}  # a quantized run stores integer codes on its grids
        try:
            info = save_compressed(m.model, m.tok, cfg["save_dir"], cfg["pattern"], permutations, extra, **q)
        except OSError as e:
            raise store.write_error(e, cfg["save_dir"], f"save_dir={cfg['save_dir']}") from None
        return {"metrics": {"save/file_bytes": info["file_bytes"]}}
    from esparse.checkpoint import save_pruned

    try:
        save_pruned(m.model, m.tok, cfg["save_dir"], cfg, config_hash, permutations)
    except OSError as e:  # the staged copy is gone; the kept pruned weights let a re-run save again
        raise store.write_error(e, cfg["save_dir"], f"save_dir={cfg['save_dir']}") from None
    return {}


def _eval_stage(cfg: Mapping[str, Any], run_: Run, m: _Loaded, eval_sets: dict[str, torch.Tensor]) -> Iterator[Added]:
    """Perplexity on each corpus (added as each one finishes), then the zero-shot tasks."""
    with run_.stage("eval"), m.placed():
        for name, windows in eval_sets.items():
            yield _ppl_fields(name, _ppl(cfg, m.model, windows, f"ppl {name}"))
        zs = cfg["eval"].get("zeroshot") or {}
        if zs.get("tasks"):
            from esparse.evaluation.zeroshot import evaluate_zeroshot

            zs_metrics, zs_details = evaluate_zeroshot(m.model, m.tok, {**zs, "device": cfg["device"]})
            yield {"metrics": zs_metrics, "details": {"zeroshot": zs_details}}
    yield {"done": "eval"}


def _bench_stage(cfg: Mapping[str, Any], run_: Run, m: _Loaded) -> Iterator[Added]:
    from esparse.bench import run_bench
    from esparse.masks import Pattern

    details: dict[str, Any] = {}
    pattern = Pattern.parse(dict(cfg["pattern"]))
    nm = {"nm": (pattern.n, pattern.m)} if pattern.kind == "nm" else {}  # else run_bench's default (2:4)
    with run_.stage("bench"):
        metrics = run_bench(m.model, dict(cfg.get("bench") or {}), details, **nm)
    yield {"metrics": metrics, "details": details}


def _loaded_arch(model) -> dict[str, Any] | None:
    """The architecture of the model actually loaded (from its own config, not ours): a record says
    what it ran on, and memory projections can use it."""
    from esparse.models.arch import arch_from_hf_config

    try:
        return arch_from_hf_config(model.config)
    except ValueError:  # a model type without a memory layout: nothing to project, nothing wrong
        return None


def _eval_windows(cfg: Mapping[str, Any], tok, cache_dir) -> dict[str, torch.Tensor]:
    from esparse.run import data

    ev = cfg["eval"]["ppl"]
    out = {}
    for name in ev.get("datasets") or []:
        texts = data.load_texts(name, ev.get("split", "eval"), cache_dir, **data.dataset_kwargs(cfg.get("data"), name))
        stream = data.tokenize_stream(texts, tok, what=f"evaluation corpus {name!r}")
        out[name] = data.eval_windows(stream, ev["seqlen"], ev.get("nsamples"), what=f"evaluation corpus {name!r}")
    return out


def _eval_used(cfg: Mapping[str, Any], eval_sets: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The windows each corpus gave (a corpus shorter than ``eval.ppl.nsamples`` windows gives fewer:
    said here and in a warning, never silently)."""
    asked = cfg["eval"]["ppl"].get("nsamples")
    used = {}
    for name, w in eval_sets.items():
        used[name] = {"nsamples": int(w.shape[0]), "seqlen": int(w.shape[1]), "nsamples_requested": asked}
        if asked is not None and w.shape[0] < asked:
            log.warning(
                "eval.ppl.nsamples=%s but corpus %r has only %d windows of %d tokens: evaluating on %d",
                asked, name, w.shape[0], w.shape[1], w.shape[0],
            )  # fmt: skip
    return used


def _ppl_fields(name: str, ppl) -> Added:
    """``ppl/<name>`` and its window-bootstrap 95 % interval in the metrics, the per-window NLLs in
    the details (so analysis can pair two runs window by window)."""
    lo, hi = ppl.interval()
    return {
        "metrics": {f"ppl/{name}": ppl.value, f"ppl_lo/{name}": lo, f"ppl_hi/{name}": hi},
        "details": {"ppl_windows": {name: {"tokens_per_window": ppl.tokens, "nll": ppl.window_nll}}},
    }


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
