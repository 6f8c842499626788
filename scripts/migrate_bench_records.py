"""Convert bench files of the shapes written before ``esparse.bench.schema`` into bench records.

Timings measured on an idle machine cannot be re-made on a loaded one, so such files are converted
rather than re-measured: every measurement is copied verbatim, the environment the old file recorded
stays the record's environment, and ``migrated_from`` names the old file, its sha256 and this script.
The old shapes did not say when they were measured, so ``measured_at`` is null. Nothing is edited by
hand: a file whose keys are not exactly those of a known old shape is refused, so no field can be
dropped silently.

    .venv/bin/python scripts/migrate_bench_records.py results/bench/gemm_cpu.json results/bench/permutation.json

Known old shapes (keys of the top-level object):

- ``experiments/bench_gemm.py``: what, arch, shapes, env, grid, available, reasons,
  breakeven_tokens, wall_s, rows (GEMM rows), paper;
- ``experiments/bench_permutation.py``: what, score, greedy_note, results (one entry per matrix and
  pattern: case, shape, n, m, rows with ``timing = {threads: {seconds, cpu_seconds, seconds_all,
  loadavg_1min}}``), env, args.

Each file is rewritten in place (git keeps the old bytes, and ``migrated_from.sha256`` names them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from esparse.bench import write_bench_record  # noqa: E402

BY = "scripts/migrate_bench_records.py"
GEMM_KEYS = {"what", "arch", "shapes", "env", "grid", "available", "reasons", "breakeven_tokens", "wall_s", "rows",
             "paper"}  # fmt: skip
PERMUTATION_KEYS = {"what", "score", "greedy_note", "results", "env", "args"}


def gemm(old: dict[str, Any]) -> tuple[str, dict, list[dict], dict]:
    """bench_gemm's old record: the arch name and grid become the config, each row gains the model."""
    config = {"model": old["arch"], **old["grid"]}
    rows = [{"model": old["arch"], **r} for r in old["rows"]]
    extra = {k: old[k] for k in ("shapes", "available", "reasons", "breakeven_tokens", "wall_s", "paper")}
    return "gemm", config, rows, extra


def permutation(old: dict[str, Any]) -> tuple[str, dict, list[dict], dict]:
    """bench_permutation's old record: one row per (matrix, method, thread count), the timing of that
    thread count copied as it was; the device label is the one analysis derived from the old env."""
    env = old["env"]
    device = env.get("device") or f"cpu ({env.get('cpu', '?')}, {env.get('cpu_count', '?')} cores)"
    rows = []
    for case in old["results"]:
        r, c = case["shape"]
        for row in case["rows"]:
            scores = {k: row[k] for k in ("retained", "retained_over_bound", "gain_over_none")}
            common = {
                "case": case["case"], "model": case["case"].split()[0], "rows": r, "cols": c, "n": case["n"],
                "m": case["m"], "method": row["method"], "kwargs": row["kwargs"], "label": row["label"],
                "device": device,
            }  # fmt: skip
            unknown = set(row) - set(common) - set(scores) - {"timing"}
            if unknown:
                raise ValueError(f"permutation row {row['label']!r} of {case['case']!r} has unknown keys {unknown}")
            rows += [{**common, "threads": int(th), **t, **scores} for th, t in row["timing"].items()]
    return "permutation", dict(old["args"]), rows, {"score": old["score"], "greedy_note": old["greedy_note"]}


SHAPES: dict[frozenset[str], Callable[[dict[str, Any]], tuple[str, dict, list[dict], dict]]] = {
    frozenset(GEMM_KEYS): gemm,
    frozenset(PERMUTATION_KEYS): permutation,
}


def migrate(path: Path) -> str:
    """Rewrite ``path`` as a bench record; returns what was done, in a line."""
    raw = path.read_bytes()
    old = json.loads(raw)
    if isinstance(old, dict) and "schema_version" in old:
        return f"{path}: already a bench record (schema_version {old['schema_version']}), left as it is"
    convert = SHAPES.get(frozenset(old)) if isinstance(old, dict) else None
    if convert is None:
        keys = sorted(old) if isinstance(old, dict) else type(old).__name__
        raise SystemExit(f"{path}: not an old bench shape this script knows (keys {keys})")
    kind, config, rows, extra = convert(old)
    where = path.resolve()
    name = where.relative_to(ROOT).as_posix() if where.is_relative_to(ROOT) else str(where)
    source = {"file": name, "sha256": hashlib.sha256(raw).hexdigest(), "by": BY}
    write_bench_record(path, kind, config, rows, what=old["what"], environment=old["env"], extra=extra,
                       measured_at=None, migrated_from=source)  # fmt: skip
    return f"{path}: {kind} record, {len(rows)} rows, from sha256 {source['sha256'][:12]}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", type=Path)
    for path in p.parse_args(argv).files:
        print(migrate(path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
