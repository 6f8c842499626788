"""The docs cannot rot: their code runs, their tables match the tree, their paths and links resolve.

- Every ```python block of README.md, CHANGELOG.md, docs/*.md, experiments/README.md and
  analysis/README.md is executed as written, each in a fresh namespace, from the repository root.
  A block whose first line is ``# doc: slow (why)`` runs only with the slow tests (``make test-slow``);
  one whose first line is ``# doc: not executed (why)`` is skipped with that reason (visible in the
  test report). Any other ``# doc:`` first line is an error.
- The config-group table of docs/configuration.md lists exactly the groups (directories holding yaml
  files) and options (yaml files) under conf/; the repository layout table of docs/INTERFACES.md names
  only paths and modules that exist, and every top-level directory.
- The README stays a front door (at most 150 lines, the two commands first, a link to every docs page)
  and no docs page grows past 300 lines (docs/results.md is generated and exempt).
- Paths written in the docs exist (or are git-ignored outputs), ``make`` targets exist, in-page and
  cross-page anchors resolve, and every "docs/method.md §N" (or docs/permutation.md, docs/evaluation.md)
  cited anywhere names a real section.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from helpers import ROOT

DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
DOCS += [ROOT / "experiments/README.md", ROOT / "analysis/README.md"]
#: where the tested tables live
CONFIGURATION = "docs/configuration.md"
INTERFACES = "docs/INTERFACES.md"
README_MAX_LINES = 150
DOC_PAGE_MAX_LINES = 300
GENERATED_PAGES = {"docs/results.md"}  # written by `python -m analysis headline`, not by hand
MARKER = re.compile(r"# doc: (slow|not executed) \((.+)\)\s*$")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _python_blocks() -> list[tuple[str, int, str]]:
    """(doc, first line number of the code, code) of every ```python block."""
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for m in re.finditer(r"^```python[ \t]*\n(.*?)^```[ \t]*$", text, re.S | re.M):
            found.append((_rel(doc), text[: m.start(1)].count("\n") + 1, m.group(1)))
    return found


BLOCKS = _python_blocks()


def _param(doc: str, line: int, code: str):
    first = code.splitlines()[0] if code.strip() else ""
    marks = []
    if first.startswith("# doc:"):
        m = MARKER.match(first)
        assert m, f"{doc}:{line}: unknown doc marker {first!r}; use '# doc: slow (why)' or '# doc: not executed (why)'"
        if m.group(1) == "slow":
            marks.append(pytest.mark.slow)
        else:
            marks.append(pytest.mark.skip(reason=f"{doc}:{line}: {m.group(2)}"))
    return pytest.param(doc, line, code, marks=marks, id=f"{doc}:{line}")


def test_the_docs_have_python_blocks():
    docs = {doc for doc, _, _ in BLOCKS}
    assert {"docs/getting-started.md", "docs/method.md", "docs/INTERFACES.md"} <= docs
    not_executed = [f"{doc}:{line}" for doc, line, code in BLOCKS if code.startswith("# doc: not executed")]
    assert len(not_executed) <= 2, f"opt-outs are for blocks that cannot run here, sparingly: {not_executed}"


@pytest.mark.parametrize(("doc", "line", "code"), [_param(*b) for b in BLOCKS])
def test_python_block_runs(doc, line, code, monkeypatch):
    monkeypatch.chdir(ROOT)
    # pad so that tracebacks point at the doc's own line numbers
    exec(compile("\n" * (line - 1) + code, str(ROOT / doc), "exec"), {"__name__": "__main__"})


# --------------------------------------------------------------------------------- README and pages
def _lines(rel: str) -> int:
    """Line count as ``wc -l`` gives it."""
    return (ROOT / rel).read_text(encoding="utf-8").count("\n")


def test_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert _lines("README.md") <= README_MAX_LINES, (
        f"README.md has {_lines('README.md')} lines (at most {README_MAX_LINES}): move the detail to a docs/ page"
    )
    first = re.search(r"^```[^\n]*\n(.*?)^```", readme, re.S | re.M)
    assert first and [ln.split()[:2] for ln in first.group(1).splitlines()] == [["make", "run"], ["make", "test"]], (
        "the README's first code block must be the two commands, make run then make test"
    )
    pages = {_rel(p) for p in (ROOT / "docs").glob("*.md")} | GENERATED_PAGES
    linked = {str(Path(t.partition("#")[0])) for t in re.findall(r"\]\(([^)\s]+)\)", readme)}
    assert pages <= linked, f"README.md does not link {sorted(pages - linked)}"


def test_doc_pages_stay_short():
    long = {
        rel: n
        for rel in (_rel(p) for p in sorted((ROOT / "docs").glob("*.md")))
        if rel not in GENERATED_PAGES and (n := _lines(rel)) > DOC_PAGE_MAX_LINES
    }
    assert not long, f"docs pages over {DOC_PAGE_MAX_LINES} lines (split them): {long}"


def _table_after(doc: str, heading: str) -> list[list[str]]:
    """The cells of the first markdown table after ``heading`` in ``doc`` (header row dropped)."""
    lines = (ROOT / doc).read_text(encoding="utf-8").splitlines()
    assert heading in lines, f"{doc} has no heading {heading!r}"
    start = lines.index(heading)
    rows, seen = [], False
    for ln in lines[start + 1 :]:
        if ln.startswith("|"):
            seen = True
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", ln.strip())[1:-1]]
            if not all(set(c) <= set("-: ") for c in cells):
                rows.append(cells)
        elif seen or ln.startswith("#"):
            break
    assert rows, f"{doc}: no table after {heading!r}"
    return rows[1:]


def _ticks(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def test_config_group_table_equals_conf():
    """Groups are the directories under conf/ that hold yaml files (nested ones such as
    hydra/launcher and experiment/arm are rows of their own); options are their yaml files."""
    conf = ROOT / "conf"
    expected = {
        str(d.relative_to(conf)): {p.stem for p in d.glob("*.yaml")}
        for d in sorted(p for p in conf.rglob("*") if p.is_dir())
        if any(d.glob("*.yaml"))
    }
    table = {}
    for group, options, *_ in _table_after(CONFIGURATION, "## Config groups (`conf/`)"):
        (name,) = _ticks(group)
        assert name not in table, f"group {name!r} has two rows"
        table[name] = set(_ticks(options))
    assert sorted(table) == sorted(expected), f"{CONFIGURATION} config-group table: groups differ from conf/"
    for name, opts in expected.items():
        assert table[name] == opts, (
            f"{CONFIGURATION} config-group table, {name}: missing {sorted(opts - table[name])}, "
            f"not in conf/{name}: {sorted(table[name] - opts)}"
        )


def _ignored(rel: str) -> bool:
    """Inside a directory that .gitignore names (outputs made by runs, such as results/runs/)."""
    entries = [e.strip().strip("/") for e in (ROOT / ".gitignore").read_text().splitlines()]
    entries = [e for e in entries if e and not e.startswith("#") and "*" not in e]
    rel = rel.strip("/")
    return any(rel == e or rel.startswith(e + "/") for e in entries)


def _is_path(token: str) -> bool:
    return bool(re.fullmatch(r"[\w.\-/]+", token)) and not token.startswith(".")


def test_layout_table_names_only_what_exists():
    rows = _table_after(INTERFACES, "### Repository")
    for paths, what in rows:
        named = _ticks(paths)
        assert named, f"layout row without a path: {paths!r}"
        for p in named:
            assert (ROOT / p).exists() or _ignored(p), f"{INTERFACES} layout names {p!r}, which does not exist"
        if len(named) != 1 or not named[0].endswith("/"):
            continue
        base = ROOT / named[0]
        for token in _ticks(what):
            if token.startswith("make "):
                assert token.split()[1] in _make_targets(), f"layout: {token!r} is not a make target"
                continue
            if not _is_path(token):
                continue
            # relative to the row's directory (a module: `stats` is esparse/stats.py) or to the root
            candidates = [base / token, base / f"{token}.py", ROOT / token]
            assert any(c.exists() for c in candidates) or _ignored(named[0] + token), (
                f"{INTERFACES} layout row {named[0]} names {token!r}: "
                f"no {named[0]}{token}, {named[0]}{token}.py or {token}"
            )


def test_layout_table_covers_every_top_level_directory():
    try:
        tracked = subprocess.run(
            ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    top = {f.split("/")[0] + "/" for f in tracked if "/" in f}
    named = {t.split("/")[0] + "/" for paths, _ in _table_after(INTERFACES, "### Repository") for t in _ticks(paths)}
    assert top <= named, f"{INTERFACES} layout table misses {sorted(top - named)}"


# -------------------------------------------------------------------------- paths, targets, anchors
def _code_spans(text: str) -> list[str]:
    fences = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)
    return fences + re.findall(r"`([^`\n]+)`", prose)


TOP = ("esparse/", "conf/", "tests/", "docs/", "experiments/", "analysis/", "scripts/", "notebooks/", "results/")


PATH_IN_SPAN = re.compile(r"(?<![\w/.$<{-])(?:" + "|".join(map(re.escape, TOP)) + r")[\w.\-/]*")


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_paths_named_in_docs_exist(doc):
    missing = []
    for span in _code_spans(doc.read_text(encoding="utf-8")):
        for m in PATH_IN_SPAN.finditer(span):
            if span[m.end() : m.end() + 1] in ("<", "{", "*", "|"):
                continue  # a placeholder follows (results/runs/<hash>.json): not a literal path
            token = m.group(0).rstrip(".")
            if not ((ROOT / token).exists() or _ignored(token)):
                missing.append(token)
    assert not missing, f"{_rel(doc)} names paths that do not exist: {sorted(set(missing))}"


def _make_targets() -> set[str]:
    return set(re.findall(r"^([a-zA-Z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_make_targets_named_in_docs_exist(doc):
    targets = _make_targets()
    used = set()
    for span in _code_spans(doc.read_text(encoding="utf-8")):
        for m in re.finditer(r"(?:^|[\s;(&|])make ((?:[a-z][\w-]*\s*)+)", span):
            used.update(w for w in m.group(1).split() if "=" not in w)
    assert used <= targets, f"{_rel(doc)} names make targets that do not exist: {sorted(used - targets)}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", doc.read_text(encoding="utf-8"), flags=re.S | re.M)
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_links_and_anchors_resolve(doc):
    text = doc.read_text(encoding="utf-8")
    bad = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (doc.parent / file).resolve() if file else doc
        if not dest.exists():
            bad.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            bad.append(f"{target} (no such heading)")
    assert not bad, f"{_rel(doc)}: broken links {bad}"


def _tree_texts():
    skip = {".git", ".venv", "results", "__pycache__", ".pytest_cache", ".ruff_cache", "outputs", "multirun"}
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in skip or rel.parts[0].endswith(".egg-info") or not path.is_file():
            continue
        if path.suffix in {".py", ".md", ".yaml", ".json", ".sh", ".toml", ".ipynb", ".txt"} or path.name == "Makefile":
            yield rel, path.read_text(encoding="utf-8", errors="replace")


def test_method_citations_name_real_sections():
    """The method is numbered across three pages (method.md holds a pointer where a section moved)."""
    heading = re.compile(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", re.M)
    sections = {
        page: set(heading.findall((ROOT / f"docs/{page}.md").read_text(encoding="utf-8")))
        for page in ("method", "permutation", "evaluation")
    }
    interfaces = (ROOT / "docs/INTERFACES.md").read_text(encoding="utf-8")
    brief = "DESIGN" + ".md"  # the original brief is not part of the repository: nothing may cite it
    bad = []
    for rel, text in _tree_texts():
        if brief in text:
            bad.append(f"{rel} cites {brief}")
        for page, sec in re.findall(r"docs/(method|permutation|evaluation)\.md`?,? §(\d+(?:\.\d+)?)", text):
            if sec not in sections[page]:
                bad.append(f"{rel} cites docs/{page}.md §{sec}")
        for name in re.findall(r'docs/INTERFACES\.md`?, "([^"]+)"', text):
            if not re.search(rf"^#+ {re.escape(name)}$", interfaces, re.M):
                bad.append(f'{rel} cites docs/INTERFACES.md "{name}"')
    assert not bad, bad
