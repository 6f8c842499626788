"""The papers' reported numbers, read from ``paper_values.json`` into cells the tables can place.

The JSON is the single transcription of both papers (see its ``about``); this module only parses
and validates it, so a typo in the file fails loudly here instead of silently misplacing a cell.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PAPER_VALUES = Path(__file__).with_name("paper_values.json")

PAPERS = {
    "esparse": "E-Sparse (Li et al., 2023; arXiv 2310.15929)",
    "ria": "RIA: Plug-and-Play (Zhang et al., ICLR 2024)",
}

#: paper models by size, smallest first: a local model's line is oriented on the smallest one
MODEL_ORDER = (
    "opt1.3b",
    "llama7b",
    "llama2_7b",
    "opt6.7b",
    "llama13b",
    "llama2_13b",
    "llama30b",
    "opt30b",
    "llama65b",
    "llama2_70b",
)


@dataclass(frozen=True)
class PaperCell:
    """One printed number and the run configuration it belongs to (our registry names)."""

    row: str
    column: str
    keys: Mapping[str, Any]
    value: float | None  # None: the paper prints nothing here; nan: the paper prints "nan"


@dataclass(frozen=True)
class PaperTable:
    name: str
    paper: str
    table: str
    caption: str
    where: str
    quantity: str
    lower_is_better: bool
    absent_from_text: bool
    rows: tuple[str, ...]
    columns: tuple[str, ...]
    cells: tuple[PaperCell, ...]
    notes: tuple[str, ...]
    ocr: tuple[Mapping[str, Any], ...]
    text_values: tuple[str, ...]

    def cell(self, row: str, column: str) -> PaperCell:
        for c in self.cells:
            if c.row == row and c.column == column:
                return c
        raise ValueError(f"{self.name}: no paper cell ({row!r}, {column!r})")

    @property
    def models(self) -> tuple[str, ...]:
        """The paper models this table reports, smallest first."""
        found = {c.keys["model"] for c in self.cells if c.keys.get("model")}
        return tuple(sorted(found, key=model_rank))


def model_rank(model: str) -> tuple[int, str]:
    return (MODEL_ORDER.index(model) if model in MODEL_ORDER else len(MODEL_ORDER), model)


def paper_models(tables: Mapping[str, PaperTable]) -> frozenset[str]:
    """Every model any paper table reports; any other model in a record is a local stand-in."""
    return frozenset(m for t in tables.values() for m in t.models)


def _value(v: Any, where: str) -> float | None:
    if v is None:
        return None
    if isinstance(v, str) and v.strip().lower() == "nan":
        return math.nan
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    raise ValueError(f"{where}: value {v!r} is not a number, null or 'nan'")


def _table(name: str, raw: Mapping[str, Any]) -> PaperTable:
    for key in ("paper", "table", "caption", "where", "quantity", "columns", "rows"):
        if key not in raw:
            raise ValueError(f"paper table {name!r}: missing key {key!r}")
    if raw["paper"] not in PAPERS:
        raise ValueError(f"paper table {name!r}: paper {raw['paper']!r} is not one of {sorted(PAPERS)}")
    match = dict(raw.get("match") or {})
    cols = list(raw["columns"])
    cells: list[PaperCell] = []
    for row in raw["rows"]:
        values = row.get("values") or []
        if len(values) != len(cols):
            raise ValueError(
                f"paper table {name!r}, row {row.get('label')!r}: {len(values)} values for {len(cols)} columns"
            )
        for col, v in zip(cols, values, strict=True):
            keys = {**match, **col.get("keys", {}), **row.get("keys", {})}
            where = f"{name}/{row['label']}/{col['header']}"
            cells.append(PaperCell(row["label"], col["header"], keys, _value(v, where)))
    extra_cols = []
    for ex in raw.get("extra_cells") or []:
        keys = {**match, **ex.get("keys", {})}
        cells.append(PaperCell(ex["row"], ex["column"], keys, _value(ex["value"], f"{name}/{ex['row']}")))
        extra_cols.append(ex["column"])
    rows = [r["label"] for r in raw["rows"]] + [ex["row"] for ex in raw.get("extra_cells") or []]
    return PaperTable(
        name=name,
        paper=raw["paper"],
        table=raw["table"],
        caption=raw["caption"],
        where=raw["where"],
        quantity=raw["quantity"],
        lower_is_better=bool(raw.get("lower_is_better", True)),
        absent_from_text=bool(raw.get("absent_from_text", False)),
        rows=tuple(dict.fromkeys(rows)),
        columns=tuple(dict.fromkeys([c["header"] for c in cols] + extra_cols)),
        cells=tuple(cells),
        notes=tuple(raw.get("notes") or ()),
        ocr=tuple(raw.get("ocr") or ()),
        text_values=tuple(raw.get("text_values") or ()),
    )


def load_reference(path: str | Path = PAPER_VALUES) -> dict[str, PaperTable]:
    """All transcribed tables by name (``esparse_t1``, ``ria_t4``, ...)."""
    raw = json.loads(Path(path).read_text())
    tables = raw.get("tables")
    if not isinstance(tables, dict):
        raise ValueError(f"{path}: expected a top-level 'tables' mapping")
    return {name: _table(name, t) for name, t in tables.items()}


def paper_value(table: str, row: str, column: str, path: str | Path = PAPER_VALUES) -> float | None:
    """One printed number, e.g. ``paper_value("esparse_t1", "E-Sparse, 2:4", "LLaMA-7B") == 10.56``."""
    tables = load_reference(path)
    if table not in tables:
        raise ValueError(f"unknown paper table {table!r}; known: {', '.join(sorted(tables))}")
    return tables[table].cell(row, column).value
