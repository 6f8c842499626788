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
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: relative tolerance of pruned results across environments that may legitimately differ: 3x the
#: 10.1 % a change of CPU (AMD EPYC, AVX2 -> Intel Xeon, AVX512) moved the CI reference's 2:4
#: perplexity under one lock (docs/reproducibility.md)
DEFAULT_RTOL = 0.3
#: relative tolerance of dense-model quantities there: 5x the 1.9e-5 the same change moved Gemma's
#: dense perplexity
DENSE_RTOL = 1e-4
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

    def tolerance(self, key: str) -> float:
        if self.exact_required:
            return 0.0
        return self.dense_rtol if self.dense or key.startswith("dense/") else self.rtol

    @property
    def ok(self) -> bool:
        return all(a is not None and b is not None and rel <= self.tolerance(k) for k, a, b, rel in self.metrics)

    @property
    def verdict(self) -> str:
        if not self.metrics:
            return "bit-identical"
        if self.exact_required:
            return "DRIFT (bit-exact required)"
        tol = f"rtol {self.rtol:g} pruned / {self.dense_rtol:g} dense"
        return f"within {tol}" if self.ok else f"DRIFT (beyond {tol})"


def compare(
    ref: Mapping[str, Any], yours: Mapping[str, Any], rtol: float = DEFAULT_RTOL, dense_rtol: float = DENSE_RTOL
) -> Comparison:
    """Every result metric of two records of one config: the ones that differ, and why they may."""
    ref_env, env = ref.get("env") or {}, yours.get("env") or {}
    pattern = (ref.get("config") or {}).get("pattern")
    c = Comparison(
        config_hash=str(ref.get("config_hash")),
        exact_required=exact_expected(ref_env, env),
        rtol=rtol,
        dense_rtol=dense_rtol,
        dense=isinstance(pattern, Mapping) and pattern.get("name") == "dense",
        env=env_differences(ref_env, env),
        label=_label(ref.get("config") or {}),
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
    comps, unmatched = [], []
    for h, rec in sorted(yours.items()):
        if keep is not None and h not in keep:
            continue
        if h in ref:
            comps.append(compare(ref[h], rec, rtol, dense_rtol))
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
    rows = [(c.config_hash, k, va, vb, rel) for c in a.comparisons for k, va, vb, rel in c.metrics]
    if rows:
        lines += ["", "| config | metric | reference | yours | rel. diff |", "|---|---|---|---|---|"]
        lines += [f"| `{h}` | {k} | {_fmt(va)} | {_fmt(vb)} | {rel:.3g} |" for h, k, va, vb, rel in rows]
    if a.unmatched:
        lines += ["", "Records of yours with no reference record of the same config:", ""]
        lines += [f"- {u}" for u in a.unmatched]
    if a.unreadable:
        lines += ["", "Files that are not records (not compared):", ""]
        lines += [f"- {u}" for u in a.unreadable]
    return "\n".join(lines) + "\n"
