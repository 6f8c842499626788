"""The package's folders are its architecture, and imports only go one way.

Layers, lowest first: ``esparse.records`` (bookkeeping: a record's name, file, provenance, locks),
the method (``esparse``'s top-level modules and ``permutation/``, ``models/``, ``evaluation/``,
``bench/``), then ``esparse.run`` (one config: validate, preflight, data, pipeline). A module may
import its own layer or a lower one. ``esparse.run.conf_files`` (the ``conf/`` tree read without
Hydra, the one home of every default) is a leaf that any layer may read. ``analysis`` reads records
from disk only and imports nothing of ``esparse``. The facade ``esparse/__init__.py`` (``load_model``,
``prune``) may import anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers import ROOT

LEAVES = {"esparse.run.conf_files"}
RANK = {"records": 0, "method": 1, "run": 2}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module a file imports (``from a import b`` counts as ``a`` and ``a.b``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def _layer(module: str) -> str | None:
    if module == "esparse":
        return None  # the facade
    if module.startswith("esparse.run"):
        return "run"
    if module.startswith("esparse.records"):
        return "records"
    return "method" if module.startswith("esparse.") else None


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def back_edges(package: str = "esparse") -> list[str]:
    """``a -> b`` for every import of a higher layer (or a non-leaf ``esparse.run`` module)."""
    bad = []
    for path in _files(package):
        src = _module(path)
        src_layer = _layer(src)
        if src_layer is None:
            continue
        for target in sorted(_imports(path)):
            tgt_layer = _layer(target)
            if tgt_layer is None or any(target == leaf or target.startswith(leaf + ".") for leaf in LEAVES):
                continue
            if RANK[tgt_layer] > RANK[src_layer]:
                bad.append(f"{src} ({src_layer}) -> {target} ({tgt_layer})")
    return bad


def test_imports_only_go_down_the_layers():
    assert back_edges() == []


def test_a_leaf_imports_nothing_of_esparse():
    for leaf in LEAVES:
        path = ROOT / (leaf.replace(".", "/") + ".py")
        assert not [m for m in _imports(path) if m.startswith("esparse")], leaf


def test_the_check_sees_a_back_edge(tmp_path, monkeypatch):
    """A method module importing the pipeline is reported (the test can fail)."""
    pkg = tmp_path / "esparse"
    (pkg / "run").mkdir(parents=True)
    (pkg / "masks.py").write_text("from esparse.run import pipeline\nfrom esparse.run.conf_files import conf_file\n")
    (pkg / "run" / "pipeline.py").write_text("from esparse import masks\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert back_edges() == [
        "esparse.masks (method) -> esparse.run (run)",
        "esparse.masks (method) -> esparse.run.pipeline (run)",
    ]


@pytest.mark.parametrize("path", _files("analysis"), ids=lambda p: str(p.relative_to(ROOT)))
def test_analysis_reads_records_only(path):
    assert not [m for m in _imports(path) if m == "esparse" or m.startswith("esparse.")]


def test_the_top_level_holds_the_method_and_the_subpackages():
    top = {p.stem for p in (ROOT / "esparse").glob("*.py")} - {"__init__"}
    method = {
        "stats",
        "stat_passes",
        "finite",
        "scores",
        "masks",
        "sparsegpt",
        "refine",
        "quant",
        "pruning",
    }  # the algorithm
    method |= {"deploy", "checkpoint", "compressed"}  # its deployed and saved forms
    assert top == method
    subpackages = {p.name for p in (ROOT / "esparse").iterdir() if (p / "__init__.py").exists()}
    assert subpackages == {"permutation", "models", "evaluation", "bench", "run", "records"}


@pytest.mark.parametrize("package", ["esparse", "analysis"])
def test_no_module_is_past_400_lines(package):
    long = {str(p.relative_to(ROOT)): n for p in _files(package) if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}
