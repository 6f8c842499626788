"""Zero-shot accuracy of the in-memory (pruned) model through lm-eval.

The model object itself is wrapped in lm-eval's ``HFLM`` (as ``ContinuationHeadLM``, which computes
logits only at the continuation positions): evaluating a checkpoint by name would score the dense
model (RIA's released code has exactly that bug). Hub tasks keep their lm-eval
names; offline, ``piqa_local`` (``tasks/piqa_local``) reads PIQA validation from ``data_dir`` (default: the
copy bundled in ``tasks/piqa_local/data``).

Hub reachability is probed once with a TCP connect to the hub endpoint (``_hub_reachable``, 3 s);
when it fails, or HF_HUB_OFFLINE is already set, the datasets/hub offline switches are turned on
for the duration of the call, so uncached hub datasets fail in about a second instead of after
~30 s of retries and cached ones still load.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from esparse.models import hub

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_TASKS_DIR = Path(__file__).resolve().parent / "tasks"
LOCAL_TASKS = ("piqa_local",)
BUNDLED_PIQA = LOCAL_TASKS_DIR / "piqa_local" / "data"

ESPARSE_TASKS = ("hellaswag", "piqa", "openbookqa", "sciq", "logiqa")
RIA_TASKS = ("boolq", "rte", "hellaswag", "arc_challenge", "mnli")
PRESETS = {"esparse_tasks": ESPARSE_TASKS, "ria_tasks": RIA_TASKS}

# Defaults of the `eval.zeroshot` config node. bootstrap_iters only matters for non-mean metrics
# (acc/acc_norm stderr is closed-form), so a small value keeps other tasks quick.
DEFAULTS: dict[str, Any] = {
    "tasks": ["piqa_local"],
    "num_fewshot": 0,
    "batch_size": 8,
    "limit": None,
    "include_path": None,
    "data_dir": None,  # None = the PIQA validation split bundled with the package
    "device": None,
    "bootstrap_iters": 1000,
}


class ZeroShotDataError(RuntimeError):
    """A task's data could not be loaded (hub unreachable, local files missing)."""


def _resolve(path: str | os.PathLike) -> Path:
    """Relative paths are taken from the repo root, so they do not depend on Hydra's cwd."""
    p = Path(path).expanduser()
    return (p if p.is_absolute() else REPO_ROOT / p).resolve()


def resolve_config(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """DEFAULTS overlaid with ``cfg``, validated; ``tasks`` may be a preset name or comma list."""
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"eval.zeroshot: unknown keys {unknown}; known: {sorted(DEFAULTS)}")
    c = {**DEFAULTS, **cfg}

    tasks = c["tasks"]
    if isinstance(tasks, str):
        tasks = list(PRESETS[tasks]) if tasks in PRESETS else [t.strip() for t in tasks.split(",")]
    tasks = [str(t) for t in tasks if str(t).strip()]
    if not tasks:
        raise ValueError(f"eval.zeroshot.tasks is empty: {c['tasks']!r}")
    c["tasks"] = list(dict.fromkeys(tasks))

    if not isinstance(c["num_fewshot"], int) or c["num_fewshot"] < 0:
        raise ValueError(f"eval.zeroshot.num_fewshot must be an int >= 0, got {c['num_fewshot']!r}")
    if not isinstance(c["batch_size"], int) or c["batch_size"] < 1:
        raise ValueError(f"eval.zeroshot.batch_size must be an int >= 1, got {c['batch_size']!r}")
    lim = c["limit"]
    if lim is not None and (isinstance(lim, bool) or not isinstance(lim, int | float) or lim <= 0):
        raise ValueError(f"eval.zeroshot.limit must be None or > 0, got {lim!r}")

    inc = c["include_path"]
    extra = [] if inc is None else [inc] if isinstance(inc, str | os.PathLike) else list(inc)
    paths = list(dict.fromkeys([LOCAL_TASKS_DIR, *(_resolve(p) for p in extra)]))
    for p in paths:
        if not p.is_dir():
            raise ValueError(f"eval.zeroshot.include_path: {p} is not a directory")
    c["include_path"] = [str(p) for p in paths]
    c["data_dir"] = str(BUNDLED_PIQA if c["data_dir"] is None else _resolve(c["data_dir"]))
    return c


