"""The repository's ``conf/`` tree read without Hydra: the one home of every default.

Hydra composes these files for a run. Code that needs a default or a model's shapes outside a run
(the bench stage called directly, the architecture catalogue, the bench scripts) reads the same
YAML here, so no Python copy of a default can drift from the file a run uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

#: conf/ beside the package (esparse is installed editable from the repository)
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def conf_file(group: str, name: str) -> dict[str, Any]:
    """``conf/<group>/<name>.yaml`` as a plain mapping (Hydra's ``defaults:`` lists are not resolved)."""
    path = CONF_DIR / group / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(conf_names(group)) or "none"
        raise FileNotFoundError(f"no config {path}; known in conf/{group}/: {known}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a {type(data).__name__}, not a mapping")
    return data


def conf_names(group: str) -> list[str]:
    """The option names of a config group, i.e. the stems of ``conf/<group>/*.yaml``, sorted."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
