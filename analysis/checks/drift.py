"""Drift audit: does a re-run reproduce the committed reference record of the same config?

A record is named by the hash of its config, so a user record (``results/runs``) and a committed
reference record (``results/reference/runs``) with the same name claim to be the same experiment.
Where their metrics differ, this says by how much and which provenance differs (lock, versions,
CPU, threads, device, code), so a moved number is explained rather than silently shown.

Two records may be required to agree **bit for bit** only when nothing that changes float results
differs: the same lock, thread count, CPU kernel level and ISA, BLAS, numeric environment variables
and device. Otherwise they agree when every metric is within a relative tolerance, of two kinds
(measured, docs/reproducibility.md): quantities of the *dense* model are smooth in float noise
(``DENSE_RTOL``), while anything downstream of a mask is not: a last-bit change of one score flips a
near-tied keep/prune decision and the pruned model moves by percents (``DEFAULT_RTOL``). Timings are
not results: keys naming seconds or benches are skipped.

Where the *machine* differs (``analysis.records.machine``: GPU name, or CPU model and kernel level),
a pruned perplexity is another draw of the same noise the calibration seed makes, so it is judged by
that noise as measured: against the reference *cell*, the committed reference records of the same
config but for ``calibration.seed`` (``seedless_key``). With at least ``MIN_SEEDS`` seeds there it is
within tolerance iff it lies within ``SEED_SDS`` sample standard deviations of their mean, and the
report says how many it lies from it; with fewer, ``DEFAULT_RTOL`` (``--rtol``) is the fallback and
the verdict says so.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.checks.seed_cells import reference_cells, seed_summary, seedless_key
from analysis.records import machine
from analysis.stats import seeds

#: relative tolerance of pruned results across environments that may legitimately differ: 3x the
#: 10.1 % a change of CPU (AMD EPYC, AVX2 -> Intel Xeon, AVX512) moved the CI reference's 2:4
#: perplexity under one lock (docs/reproducibility.md)
DEFAULT_RTOL = 0.3
#: relative tolerance of dense-model quantities there: 5x the 1.9e-5 the same change moved Gemma's
#: dense perplexity
DENSE_RTOL = 1e-4
#: across machines, a pruned perplexity may lie this many seed standard deviations from its cell's seed mean
SEED_SDS = 3.0
#: ... where the reference cell holds at least this many calibration seeds (else the rtol fallback)
MIN_SEEDS = 3
#: the pruned-model perplexities (and their interval bounds) the seed rule judges; ``dense/...`` never
SEED_JUDGED = re.compile(r"^ppl(_lo|_hi)?/")
#: metric keys that are measurements of time, not results
UNTIMED = re.compile(r"seconds|^bench/|latency|throughput|_ms$")
#: provenance fields that change float results; equal on both sides => bit-exact is required
EXACT_FIELDS = (
    "lock.sha256", "lock.matches_installed", "torch_threads", "cpu.torch_capability", "cpu.isa", "cpu.blas",
    "numeric_env", "device",
    "gpu.driver",
)  # fmt: skip
#: provenance fields reported (not required) when they differ
REPORTED_FIELDS = (
    "lock.sha256", "lock.matches_installed", "versions", "python", "torch_threads", "cpu.model",
    "cpu.torch_capability", "cpu.isa", "cpu.blas", "device", "gpu.name", "gpu.driver", "cuda",
    "numeric_env", "git_sha",
)  # fmt: skip


def _get(env: Mapping[str, Any], dotted: str) -> Any:
    cur: Any = env
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def env_differences(ref: Mapping[str, Any], yours: Mapping[str, Any]) -> list[str]:
    """``field: reference -> yours`` for every reported provenance field that differs (versions
    per package). A field the reference lacks (made before it was recorded) shows as ``unrecorded``."""
    out = []
    for f in REPORTED_FIELDS:
        a, b = _get(ref, f), _get(yours, f)
        if f == "versions":
            a, b = a or {}, b or {}
            out += [f"{p}: {a.get(p)} -> {b.get(p)}" for p in sorted(set(a) | set(b)) if a.get(p) != b.get(p)]
        elif f == "git_sha":
            if (a or "").removesuffix("-dirty") != (b or "").removesuffix("-dirty"):
                out.append(f"code: {str(a)[:12]} -> {str(b)[:12]}")
        elif a != b:
            out.append(f"{f}: {'unrecorded' if a is None else a} -> {'unrecorded' if b is None else b}")
    return out


def exact_expected(ref: Mapping[str, Any], yours: Mapping[str, Any]) -> bool:
    """Whether every float-relevant field is recorded on both sides and equal."""
    return _get(ref, "lock.sha256") is not None and all(_get(ref, f) == _get(yours, f) for f in EXACT_FIELDS)


def _numeric(metrics: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        if UNTIMED.search(k) or isinstance(v, bool):
            continue
        if isinstance(v, (int, float)):
            out[k] = float(v)
    return out


def rel_diff(a: float, b: float) -> float:
    if a == b or (math.isnan(a) and math.isnan(b)):
        return 0.0
    return abs(b - a) / max(abs(a), abs(b), 1e-300)


@dataclass
class Comparison:
    """One config hash present on both sides."""

    config_hash: str
    exact_required: bool
    rtol: float
    dense_rtol: float = DENSE_RTOL
    dense: bool = False  # the record is of the dense model: every metric is smooth
    metrics: list[tuple[str, float | None, float | None, float]] = field(default_factory=list)  # differing only
    compared: int = 0
    added: list[str] = field(default_factory=list)  # metrics the reference predates: reported, not drift
    env: list[str] = field(default_factory=list)
    label: str = ""
    other_machine: bool = False  # the records name different machines: pruned perplexities meet the seed rule
    #: per pruned perplexity key, the reference cell's values over calibration seeds (set where other_machine)
    seed_cells: dict[str, seeds.Summary] = field(default_factory=dict)
    sds: float = SEED_SDS

    def tolerance(self, key: str) -> float:
        """The relative tolerance of ``key`` (not used where ``by_seeds(key)``)."""
        if self.exact_required:
            return 0.0
        return self.dense_rtol if self.dense or key.startswith("dense/") else self.rtol

    def by_seeds(self, key: str) -> seeds.Summary | None:
        """The seed spread ``key`` is judged by, or None where a tolerance judges it."""
        if self.exact_required or self.dense or not self.other_machine or not SEED_JUDGED.match(key):
            return None
        cell = self.seed_cells.get(key)
        return cell if cell is not None and cell.n >= MIN_SEEDS else None

    def sd_distance(self, key: str, value: float) -> float:
        """How many seed standard deviations ``value`` lies from the cell's seed mean (inf for no spread)."""
        cell = self.by_seeds(key)
        if cell is None:
            raise ValueError(f"{key} is not judged by a seed spread")
        off = abs(value - cell.mean)
        return off / cell.std if cell.std > 0 else (0.0 if off == 0 else math.inf)

    def within(self, key: str, a: float | None, b: float | None, rel: float) -> bool:
        if a is None or b is None:
            return False
        if self.by_seeds(key) is not None:
            return self.sd_distance(key, b) <= self.sds
        return rel <= self.tolerance(key)

    def judged(self, key: str, b: float | None) -> str:
        """How ``key`` was judged, for the report: ``1.4 sd from the seed mean 177.5 ± 9.7 (n=5)``."""
        cell = self.by_seeds(key)
        if cell is None or b is None:
            return "bit-exact" if self.exact_required else f"rtol {self.tolerance(key):g}"
        return f"{self.sd_distance(key, b):.1f} sd from the seed mean {cell.mean:.1f} ± {cell.std:.1f} (n={cell.n})"

    @property
    def ok(self) -> bool:
        return all(self.within(k, a, b, rel) for k, a, b, rel in self.metrics)

    @property
    def verdict(self) -> str:
        if not self.metrics:
            return "bit-identical"
        if self.exact_required:
            return "DRIFT (bit-exact required)"
        tol = f"rtol {self.rtol:g} pruned / {self.dense_rtol:g} dense"
        judged = [(k, b) for k, _, b, _ in self.metrics if b is not None and self.by_seeds(k) is not None]
        if judged:  # another machine and a cell with enough seeds: the measured noise decides
            rule = f"{self.sds:g} sd of the reference cell's seed spread"
            beyond = [(k, b) for k, b in judged if self.sd_distance(k, b) > self.sds]
            said = "; ".join(f"{k}: {self.judged(k, b)}" for k, b in (beyond or judged))
            if self.ok:
                return f"within {rule} ({said})"
            others = [
                f"{k} {'missing' if b is None else 'beyond ' + tol}"
                for k, a, b, rel in self.metrics
                if (k, b) not in judged and not self.within(k, a, b, rel)
            ]
            head = f"beyond {rule}: {said}" if beyond else f"within {rule}"
            return f"DRIFT ({'; '.join([head, *others])})"
        if self.other_machine and not self.dense and any(SEED_JUDGED.match(k) for k, *_ in self.metrics):
            n = max((c.n for k, c in self.seed_cells.items() if SEED_JUDGED.match(k)), default=0)
            tol += f"; another machine, fewer than {MIN_SEEDS} seeds: rtol {self.rtol:g} (n={n})"
        return f"within {tol}" if self.ok else f"DRIFT (beyond {tol})"


