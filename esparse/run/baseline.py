"""The dense baseline a pruned run reports beside its own perplexity: computed once per model,
evaluation protocol, lock and machine kind, and reused by every run that needs it.

A dense record in ``results_dir`` is reused only when the lock and the machine kind that made it are
this run's (floats differ across kinds, so a number from another machine would make the dense-vs-pruned
pair a cross-kind comparison). Otherwise the dense perplexity is computed now, on the not-yet-pruned
model; a finished dense record is never overwritten. Either way the pruned record says, in
``details.dense_baseline``, where its ``dense/...`` numbers came from.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import torch

from esparse.records import claims, hashing, provenance, store
from esparse.run.config import normalize
from esparse.run.record import Run

#: (config, model, windows, progress label) -> Perplexity; the pipeline's own evaluation
PplFn = Callable[[Mapping[str, Any], Any, torch.Tensor, str], Any]
#: (corpus name, Perplexity) -> the fields a record keeps of it
FieldsFn = Callable[[str, Any], dict[str, Any]]


def dense_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The dense baseline of a config: same model and evaluation, no pruning."""
    d = copy.deepcopy(dict(cfg))
    d["pattern"] = {"name": "dense", "kind": "dense", "n": 0, "m": 0, "sparsity": 0.0, "scope": "row"}
    d["stages"] = [s for s in d.get("stages", []) if s == "eval"]
    d["save_dir"] = None
    d["experiment"] = None
    d["quant"] = {"name": "none"}  # the baseline is the model in its own dtype
    return normalize(d)


def baseline_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The config of the dense-perplexity record a pruned run reuses: its dense config with the
    zero-shot tasks dropped, since the baseline computes perplexity only (a record must never claim
    an evaluation it did not run; the dense zero-shot numbers come from a dense run of their own)."""
    d = dense_config(cfg)
    d["eval"] = {**d["eval"], "zeroshot": {**(d["eval"].get("zeroshot") or {}), "tasks": []}}
    return d


def _maker(env: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a record's environment that decides whether its floats are this run's."""
    return {"machine": provenance.machine_kind(env), "lock": (env.get("lock") or {}).get("sha256")}


def dense_baseline(
    cfg: dict[str, Any], model, eval_sets: dict[str, torch.Tensor], env: Mapping[str, Any], ppl: PplFn, fields: FieldsFn
) -> dict[str, Any]:
    """``{"metrics": {"dense/ppl/...": ...}, "details": {"dense_baseline": provenance}}`` for the run
    whose environment is ``env``; empty when no perplexity is asked for (nothing to compare)."""
    if not eval_sets:
        return {}
    dcfg = baseline_config(cfg)
    chash = hashing.config_hash(dcfg)
    path = store.record_path(dcfg["results_dir"], chash)
    stored = store.load_record(path)  # an unreadable one is moved aside, not overwritten
    here, held = _maker(env), None
    done = bool(stored and stored.get("status") == "done")
    theirs = _maker(stored.get("env") or {}) if done else None
    if done and theirs == here:
        rec, source = stored, "record"
    else:
        drun = Run(dcfg)
        if not done:
            held = claims.claim(path, drun.record["env"]["started_at"])  # None: another run writes it
        try:
            with drun.stage("eval"):
                for name, windows in eval_sets.items():
                    drun.merge(fields(name, ppl(dcfg, model, windows, f"dense ppl {name}")))
            drun.record.update(status="done", stages_done=["eval"])
            drun.record["env"]["finished_at"] = store.now_iso()
            if held is not None:
                drun.save()
        finally:
            if held is not None:
                held.release()
        rec, source = drun.record, "computed"
    why = None
    if done and source == "computed":
        why = f"the stored dense record was made by {theirs}, this run by {here}: not reused, not overwritten"
    origin = {
        "config_hash": chash,
        "source": source,
        "saved": source == "record" or held is not None,
        **here,
        "finished_at": (rec.get("env") or {}).get("finished_at"),
        "git_sha": (rec.get("env") or {}).get("git_sha"),
        "not_reused_because": why,
    }
    metrics = {f"dense/{k}": v for k, v in rec["metrics"].items() if k.startswith(("ppl/", "ppl_lo/", "ppl_hi/"))}
    return {"metrics": metrics, "details": {"dense_baseline": origin}}
