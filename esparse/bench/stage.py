"""The pipeline's ``bench`` stage: memory, per-layer GEMM and (optionally) end to end, as flat metrics."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from esparse.bench.e2e import e2e_latency
from esparse.bench.gemm import breakeven_tokens, gemm_table
from esparse.bench.kernels import device_name, kernel_available, resolve_dtype
from esparse.bench.memory import model_memory
from esparse.bench.schema import bench_record
from esparse.models.arch import arch_from_hf_config
from esparse.run.conf_files import conf_file


def bench_defaults() -> dict[str, Any]:
    """The stage's defaults: ``conf/bench/default.yaml``, the file a run composes (no Python copy)."""
    return conf_file("bench", "default")


def _stage_key(row: Mapping[str, Any]) -> str:
    if row["stage"] == "context":
        return f"context_b{row['batch']}_s{row['seqlen']}"
    return f"decode_b{row['batch']}"


def run_bench(
    model: nn.Module,
    cfg: Mapping[str, Any] | None = None,
    details: dict[str, Any] | None = None,
    nm: tuple[int, int] = (2, 4),
) -> dict[str, float | bool | str]:
    """The pipeline's ``bench`` stage: memory, per-layer GEMM and (optionally) end-to-end, as flat metrics.

    ``nm`` is the run's N:M pattern: the memory figures count its layout (a 4:8 model's 4:8 bytes, and
    ``nm_sparse`` checks 4:8), while the GEMM timings stay 2:4, the one pattern with a kernel.

    Keys: ``bench/available``, ``bench/reason``, ``bench/memory/{dense_bytes,compressed_bytes,ratio}``,
    ``bench/gemm/<layer>/<stage>/dense_ms`` with stage ``context_b<B>_s<S>`` or ``decode_b<B>``,
    plus ``sparse_ms``/``speedup`` and ``bench/gemm/<layer>/breakeven_tokens`` only where timed;
    with ``e2e``: ``bench/e2e/b<B>/{prefill_ms,decode_ms}`` and their ``sparse_``/``speedup`` twins.
    The metrics keep the medians a table needs; with ``details`` (the run record's), every GEMM row
    goes to ``details["bench"]`` as a bench record of kind ``gemm``, the format every bench file has.
    """
    cfg = dict(cfg or {})
    defaults = bench_defaults()
    unknown = sorted(k for k in cfg if k not in defaults and k != "name" and not k.startswith("_"))
    if unknown:
        raise ValueError(f"unknown bench config keys {unknown}; known: {sorted(defaults)}")
    c = {**defaults, **cfg}
    device = torch.device(c["device"] or ("cuda" if torch.cuda.is_available() else "cpu"))
    dt = resolve_dtype(c["dtype"], device)
    backend = str(c["backend"])
    ok, reason = kernel_available(device, backend, dt)
    metrics: dict[str, float | bool | str] = {
        "bench/available": ok, "bench/reason": reason, "bench/device": device_name(device),
        "bench/dtype": str(dt).removeprefix("torch."), "bench/backend": backend,
    }  # fmt: skip

    n, m = nm
    mem = model_memory(model, dtype_bytes=int(c["memory_dtype_bytes"]), n=n, m=m)
    metrics["bench/memory/pattern"] = f"{n}:{m}"
    metrics["bench/memory/dense_bytes"] = mem["dense_bytes"]
    metrics["bench/memory/compressed_bytes"] = mem["compressed_bytes"]
    metrics["bench/memory/ratio"] = mem["ratio"]
    metrics["bench/memory/linear_ratio"] = mem["linear_ratio"]
    metrics["bench/memory/nm_sparse"] = mem["nm_sparse"]

    arch = arch_from_hf_config(model.config)
    rows = gemm_table(
        arch,
        batch_sizes=[int(b) for b in c["batch_sizes"]],
        seqlens=[int(s) for s in c["seqlens"]],
        dtype=dt,
        backends=(backend,),
        device=device,
        repeats=int(c["repeats"]),
        warmup=int(c["warmup"]),
    )
    for r in rows:
        base = f"bench/gemm/{r['layer']}/{_stage_key(r)}"
        metrics[f"{base}/dense_ms"] = r["dense_ms"]
        if "speedup" in r:
            metrics[f"{base}/sparse_ms"] = r["sparse_ms"]
            metrics[f"{base}/speedup"] = r["speedup"]
    for (layer, _), tokens in breakeven_tokens(rows).items():
        if tokens is not None:
            metrics[f"bench/gemm/{layer}/breakeven_tokens"] = float(tokens)
    if details is not None:
        what = "per-layer GEMM of the loaded model's block linears, dense F.linear vs 2:4 semi-structured"
        details["bench"] = bench_record("gemm", c, rows, what=what, device=str(device))

    if c["e2e"]:
        metrics.update(_e2e_metrics(model, c, device, dt, backend))
    return metrics


def _e2e_metrics(
    model: nn.Module, c: Mapping[str, Any], device: torch.device, dt: torch.dtype, backend: str
) -> dict[str, float | bool | str]:
    param = next(model.parameters())
    # a copy only when the model is not already where and what the bench runs in (never cast in place)
    bench_model = model if (param.device == device and param.dtype == dt) else copy.deepcopy(model).to(device, dt)
    kw = {
        "batch_sizes": [int(b) for b in c["e2e_batch_sizes"]], "prompt_len": int(c["prompt_len"]),
        "gen_len": int(c["gen_len"]), "backend": backend,
    }  # fmt: skip
    dense = e2e_latency(bench_model, sparse=False, **kw)
    sparse = e2e_latency(bench_model, sparse=True, **kw) if kernel_available(device, backend, dt)[0] else None
    out: dict[str, float | bool | str] = {}
    for i, row in enumerate(dense["rows"]):
        base = f"bench/e2e/b{row['batch']}"
        out[f"{base}/prefill_ms"] = row["prefill_ms"]
        out[f"{base}/decode_ms"] = row["decode_ms"]
        if sparse is not None and sparse["sparse"]:
            s = sparse["rows"][i]
            out[f"{base}/sparse_prefill_ms"] = s["prefill_ms"]
            out[f"{base}/sparse_decode_ms"] = s["decode_ms"]
            out[f"{base}/prefill_speedup"] = row["prefill_ms"] / s["prefill_ms"]
            out[f"{base}/decode_speedup"] = row["decode_ms"] / s["decode_ms"]
    return out