def compare(
    ref: Mapping[str, Any],
    yours: Mapping[str, Any],
    rtol: float = DEFAULT_RTOL,
    dense_rtol: float = DENSE_RTOL,
    cell: Iterable[Mapping[str, Any]] | None = None,
) -> Comparison:
    """Every result metric of two records of one config: the ones that differ, and why they may.
    ``cell``: the reference records of the config but for its calibration seed (``reference_cells``;
    default: ``ref`` alone), whose spread judges pruned perplexities where the machines differ."""
    ref_env, env = ref.get("env") or {}, yours.get("env") or {}
    pattern = (ref.get("config") or {}).get("pattern")
    cell = [ref] if cell is None else list(cell)
    c = Comparison(
        config_hash=str(ref.get("config_hash")),
        exact_required=exact_expected(ref_env, env),
        rtol=rtol,
        dense_rtol=dense_rtol,
        dense=isinstance(pattern, Mapping) and pattern.get("name") == "dense",
        env=env_differences(ref_env, env),
        label=_label(ref.get("config") or {}),
        other_machine=machine(ref_env) != machine(env),
    )
    a, b = _numeric(ref.get("metrics") or {}), _numeric(yours.get("metrics") or {})
    c.compared = len(set(a))
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if va is None:  # recorded since the reference was made (e.g. a new interval): nothing to compare
            c.added.append(k)
        elif vb is None:  # a result the reference has and yours lost
            c.metrics.append((k, va, vb, math.inf))
        elif va != vb and not (math.isnan(va) and math.isnan(vb)):
            c.metrics.append((k, va, vb, rel_diff(va, vb)))
    if c.other_machine and not c.exact_required:
        c.seed_cells = {k: seed_summary(cell, k) for k in a if SEED_JUDGED.match(k)}
    return c