def task_manager(c: Mapping[str, Any]):
    """An lm-eval ``TaskManager`` that knows every task of a resolved config (:func:`resolve_config`):
    the project's own tasks first, lm-eval's built-ins only when a task needs them (indexing them
    costs ~16 s). Raises ValueError naming the tasks neither knows."""
    tasks, paths, data_dir = c["tasks"], tuple(c["include_path"]), c["data_dir"]
    tm = _task_manager(paths, False, data_dir)
    missing = [t for t in tasks if t not in tm.all_tasks]
    if missing:
        unknown = _absent_from_builtin_yaml(missing)
        if unknown:
            raise ValueError(f"eval.zeroshot.tasks: unknown lm-eval task(s) {unknown}")
        tm = _task_manager(paths, True, data_dir)
    unknown = [t for t in tasks if t not in tm.all_tasks]
    if unknown:
        raise ValueError(f"eval.zeroshot.tasks: unknown lm-eval task(s) {unknown}")
    return tm


@functools.lru_cache(maxsize=4)
def _task_manager(include_path: tuple[str, ...], include_defaults: bool, data_dir: str):
    """Memoised: indexing lm-eval's ~15k built-in task YAMLs costs ~16 s; the index never changes."""
    from lm_eval.tasks import TaskManager

    return TaskManager(
        include_path=list(include_path),
        include_defaults=include_defaults,
        metadata={"piqa_data_dir": data_dir},
    )


def _absent_from_builtin_yaml(names: list[str]) -> list[str]:
    """Names that occur nowhere in lm-eval's built-in task YAMLs, hence are certainly unknown.

    Every task, group and tag name is a literal YAML value, so a plain text scan (~1 s) can reject
    a typo before the ~16 s index build; names that do occur are checked exactly by the index.
    """
    import lm_eval

    left = set(names)
    for p in (Path(lm_eval.__file__).parent / "tasks").rglob("*.yaml"):
        text = p.read_text(encoding="utf-8", errors="ignore")
        left = {n for n in left if n not in text}
        if not left:
            break
    return [n for n in names if n in left]


def _hub_offline_set() -> bool:
    return hub.offline_set()


def _hub_reachable(timeout: float = 3.0) -> bool:
    return hub.reachable(timeout)


_hub_offline = hub.offline


def _load_task(tm, name: str, offline: bool):
    """Build one task (this downloads/reads its data); data failures become ZeroShotDataError."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        loaded = tm.load([name])
    except (ConnectionError, LocalEntryNotFoundError) as e:
        state = "unreachable/offline" if offline else "unreachable"
        raise ZeroShotDataError(
            f"zero-shot task {name!r}: its dataset could not be fetched, the Hugging Face dataset hub is "
            f"{state} ({e}). Point eval.zeroshot.include_path at a directory of local task YAMLs with "
            f"local data, or use the offline task 'piqa_local' (reads eval.zeroshot.data_dir)."
        ) from e
    except FileNotFoundError as e:
        raise ZeroShotDataError(f"zero-shot task {name!r}: data files not found: {e}") from e
    if name in loaded["groups"]:
        return [loaded["groups"][name]], list(loaded["tasks"])
    return list(loaded["tasks"].values()), list(loaded["tasks"])


def _flatten(results: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """``{"piqa": {"acc,none": .6}}`` -> ``{"zeroshot/piqa/acc": .6}``; non-numeric values dropped."""
    out = {}
    for task, res in results.items():
        for key, val in res.items():
            metric, _, filt = key.partition(",")
            if not filt or isinstance(val, bool) or not isinstance(val, int | float):
                continue
            if not math.isfinite(val):
                continue
            name = metric if filt == "none" else f"{metric}_{filt}"
            out[f"zeroshot/{task}/{name}"] = float(val)
    return out


def _items(samples: Mapping[str, list[Mapping[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per task, every item's 0/1 outcome per metric in doc order, as a string of digits (PIQA's
    1,838 items cost ~2 kB per metric), and a hash of the items' documents. Why: two models scored on
    the same items can be compared item by item (McNemar), which separates far smaller differences
    than two independent stderrs do; the hash says whether the items really are the same."""
    out = {}
    for task, rows in samples.items():
        rows = sorted((r for r in rows if r.get("filter", "none") == "none"), key=lambda r: r["doc_id"])
        docs = hashlib.sha256("".join(str(r.get("doc_hash")) for r in rows).encode()).hexdigest()[:12]
        entry: dict[str, Any] = {"n": len(rows), "docs_sha": docs}
        for metric in rows[0]["metrics"] if rows else []:
            values = [r.get(metric) for r in rows]
            if all(isinstance(v, int | float) and v in (0, 1) for v in values):
                entry[metric] = "".join(str(int(v)) for v in values)
        out[task] = entry
    return out


