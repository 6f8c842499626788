"""A paper table in its paper's own layout: the paper's rows × the paper's columns, then one column
per local model, each cell ours beside the paper's number.

The long frame (one line per cell, ``matching.OUT_COLUMNS``) stays the machine form (``<name>.csv``);
this is the form to read and to paste: ``to_markdown`` for ``<name>.md``, ``to_latex`` for a
booktabs ``tabular`` ready to ``\\input``. A paper cell reads ``ours (paper x)``, ours being
``mean ± sd (n)`` over calibration seeds, or ``—`` where nothing ran; a local column (a model the
paper did not run, on the local protocol) holds ours alone.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd

from analysis.tables.matching import NO_PAPER, NOT_RUN, OTHER_MODEL

EMPTY = "—"


def _decimals(v: float) -> int:
    """Two decimals below 100 (a paper's LLaMA perplexity), one below 10 000, none above."""
    return 2 if abs(v) < 100 else 1 if abs(v) < 1e4 else 0


def _num(v: Any, decimals: int | None = None) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{_decimals(v) if decimals is None else decimals}f}"
    return str(v)


def _printed(v: Any) -> str:
    """The paper's number as printed (11, not 11.0)."""
    return f"{v:g}" if isinstance(v, float) else str(v)


def ours_text(line: pd.Series) -> str:
    """``mean ± sd (n)``, ``value (n=1)`` or ``—``."""
    if line["ours"] == NOT_RUN:
        return EMPTY
    ours = _num(line["ours"])
    n = line.get("n")
    if isinstance(line.get("sd"), float) and not math.isnan(line["sd"]):
        return f"{ours} ± {_num(line['sd'], _decimals(line['ours']))} ({n})"
    return f"{ours} (n={n})" if n not in (None, NOT_RUN, EMPTY) else ours


def local_lines(df: pd.DataFrame) -> pd.Series:
    """The lines of a model the paper did not report in this table (placed beside its smallest
    model), filled or not."""
    if not len(df):
        return pd.Series(dtype=bool)
    models = set(df.attrs.get("models") or [])
    return (df["diff"] == OTHER_MODEL) | (~df["ours_model"].isin(models) if models else False)


def grid(df: pd.DataFrame) -> pd.DataFrame:
    """Rows and columns in the paper's order (as transcribed), local models after them."""
    rows = list(dict.fromkeys(df["row"]))
    local = local_lines(df)
    paper_cols = list(dict.fromkeys(df.loc[~local, "column"])) if len(df) else []
    # a local model gets one column, or one per paper column where a row holds several of its cells
    # (RIA Table 12: methods are the paper's columns)
    per_column = bool(len(df)) and bool(df[local].groupby(["row", "ours_model"])["column"].nunique().gt(1).any())

    def local_col(line: pd.Series) -> str:
        return f"{line['ours_model']} (local){': ' + line['column'] if per_column else ''}"

    local_cols = list(
        dict.fromkeys(local_col(line) for _, line in df[local].sort_values("ours_model", kind="stable").iterrows())
    )
    out = pd.DataFrame(EMPTY, index=rows, columns=[*paper_cols, *local_cols])
    for i, line in df.iterrows():
        if local[i]:
            col = local_col(line)
            text = ours_text(line)
        else:
            col = line["column"]
            paper = EMPTY if line["paper"] in (NO_PAPER, None) else _printed(line["paper"])
            text = f"{ours_text(line)} (paper {paper})"
        if out.at[line["row"], col] in (EMPTY, f"{EMPTY} (paper {EMPTY})"):  # the first (newest) line wins
            out.at[line["row"], col] = text
    out = out.drop(columns=[c for c in local_cols if per_column and (out[c] == EMPTY).all()])  # no local cell there
    out.index.name = df.attrs.get("table", "") or "row"
    return out


def to_markdown(g: pd.DataFrame) -> str:
    header = [g.index.name or "", *g.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [
        "| " + " | ".join([str(i), *map(str, r)]) + " |"
        for i, r in zip(g.index, g.itertuples(index=False), strict=True)
    ]
    return "\n".join(lines)


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}  # fmt: skip
_TEX_UNICODE = {"±": r"$\pm$", "×": r"$\times$", "→": r"$\rightarrow$", "α": r"$\alpha$", "—": "---", "–": "--",
                "‖": r"$\|$", "≈": r"$\approx$", "·": r"$\cdot$"}  # fmt: skip


def tex_escape(text: str) -> str:
    """LaTeX specials escaped and the few non-ASCII signs the tables use written as math (pdflatex)."""
    out = re.sub(r"[\\&%$#_{}~^]", lambda m: _TEX_SPECIAL[m.group(0)], str(text))
    for sign, tex in _TEX_UNICODE.items():
        out = out.replace(sign, tex)
    return out


def to_latex(g: pd.DataFrame, title: str = "") -> str:
    """A booktabs ``tabular`` (needs ``\\usepackage{booktabs}``), the title as a comment above it."""
    cols = "l" + "r" * len(g.columns)
    lines = [f"% {title}" if title else "%", f"\\begin{{tabular}}{{{cols}}}", r"\toprule"]
    lines.append(" & ".join(tex_escape(c) for c in [g.index.name or "", *g.columns]) + r" \\")
    lines.append(r"\midrule")
    for i, r in zip(g.index, g.itertuples(index=False), strict=True):
        lines.append(" & ".join(tex_escape(c) for c in [i, *r]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)