def _label(cfg: Mapping[str, Any]) -> str:
    def name(k: str) -> str:
        v = cfg.get(k)
        return str(v.get("name")) if isinstance(v, Mapping) else str(v)

    cal = cfg.get("calibration") if isinstance(cfg.get("calibration"), Mapping) else {}
    parts = [name("model"), name("metric"), name("pattern"), name("shuffle"), f"seed {cal.get('seed')}"]
    if cfg.get("experiment"):
        parts.append(str(cfg["experiment"]))
    return " ".join(parts)


def _why_not_a_record(rec: Any, name: str) -> str | None:
    """Why a parsed file cannot be compared (a phrase), or None."""
    if not isinstance(rec, dict):
        return f"not a JSON object (a {type(rec).__name__})"
    for key in ("config", "metrics", "env"):
        if key in rec and not isinstance(rec[key], dict):
            return f"its {key!r} is a {type(rec[key]).__name__}, not an object"
    if not isinstance(rec.get("config"), dict):
        return "it has no 'config' object"
    if rec.get("config_hash", name) != name:
        return f"its config_hash {rec.get('config_hash')!r} is not its file name's {name!r}"
    return None


def read_done(folder: Path) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """{config hash: record} of the ``done`` records in ``folder`` (others are not claims), and
    ``"path: why"`` for each file that is not a record (truncated, not an object, metrics not an
    object, ...): named, never silently skipped."""
    out, unreadable = {}, []
    for p in sorted(folder.glob("*.json")):
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as e:
            unreadable.append(f"{p}: unreadable ({type(e).__name__}: {e})")
            continue
        except json.JSONDecodeError as e:
            unreadable.append(f"{p}: not valid JSON ({e.msg}, line {e.lineno}; truncated?)")
            continue
        why = _why_not_a_record(rec, p.stem)
        if why is not None:
            unreadable.append(f"{p}: {why}")
        elif rec.get("status") == "done":
            out[str(rec.get("config_hash") or p.stem)] = rec
    return out, unreadable


