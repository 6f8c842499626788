"""Per-layer GEMM timing: dense ``F.linear`` vs the 2:4 semi-structured kernel, at a block's shapes.

Each repeat draws a fresh input, times dense and sparse on it (alternating which goes first) and
checks the sparse output against the dense one; without a usable kernel only dense is timed and the
row carries no sparse time or speedup at all.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from esparse.bench.kernels import (
    _check_backend,
    check_close,
    device_name,
    kernel_available,
    resolve_dtype,
    to_semi_structured,
)
from esparse.bench.shapes import LinearShape, linear_shapes


def random_24_weight(
    out_features: int, in_features: int, dtype: torch.dtype, device: torch.device, generator: torch.Generator
) -> torch.Tensor:
    """A Gaussian weight with the 2 largest magnitudes of every 4 kept (exactly 2:4)."""
    w = torch.randn(out_features, in_features, generator=generator, device=device, dtype=torch.float32)
    groups = w.reshape(out_features, -1, 4)
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, groups.abs().topk(2, dim=-1).indices, True)
    return (groups * keep).reshape(out_features, in_features).to(dtype)


def _timed(device: torch.device, fn: Callable[..., torch.Tensor], *args: Any) -> tuple[float, torch.Tensor]:
    """Milliseconds of one call ``fn(*args)``: CUDA events on a GPU, perf_counter on CPU."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = fn(*args)
        end.record()
        end.synchronize()
        return start.elapsed_time(end), out
    t0 = time.perf_counter()
    out = fn(*args)
    return (time.perf_counter() - t0) * 1e3, out


def gemm_bench(
    shape: LinearShape,
    tokens: int,
    dtype: str | torch.dtype = "float16",
    backend: str = "cusparselt",
    device: str | torch.device = "cuda",
    repeats: int = 50,
    warmup: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """Time ``tokens × in`` @ one ``shape`` weight, dense vs 2:4 semi-structured; median of ``repeats``.

    Each repeat draws a fresh input, times dense and sparse on it (order alternates), and checks the
    sparse output against the dense one. Without a usable kernel only dense is timed and the record
    carries ``available=False`` with the reason and no sparse time or speedup.
    """
    _check_backend(backend)
    if tokens <= 0 or repeats <= 0 or warmup < 0:
        raise ValueError(f"gemm_bench tokens={tokens}, repeats={repeats}, warmup={warmup} must be positive")
    device = torch.device(device)
    dt = resolve_dtype(dtype, device)
    ok, reason = kernel_available(device, backend, dt)
    gen = torch.Generator(device=device).manual_seed(seed)
    weight = random_24_weight(shape.out_features, shape.in_features, dt, device, gen)
    sparse_w = None
    if ok:
        try:
            sparse_w = to_semi_structured(weight, backend)
        except (RuntimeError, NotImplementedError) as exc:
            ok, reason = False, f"{backend} cannot compress {shape.out_features}x{shape.in_features}: {exc}"
    what = f"layer {shape.name} ({shape.out_features}x{shape.in_features}) tokens={tokens} backend={backend}"
    dense_ms: list[float] = []
    sparse_ms: list[float] = []
    max_err = 0.0
    with torch.inference_mode():
        for i in range(warmup + repeats):
            x = torch.randn(tokens, shape.in_features, generator=gen, device=device, dtype=torch.float32).to(dt)
            if sparse_w is None:
                td, _ = _timed(device, F.linear, x, weight)
            elif i % 2:  # alternate the order so neither side always runs on a warmer cache
                ts, ys = _timed(device, F.linear, x, sparse_w)
                td, yd = _timed(device, F.linear, x, weight)
            else:
                td, yd = _timed(device, F.linear, x, weight)
                ts, ys = _timed(device, F.linear, x, sparse_w)
            if sparse_w is not None:
                max_err = max(max_err, check_close(ys, yd, f"{what} repeat={i}"))
            if i >= warmup:
                dense_ms.append(td)
                if sparse_w is not None:
                    sparse_ms.append(ts)
    flops = 2.0 * tokens * shape.out_features * shape.in_features
    rec: dict[str, Any] = {
        "layer": shape.name, "label": shape.label, "out_features": shape.out_features,
        "in_features": shape.in_features, "per_block": shape.per_block, "tokens": tokens,
        "dtype": str(dt).removeprefix("torch."), "backend": backend, "device": device_name(device),
        "available": ok, "reason": reason, "repeats": repeats, "warmup": warmup,
        "dense_ms": statistics.median(dense_ms), "dense_ms_min": min(dense_ms),
    }  # fmt: skip
    rec["dense_tflops"] = flops / (rec["dense_ms"] * 1e-3) / 1e12
    if sparse_ms:
        rec["sparse_ms"] = statistics.median(sparse_ms)
        rec["sparse_ms_min"] = min(sparse_ms)
        rec["speedup"] = rec["dense_ms"] / rec["sparse_ms"]
        rec["max_rel_err"] = max_err
    return rec


def gemm_table(
    arch: Mapping[str, Any],
    batch_sizes: Sequence[int] = (1, 8),
    seqlens: Sequence[int] = (128, 2048),
    dtype: str | torch.dtype = "float16",
    backends: Sequence[str] = ("cusparselt",),
    device: str | torch.device = "cuda",
    repeats: int = 50,
    warmup: int = 10,
    shapes: Sequence[LinearShape] | None = None,
) -> list[dict[str, Any]]:
    """Per-layer GEMM rows: context stage (batch·seqlen tokens) and decode stage (batch tokens).

    Without a usable kernel only the first backend runs (dense timings do not depend on it).
    """
    for b in backends:
        _check_backend(b)
    if not backends:
        raise ValueError("gemm_table needs at least one backend")
    device = torch.device(device)
    dt = resolve_dtype(dtype, device)
    usable = [b for b in backends if kernel_available(device, b, dt)[0]] or list(backends[:1])
    points = [("context", b, s, b * s) for b in batch_sizes for s in seqlens]
    points += [("decode", b, None, b) for b in batch_sizes]
    rows = []
    for shape in shapes if shapes is not None else linear_shapes(arch):
        for stage, batch, seqlen, tokens in points:
            for backend in usable:
                rec = gemm_bench(shape, tokens, dt, backend, device, repeats, warmup)
                rows.append({"stage": stage, "batch": batch, "seqlen": seqlen, **rec})
    return rows


def breakeven_tokens(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], int | None]:
    """Per (layer, backend): the smallest measured token count from which 2:4 is faster at every
    larger measured count too (where it starts to pay), or None when it never does. Rows without
    a timed sparse kernel are ignored, so an untimed kind has no entry at all.
    """
    speed: dict[tuple[str, str], dict[int, list[float]]] = {}
    for r in rows:
        if "speedup" in r:
            speed.setdefault((r["layer"], r["backend"]), {}).setdefault(r["tokens"], []).append(r["speedup"])
    out: dict[tuple[str, str], int | None] = {}
    for key, by_tokens in speed.items():
        best = None
        for t in sorted(by_tokens, reverse=True):
            if statistics.median(by_tokens[t]) > 1.0:
                best = t
            else:
                break
        out[key] = best
    return out
