"""Zero-shot tasks checked before the model loads: the name exists, and its data can be read.

Names are checked against the local task dirs (``include_path``, ``piqa_local``) and, by a text
scan of lm-eval's built-in YAMLs (about a second), against lm-eval's registry, instead of the
16 s full index; a hub task's dataset must be reachable now or already in the local cache.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

_DATASET_PATH = re.compile(r"^dataset_path:\s*['\"]?([^'\"\s#]+)", re.M)
_NAME = re.compile(r"^(?:task|group|tag):\s*['\"]?([^'\"\s#\[\]]+)", re.M)
_INCLUDE = re.compile(r"^include:\s*['\"]?([^'\"\s#]+)", re.M)


def zeroshot_tasks(zs: Mapping[str, Any], hub_status: Callable[[], str | None]) -> list[str]:
    """Problems with ``eval.zeroshot``'s tasks (``hub_status()``: why the hub is unusable, or None)."""
    from esparse.evaluation import zeroshot

    try:
        c = zeroshot.resolve_config(zs)
    except ValueError:
        return []  # config.validate reports it
    local = local_task_names(c["include_path"])
    problems = []
    if "piqa_local" in c["tasks"]:
        from esparse.evaluation.tasks.piqa_local.utils import read_split  # type: ignore[import-not-found]

        try:
            read_split(c["data_dir"])
        except (OSError, ValueError) as e:
            problems.append(f"eval.zeroshot.data_dir: {zs.get('data_dir')!r}: {e}")
    hub_tasks = [t for t in c["tasks"] if t not in local]
    unknown = zeroshot._absent_from_builtin_yaml(hub_tasks)
    for t in unknown:
        problems.append(
            f"eval.zeroshot.tasks: {t!r} is not an lm-eval task (nor one in include_path {c['include_path']}); "
            f"allowed: lm-eval task names (`lm_eval ls tasks`), {list(zeroshot.LOCAL_TASKS)}, or the presets "
            f"{sorted(zeroshot.PRESETS)}"
        )
    for t in [t for t in hub_tasks if t not in unknown]:
        why = hub_status()
        if why is None:
            break
        ds = dataset_path(t)
        if ds is None or not dataset_cached(ds):
            src = f"dataset {ds!r}" if ds else "its datasets"
            problems.append(
                f"eval.zeroshot.tasks: {t!r} reads {src} from the Hugging Face hub, which is {why}, and it is "
                f"not in the local cache; run it once where the hub is reachable, or use the offline task "
                f"'piqa_local' (or local task YAMLs through eval.zeroshot.include_path)"
            )
    return problems


def local_task_names(dirs: list[str]) -> set[str]:
    """Task, group and tag names defined by the YAMLs under ``dirs`` (a text scan: building lm-eval's
    TaskManager for them costs seconds of imports)."""
    names = set()
    for d in dirs:
        for p in Path(d).rglob("*.yaml"):
            names.update(_NAME.findall(p.read_text(encoding="utf-8", errors="ignore")))
    return names


def dataset_path(task: str) -> str | None:
    """The ``dataset_path`` of a built-in lm-eval task (from its YAML or the YAML it includes)."""
    import lm_eval

    line = re.compile(rf"^task:\s*['\"]?{re.escape(task)}['\"]?\s*$", re.M)
    for p in (Path(lm_eval.__file__).parent / "tasks").rglob("*.yaml"):
        text = p.read_text(encoding="utf-8", errors="ignore")
        if not line.search(text):
            continue
        for source in (text, _included(p, text)):
            m = _DATASET_PATH.search(source)
            if m:
                return m.group(1)
    return None


def _included(path: Path, text: str) -> str:
    m = _INCLUDE.search(text)
    if not m or not (path.parent / m.group(1)).is_file():
        return ""
    return (path.parent / m.group(1)).read_text(encoding="utf-8", errors="ignore")


def dataset_cached(repo_id: str) -> bool:
    """Whether datasets' cache or the hub cache holds anything of the dataset ``repo_id``."""
    from huggingface_hub import constants

    # datasets' own default, without importing datasets (~2 s)
    cache = Path(os.environ.get("HF_DATASETS_CACHE") or Path(constants.HF_HOME) / "datasets").expanduser()
    hub_dir = Path(constants.HF_HUB_CACHE) / f"datasets--{repo_id.replace('/', '--')}"
    return (cache / repo_id.replace("/", "___")).is_dir() or hub_dir.is_dir()