@dataclass
class Audit:
    comparisons: list[Comparison]
    unmatched: list[str]  # user records with no reference record of their hash (listed, not drift)
    unreadable: list[str] = field(default_factory=list)  # "path: why" of files that are not records

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.comparisons)

    def drifted(self) -> dict[str, Comparison]:
        return {c.config_hash: c for c in self.comparisons if not c.ok}


def audit(
    runs: str | Path,
    reference: str | Path,
    rtol: float = DEFAULT_RTOL,
    dense_rtol: float = DENSE_RTOL,
    only: Iterable[str] | None = None,
) -> Audit:
    """Compare every done record in ``runs`` with the reference record of the same hash."""
    (ref, bad_ref), (yours, bad_yours) = read_done(Path(reference)), read_done(Path(runs))
    keep = set(only) if only is not None else None
    cells = reference_cells(ref.values())
    comps, unmatched = [], []
    for h, rec in sorted(yours.items()):
        if keep is not None and h not in keep:
            continue
        if h in ref:
            cell = cells.get(seedless_key(ref[h].get("config") or {}))
            comps.append(compare(ref[h], rec, rtol, dense_rtol, cell))
        else:
            unmatched.append(f"{h} ({_label(rec.get('config') or {})})")
    return Audit(comps, unmatched, bad_yours + bad_ref)


def _fmt(v: float | None) -> str:
    return "missing" if v is None else f"{v:.10g}"


def to_markdown(a: Audit) -> str:
    """One line per compared config (verdict + provenance that differs), then one row per metric
    that differs: reference value, yours, relative difference."""
    lines = ["# Drift: your records vs the committed reference records", ""]
    if not a.comparisons:
        lines.append("No config has both a reference record and one of yours.")
    for c in a.comparisons:
        env = "; ".join(c.env) if c.env else "none"
        lines.append(
            f"- `{c.config_hash}` {c.label}: **{c.verdict}** ({c.compared} metrics compared, "
            f"{len(c.metrics)} differ); provenance that differs: {env}"
            + (f"; new since the reference: {', '.join(c.added)}" if c.added else "")
        )
    rows = [(c, k, va, vb, rel) for c in a.comparisons for k, va, vb, rel in c.metrics]
    if rows:
        lines += ["", "| config | metric | reference | yours | rel. diff | judged by |", "|---|---|---|---|---|---|"]
        lines += [
            f"| `{c.config_hash}` | {k} | {_fmt(va)} | {_fmt(vb)} | {rel:.3g} | {c.judged(k, vb)} |"
            for c, k, va, vb, rel in rows
        ]
    if a.unmatched:
        lines += ["", "Records of yours with no reference record of the same config:", ""]
        lines += [f"- {u}" for u in a.unmatched]
    if a.unreadable:
        lines += ["", "Files that are not records (not compared):", ""]
        lines += [f"- {u}" for u in a.unreadable]
    return "\n".join(lines) + "\n"
