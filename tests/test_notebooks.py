"""Notebooks never rot: each is valid nbformat, its code compiles, it is committed without outputs,
and (slow) it executes top to bottom on the real default model with nbclient."""

from __future__ import annotations

import re

import nbformat
import pytest
from helpers import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_notebooks_exist_and_are_numbered_in_order():
    names = [p.name for p in NOTEBOOKS]
    assert names and names[0] == "01-one-layer-walkthrough.ipynb"
    assert all(re.fullmatch(r"\d\d-[a-z0-9-]+\.ipynb", n) for n in names), names
    assert [int(n[:2]) for n in names] == list(range(1, len(names) + 1))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_valid_compiles_and_has_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and nb.cells[0].cell_type == "markdown"
    for i, cell in enumerate(code):
        compile(cell.source, f"{path.name} code cell {i}", "exec")
        assert cell.outputs == [] and cell.execution_count is None, f"cell {i} carries outputs"
    source = "\n".join(c.source for c in code)
    # the library API, not private helpers
    assert not re.search(r"from esparse\.\w+ import _|esparse\.\w+\._", source)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path, tmp_path):
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    # "python3" is the kernelspec name ipykernel always provides; jupyter_client starts it with
    # the interpreter running the tests (sys.executable), i.e. this venv
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    text = "\n".join(
        o.get("text", "") + o.get("data", {}).get("text/plain", "")
        for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )  # fmt: skip
    if path.name.startswith("01-"):
        assert "2:4 + ria_cp_lsa" in text and "retained / bound" in text
        assert sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", [])) == 2
