"""analysis/reference + the table registry: paper values placed where the papers print them, the
paper's own inconsistencies listed, and every registered table rendering its declared cells.

Every expected number below is read from the paper text by hand.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python -m pytest` has it; a bare `pytest` may not
    sys.path.insert(0, str(ROOT))

from analysis import records as rec_io  # noqa: E402
from analysis.tables import matching, paper_tables, render  # noqa: E402
from analysis.tables.reference import load_reference, paper_value  # noqa: E402


@pytest.mark.parametrize(
    ("table", "row", "column", "value"),
    [  # read from ../shared/papers/*.txt by hand
        ("esparse_t1", "E-Sparse, 2:4", "LLaMA-7B", 10.56),
        ("esparse_t1", "Magnitude, 4:8", "LLaMA-65B", 6.35),
        ("esparse_t1", "FP16", "LLaMA-30B", 4.10),
        ("esparse_t2", "13B E-Sparse", "HellaSwag", 49.40),
        ("esparse_t2", "7B FP16", "SciQ", 89.6),
        ("esparse_t3", "Magnitude", "OPT-30b (2:4)", 1980.71),
        ("esparse_ablation", "norm + entropy", "LLaMA-13B", 8.82),
        ("esparse_t5", "Decoder Att_Out", "Latency Reduction (%)", 34.8),
        ("esparse_t5", "Context-stage FFN-2", "E-Sparse GEMM (ms)", 8.958),
        ("esparse_t6", "LLaMA-65B", "Memory Saving (%)", 43.52),
        ("ria_t1", "RIA (Ours)", "OPT 1.3b", 18.08),
        ("ria_t1", "Dense", "LLaMA2 7b", 5.47),  # printed "547"
        ("ria_t2", "RI", "LLaMA-30B", 5.27),  # printed "527"
        ("ria_t4", "LLaMA2-13b RIA (Ours)", "2:4+CP", 7.77),
        ("ria_t4", "LLaMA2-70b Wanda", "2:4+CP w/o LSA", 5.29),
        ("ria_t4", "LLaMA2-13b Dense", "Dense", 4.88),
        ("ria_t5", "2:4 (cuSPARSELT)", "Overall", 1.63),
        ("ria_t6", "RIA (2:4+CP)", "MNLI", 49.08),
        ("ria_t7", "SparseGPT", "PTB / calib PTB", 59.10),
        ("ria_t7", "Magnitude", "PTB (no calibration)", 146.35),
        ("ria_t8", "RIA+rec", "wikitext2 / calib wikitext2", 5.57),
        ("ria_t10", "RIA + CP (semi-structured)", "2:4 (50% sparsity)", 10.12),
        ("ria_t11", "Greedy + 100 escapes", "8192 x 8192", 3592.3),
    ],
)
def test_paper_values_where_the_papers_print_them(table, row, column, value):
    assert paper_value(table, row, column) == pytest.approx(value, abs=1e-9)


def test_paper_cells_carry_the_run_configuration():
    ref = load_reference()
    assert dict(ref["esparse_t1"].cell("E-Sparse, 2:4", "LLaMA-7B").keys) == {
        "dataset": "wikitext2",
        "model": "llama7b",
        "method": "esparse",
        "pattern": "2:4",
        "shuffle": "esparse",
    }
    k = ref["ria_t4"].cell("LLaMA2-70b SparseGPT", "4:8+CP").keys
    assert (k["model"], k["method"], k["pattern"], k["shuffle"]) == ("llama2_70b", "sparsegpt", "4:8", "ria_cp_lsa")
    assert math.isnan(ref["ria_t2"].cell("||X||_2", "LLaMA-30B").value)  # the paper prints nan
    assert ref["ria_t7"].cell("Wanda", "c4 / calib PTB").keys["calibration"] == "ptb"
    # exact cell counts: 9 rows x 4 models; 20 rows x 6; 8 rows x 6 + 2 dense; 3 x 9 + 3 magnitude
    assert [len(ref[n].cells) for n in ("esparse_t1", "esparse_t2", "ria_t4", "ria_t7")] == [36, 120, 50, 30]


def test_printed_averages_and_ratios_are_consistent_except_where_noted():
    """A transcription typo in a row shows up as a row mean that no longer matches its average."""
    ref = load_reference()
    off = set()
    for name in ("esparse_t2", "ria_t3", "ria_t6"):
        t = ref[name]
        for row in t.rows:
            vals = [t.cell(row, c).value for c in t.columns]
            if abs(sum(vals[:5]) / 5 - vals[5]) > 0.01:
                off.add((name, row))
    # the paper's own inconsistencies, listed in the JSON notes (checked by hand)
    assert off == {
        ("esparse_t2", "7B Magnitude"),
        ("esparse_t2", "7B Wanda"),
        ("esparse_t2", "13B FP16"),
        ("esparse_t2", "13B Magnitude"),
        ("esparse_t2", "13B Wanda"),
        ("esparse_t2", "30B Wanda"),
        ("ria_t6", "Wanda (4:8+CP)"),
    }
    t5 = ref["esparse_t5"]
    for row in t5.rows:
        d, s, red = (t5.cell(row, c).value for c in t5.columns)
        assert abs(100 * (1 - s / d) - red) < 0.1  # rounded or truncated to 0.1
    t6 = ref["esparse_t6"]
    for row in t6.rows:
        d, s, saving = (t6.cell(row, c).value for c in t6.columns[:3])  # the fourth (2:4 + INT4) is ours alone
        assert 100 * (1 - s / d) == pytest.approx(saving, abs=0.006)


def test_ocr_corrections_are_the_cell_values():
    for t in load_reference().values():
        for o in t.ocr:
            assert t.cell(o["row"], o["column"]).value == pytest.approx(o["read_as"]), (t.name, o)


def test_every_table_has_its_transcription_and_bad_transcriptions_fail(tmp_path):
    ref = load_reference()
    assert set(paper_tables.TABLES) <= set(ref)
    assert not any(t.absent_from_text for t in ref.values())
    bad = {
        "tables": {
            "x": {
                "paper": "esparse",
                "table": "T",
                "caption": "",
                "where": "",
                "quantity": "ppl",
                "columns": [{"header": "a", "keys": {}}, {"header": "b", "keys": {}}],
                "rows": [{"label": "short row", "keys": {}, "values": [1.0]}],
            }
        }
    }
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="short row"):
        load_reference(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="nope"):
        paper_tables.get("nope")


def test_the_registry_is_every_table_make_tables_writes(tmp_path, capsys):
    """Names <-> files: `python -m analysis tables` (what `make tables` runs) writes md/csv/tex for
    exactly the registry's names, the index links each, `list` names each; a transcription without
    a spec says it has no builder."""
    from analysis.__main__ import main

    out = tmp_path / "tables"
    assert main(["tables", "--results", str(ROOT / "results"), "--out", str(out)]) == 0
    written = {p.name for p in out.iterdir()}
    assert written == {"index.md"} | {f"{n}.{ext}" for n in paper_tables.TABLES for ext in ("md", "csv", "tex")}
    index = (out / "index.md").read_text()
    assert all(f"| [{n}]({n}.md) |" in index for n in paper_tables.TABLES)
    capsys.readouterr()
    assert main(["list"]) == 0
    listed = [line.split()[1] for line in capsys.readouterr().out.splitlines() if line.startswith("table ")]
    assert listed == list(paper_tables.TABLES)
    ref = load_reference()
    for name in set(ref) - set(paper_tables.TABLES):
        assert any("no builder" in n for n in ref[name].notes), name


@pytest.mark.parametrize("name", list(paper_tables.TABLES))
def test_each_spec_renders_its_declared_rows_and_columns(name, tmp_path):
    """With no records every transcribed cell is one "not run" line, in the transcription's order,
    and the markdown shows the spec's title, the line columns and every row and column label."""
    spec = paper_tables.get(name)
    paper = spec.paper()
    assert spec.name == name == paper.name and spec.title and spec.reads
    df = spec(rec_io.load_records(tmp_path))
    assert (df.attrs["name"], df.attrs["title"]) == (name, spec.title)
    assert list(df.columns) == matching.OUT_COLUMNS
    assert list(zip(df["row"], df["column"], strict=True)) == [(c.row, c.column) for c in paper.cells]
    assert tuple(dict.fromkeys(df["row"])) == paper.rows and set(df["column"]) == set(paper.columns)
    assert set(df["ours"]) == {matching.NOT_RUN}
    md = render.to_markdown(df)
    assert md.startswith(f"# {spec.title}\n") and f"Not run: {len(df)} of {len(df)} cells." in md
    lines = md.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| ") and "---" in lines[i + 1])
    # the paper's grid: its rows in its order, its columns in its order, each cell the paper's number
    assert [h.strip() for h in lines[header].strip("|").split("|")][1:] == list(dict.fromkeys(df["column"]))
    body = lines[header + 2 : header + 2 + len(paper.rows)]
    assert [line.split(" | ")[0].removeprefix("| ") for line in body] == list(paper.rows)
    for c in paper.cells:
        row = body[paper.rows.index(c.row)]
        col = list(dict.fromkeys(df["column"])).index(c.column) + 1
        printed = "—" if c.value is None else f"{c.value:g}"
        assert row.strip("|").split(" | ")[col].strip() == f"— (paper {printed})", (c.row, c.column, row)
    tex = render.to_latex(df)
    assert tex.startswith(f"% {spec.title}\n") and "\\toprule" in tex and "\\bottomrule" in tex
    assert tex.count("\\\\") == len(paper.rows) + 1  # header + one line per paper row
