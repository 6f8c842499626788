"""Loader for the local PIQA task: joins ``valid.jsonl`` with its separate ``valid-labels.lst``.

lm-eval's json loader cannot join a second file, hence this ``custom_dataset`` hook. lm-eval calls
it with the task metadata as keyword arguments; ``piqa_data_dir`` among them picks the directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import datasets

ENV_VAR = "ESPARSE_PIQA_DIR"
# the validation split ships with the package (AFL-3.0, see data/README.md)
DEFAULT_DIR = Path(__file__).resolve().parent / "data"
SPLITS = {"validation": "valid"}


def read_split(data_dir: str | os.PathLike, stem: str = "valid") -> list[dict[str, Any]]:
    """Docs ``{goal, sol1, sol2, label}`` of one split, checked line by line against its labels."""
    data_dir = Path(data_dir)
    docs_path, labels_path = data_dir / f"{stem}.jsonl", data_dir / f"{stem}-labels.lst"
    for p in (docs_path, labels_path):
        if not p.is_file():
            raise FileNotFoundError(f"piqa_local: missing {p} (set eval.zeroshot.data_dir or ${ENV_VAR})")
    with docs_path.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    with labels_path.open(encoding="utf-8") as f:
        labels = [line.strip() for line in f if line.strip()]
    if len(rows) != len(labels):
        raise ValueError(f"piqa_local: {docs_path} has {len(rows)} docs but {labels_path} has {len(labels)} labels")
    docs = []
    for i, (row, lab) in enumerate(zip(rows, labels, strict=True)):
        if lab not in ("0", "1"):
            raise ValueError(f"piqa_local: label {lab!r} on line {i + 1} of {labels_path} is not 0 or 1")
        docs.append({"goal": row["goal"], "sol1": row["sol1"], "sol2": row["sol2"], "label": int(lab)})
    return docs


def load_piqa(piqa_data_dir: str | None = None, **_: Any) -> datasets.DatasetDict:
    """``custom_dataset`` hook: the validation split as a DatasetDict (other metadata ignored)."""
    import datasets  # here, not at import: esparse checks the files before loading (datasets costs ~2 s)

    data_dir = piqa_data_dir or os.environ.get(ENV_VAR) or DEFAULT_DIR
    return datasets.DatasetDict(
        {split: datasets.Dataset.from_list(read_split(data_dir, stem)) for split, stem in SPLITS.items()}
    )