def evaluate_zeroshot(
    model: torch.nn.Module, tokenizer: Any, cfg: Mapping[str, Any] | None = None
) -> tuple[dict[str, float], dict[str, Any]]:
    """Run lm-eval on ``model`` (the object, as pruned) and return (flat metrics, details).

    Metrics: ``zeroshot/<task>/<metric>`` for every numeric metric the task reports (acc, acc_norm
    and their ``_stderr``), plus ``zeroshot/avg/acc`` = mean acc over the requested tasks (the
    papers' "Avg." column). Details: docs per task, total seconds, seconds per doc, and each item's
    outcome per metric (``items``: see ``_items``).
    Raises ValueError for unknown tasks and ZeroShotDataError when a task's data is unreachable.
    If ``cfg["device"]`` differs from the model's device the model is moved there (in place).
    """
    import lm_eval

    from esparse.evaluation.continuation_lm import ContinuationHeadLM

    c = resolve_config(cfg)
    tasks = c["tasks"]
    tm = task_manager(c)

    needs_hub = any(t not in LOCAL_TASKS for t in tasks)
    offline = needs_hub and (_hub_offline_set() or not _hub_reachable())

    with _hub_offline(offline):
        built, leaves = [], {}
        for name in tasks:
            objs, leaves[name] = _load_task(tm, name, offline)
            built += objs

        if c["device"] is not None and torch.device(c["device"]) != next(model.parameters()).device:
            model.to(c["device"])
        lm = ContinuationHeadLM(pretrained=model, tokenizer=tokenizer, batch_size=c["batch_size"])
        t0 = time.perf_counter()
        out = lm_eval.simple_evaluate(
            model=lm,
            tasks=built,
            num_fewshot=c["num_fewshot"],
            limit=c["limit"],
            task_manager=tm,
            log_samples=True,  # per-item outcomes, for paired comparisons
            bootstrap_iters=c["bootstrap_iters"],
        )
        seconds = time.perf_counter() - t0

    metrics = _flatten(out["results"])
    accs = []
    for name in tasks:
        names = [name] if f"zeroshot/{name}/acc" in metrics else leaves[name]
        accs += [metrics[f"zeroshot/{n}/acc"] for n in names if f"zeroshot/{n}/acc" in metrics]
    if accs:
        metrics["zeroshot/avg/acc"] = sum(accs) / len(accs)

    n_docs = {t: int(v["effective"]) for t, v in out.get("n-samples", {}).items()}
    total = sum(n_docs.values())
    details = {
        "tasks": tasks,
        "n_docs": n_docs,
        "n_docs_total": total,
        "seconds": seconds,
        "seconds_per_item": seconds / total if total else None,
        "num_fewshot": c["num_fewshot"],
        "limit": c["limit"],
        "hub_offline": offline,
        "head": lm.head_path,  # continuation: logits only where a loglikelihood reads them; full: lm-eval's path
        "versions": {k: v for k, v in out.get("versions", {}).items()},
        "lm_eval_version": getattr(lm_eval, "__version__", None),
        "items": _items(out.get("samples") or {}),
    }
    return metrics, details
