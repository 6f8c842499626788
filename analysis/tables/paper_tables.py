"""The paper tables, declared as data: one registry of name -> spec.

A spec names a table, titles it, and says which records fill its cells (a fill function of
``analysis.tables.matching`` or ``analysis.tables.bench_tables``, and the record keys it reads). Its rows,
columns, the run configuration of each cell and the paper's numbers are the transcription of the
same name in ``paper_values.json`` (``analysis.tables.reference``), the one place they are written, so a
number is never typed twice. Adding a table: transcribe it there, add one ``TableSpec`` here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pandas as pd

from analysis.tables.bench_tables import gemm_cells, memory_cells, permutation_cells
from analysis.tables.matching import Lines, record_cells, table_frame
from analysis.tables.reference import PaperTable, load_reference

#: (the table's transcription, every transcription, records, bench rows or None) -> its lines and notes
Fill = Callable[[PaperTable, Mapping[str, PaperTable], pd.DataFrame, pd.DataFrame | None], Lines]


#: the paper-scale cells of every table: the papers' models (hub) at the papers' protocol (GPU)
PAPER_SCALE = "paper scale: the papers' models from the hub, on a GPU (`+experiment=<table>_paper`)"
ZEROSHOT_STOPS = PAPER_SCALE + "; local: only PIQA has offline data (the other tasks read the hub)"
GPU_STOPS = "a CUDA GPU with 2:4 kernels (cuSPARSELt / CUTLASS); none measured yet"


@dataclass(frozen=True)
class TableSpec:
    """One paper table: its title, how its cells are filled, and (by name) its transcription."""

    name: str
    title: str
    fill: Fill
    reads: str  # the record keys (or bench fields) its cells are read from
    bench_notes: bool = False  # also list the bench files that could not be read in its notes
    #: what keeps the cells this machine cannot fill empty, named in the index
    stops: str = PAPER_SCALE

    def paper(self, ref: Mapping[str, PaperTable] | None = None) -> PaperTable:
        """The transcription: rows, columns, each cell's run configuration and the paper's number."""
        return (ref if ref is not None else load_reference())[self.name]

    def __call__(
        self, records: pd.DataFrame, bench: pd.DataFrame | None = None, ref: Mapping[str, PaperTable] | None = None
    ) -> pd.DataFrame:
        """One line per cell (``matching.OUT_COLUMNS``), the header's facts in ``attrs``."""
        ref = ref if ref is not None else load_reference()
        table = ref[self.name]
        lines, notes = self.fill(table, ref, records, bench)
        return table_frame(lines, table, self.title, notes)


# fmt: off
TABLES: dict[str, TableSpec] = {spec.name: spec for spec in (
    TableSpec("esparse_t1",
              "E-Sparse Table 1 — WikiText-2 perplexity, LLaMA × method × 2:4 / 4:8",
              record_cells, "ppl/wikitext2; the E-Sparse rows ran metric=esparse shuffle=esparse"),
    TableSpec("esparse_t2",
              "E-Sparse Table 2 — zero-shot accuracy (%), LLaMA, 2:4",
              record_cells, "zeroshot/<task>/acc × 100 (or <task>_local) of five tasks; Avg. needs all five",
              stops=ZEROSHOT_STOPS),
    TableSpec("esparse_t3",
              "E-Sparse Table 3 — WikiText-2 perplexity, OPT-6.7B / 30B, 2:4 / 4:8",
              record_cells, "ppl/wikitext2"),
    TableSpec("esparse_ablation",
              "E-Sparse ablation (Table 4, 'Fig. 4' in the text) — norm → +entropy → +global → +local, 2:4",
              record_cells, "ppl/wikitext2 of wanda → esparse → + shuffle=esparse_global → + shuffle=esparse"),
    TableSpec("esparse_t5",
              "E-Sparse Table 5 — per-layer GEMM latency, dense vs 2:4",
              gemm_cells, "bench/gemm/<layer>/<stage>/{dense,sparse}_ms: ms and latency reduction", True,
              stops=GPU_STOPS),
    TableSpec("esparse_t6",
              "E-Sparse Table 6 — memory, dense vs 2:4 compressed",
              memory_cells, "bench/memory/{dense,compressed}_bytes: GB (1e9 bytes) and saving (%)"),
    TableSpec("ria_t1",
              "RIA Table 1 — WikiText-2 perplexity, 50 % unstructured",
              record_cells, "ppl/wikitext2"),
    TableSpec("ria_t2",
              "RIA Table 2 — ablation of the RIA score (50 % unstructured)",
              record_cells, "ppl/wikitext2 per score; a score not in the registry stays not run"),
    TableSpec("ria_t3",
              "RIA Table 3 — zero-shot accuracy (%), LLaMA2-70B, 50 % unstructured",
              record_cells, "zeroshot/<task>/acc × 100",
              stops=ZEROSHOT_STOPS),
    TableSpec("ria_t4",
              "RIA Table 4 — WikiText-2 perplexity, unstructured / 2:4 / 4:8 ± channel permutation (± LSA)",
              record_cells, "ppl/wikitext2; CP w/o LSA ran shuffle=ria_cp, CP ran shuffle=ria_cp_lsa"),
    TableSpec("ria_t5",
              "RIA Table 5 — layer speedup over dense, LLaMA2-13B shapes",
              gemm_cells, "bench rows: Σ dense ms / Σ sparse ms per layer group and backend, context stage", True,
              stops=GPU_STOPS),
    TableSpec("ria_t6",
              "RIA Table 6 — zero-shot accuracy (%), LLaMA2-70B, N:M ± CP",
              record_cells, "zeroshot/<task>/acc × 100",
              stops=ZEROSHOT_STOPS),
    TableSpec("ria_t7",
              "RIA Table 7 — calibration-set sensitivity (LLaMA2-13B, 50 % unstructured)",
              record_cells, "ppl/<dataset> by calibration.name",
              stops=PAPER_SCALE + "; local: PTB and C4 have no offline copy (`data.<corpus>.path=` reads yours)"),
    TableSpec("ria_t8",
              "RIA Table 8 — + weight reconstruction (LLaMA2-13B, 50 % unstructured)",
              record_cells, "ppl/<dataset> with and without metric.reconstruct"),
    TableSpec("ria_t10",
              "RIA Table 10 — 1:4 / 2:4 / 3:4 vs unstructured 25 / 50 / 75 % (LLaMA2-7B)",
              record_cells, "ppl/wikitext2; n:m prunes n of every m"),
    TableSpec("ria_t12",
              "RIA Table 12 — prune, then quantize (GPTQ / AWQ, 4-bit, groups of 128), LLaMA2-7B, 50 % unstructured",
              record_cells, "ppl/wikitext2 by quant.name; 2:4 rows ours"),
    TableSpec("ria_t11",
              "RIA Table 11 — permutation time (s), greedy vs channel permutation",
              permutation_cells, "bench rows' seconds per shuffle and shape; whole-model permutation/seconds", True),
)}
# fmt: on


def get(name: str) -> TableSpec:
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}; known tables: {', '.join(TABLES)}")
    return TABLES[name]
