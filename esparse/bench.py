"""Speed and memory of 2:4 weights: per-layer GEMM, end-to-end latency, compressed bytes.

Everything here is measured or counted, never assumed. Memory is exact byte arithmetic on the
model's shapes (no weights needed). Timings compare dense ``F.linear`` with PyTorch's
semi-structured kernels (``torch.sparse.to_sparse_semi_structured``, cuSPARSELt or CUTLASS); every
sparse result is checked against the dense product with the same zeros before its time counts.
Where the kernels cannot run (CPU, pre-Ampere GPU, a torch build without them) the records say so
(``available=False`` plus the reason), keep the dense timings, and carry no speedup at all.
"""

from __future__ import annotations

import contextlib
import copy
import math
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from esparse import tracking
from esparse.models.arch import arch_from_hf_config, normalize_arch

BACKENDS = ("cusparselt", "cutlass")
#: E-Sparse's table rows; ``q``/``kv`` split ``qkv`` when grouped-query attention makes them differ.
LABELS = {
    "qkv": "Q/K/V",
    "q": "Q",
    "kv": "K/V",
    "att_out": "Att_Out",
    "ffn1": "FFN-1",
    "ffn2": "FFN-2",
}

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}

#: relative Frobenius error allowed between the sparse kernel and dense-with-zeros. fp16 output
#: rounding alone is ~5e-4; a wrong sparse result (bad metadata, wrong layout) is O(1).
_RTOL = {torch.float16: 1e-2, torch.bfloat16: 3e-2, torch.float32: 5e-3}


class BenchCorrectnessError(RuntimeError):
    """The sparse kernel's output disagrees with the dense product of the same 2:4 weight."""


# --------------------------------------------------------------------------------------------
# shapes


@dataclass(frozen=True)
class LinearShape:
    """One kind of linear in a decoder block: ``per_block`` matrices of ``out_features × in_features``."""

    name: str
    out_features: int
    in_features: int
    per_block: int
    bias: bool = False

    def __post_init__(self) -> None:
        if self.name not in LABELS:
            raise ValueError(f"LinearShape name={self.name!r} is not one of {sorted(LABELS)}")
        for field in ("out_features", "in_features", "per_block"):
            value = getattr(self, field)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"LinearShape {field}={value!r} must be a positive int")

    @property
    def label(self) -> str:
        return LABELS[self.name]


def linear_shapes(arch: Mapping[str, Any]) -> list[LinearShape]:
    """The block's linear kinds, as in E-Sparse's GEMM table (weights are ``out × in``)."""
    a = normalize_arch(arch)
    h, inter = a["hidden_size"], a["intermediate_size"]
    q_out = a["num_attention_heads"] * a["head_dim"]
    kv_out = a["num_key_value_heads"] * a["head_dim"]
    if a["family"] == "opt":
        b = bool(a["enable_bias"])
        return [
            LinearShape("qkv", h, h, 3, b),
            LinearShape("att_out", h, h, 1, b),
            LinearShape("ffn1", inter, h, 1, b),
            LinearShape("ffn2", h, inter, 1, b),
        ]
    att_b, mlp_b = bool(a["attention_bias"]), bool(a["mlp_bias"])
    qkv = (
        [LinearShape("qkv", q_out, h, 3, att_b)]
        if kv_out == q_out
        else [LinearShape("q", q_out, h, 1, att_b), LinearShape("kv", kv_out, h, 2, att_b)]
    )
    return qkv + [
        LinearShape("att_out", h, q_out, 1, att_b),
        LinearShape("ffn1", inter, h, 2, mlp_b),  # gate and up
        LinearShape("ffn2", h, inter, 1, mlp_b),
    ]


# --------------------------------------------------------------------------------------------
# memory


def dense_bytes(out_features: int, in_features: int, dtype_bytes: int = 2) -> int:
    return out_features * in_features * dtype_bytes


def compressed_bytes(out_features: int, in_features: int, dtype_bytes: int = 2, n: int = 2, m: int = 4) -> int:
    """Bytes of an N:M weight stored as the sparse kernels store it: kept values + index metadata.

    Each group of ``m`` consecutive input elements keeps ``n`` values and, per kept value, its
    position inside the group in ``ceil(log2 m)`` bits:

        bytes = out·in·(n/m)·dtype_bytes  +  ceil(out·(in/m)·n·ceil(log2 m) / 8)

    For 2:4 this is the CUTLASS/cuSPARSELt layout (4 bits of metadata per group of 4, i.e. 2 bits
    per kept element); for fp16 it is 1.125 bytes per dense element = 56.25 % of dense. Other N:M
    (4:8, ...) have no kernel; the same count is then the natural index encoding.
    """
    if not 0 < n < m:
        raise ValueError(f"N:M pattern {n}:{m} must satisfy 0 < n < m")
    if out_features <= 0 or in_features <= 0 or dtype_bytes <= 0:
        raise ValueError(f"shape {out_features}x{in_features}, dtype_bytes={dtype_bytes} must be positive")
    if in_features % m:
        raise ValueError(f"in_features={in_features} is not a multiple of m={m}")
    groups = out_features * (in_features // m)
    values = groups * n * dtype_bytes
    meta_bits = groups * n * math.ceil(math.log2(m))
    return values + -(-meta_bits // 8)


def _component(params: int, dtype_bytes: int, compressed: int | None = None) -> dict[str, int]:
    dense = params * dtype_bytes
    return {
        "params": params,
        "dense_bytes": dense,
        "compressed_bytes": dense if compressed is None else compressed,
    }


def memory_report(arch: Mapping[str, Any], dtype_bytes: int = 2, n: int = 2, m: int = 4) -> dict[str, Any]:
    """Exact weight bytes per component, dense vs with every block linear stored N:M-compressed.

    Embeddings, positions, norms, biases and the lm_head stay dense (they are not pruned). A tied
    lm_head shares the embedding matrix and costs nothing extra.
    """
    a = normalize_arch(arch)
    h, layers, vocab = a["hidden_size"], a["num_hidden_layers"], a["vocab_size"]
    comps: dict[str, dict[str, int]] = {"embeddings": _component(vocab * h, dtype_bytes)}
    if a["family"] == "opt":
        comps["positions"] = _component((a["max_position_embeddings"] + 2) * h, dtype_bytes)
    bias_params = 0
    for s in linear_shapes(a):
        count = s.per_block * layers
        comps[s.name] = _component(
            count * s.out_features * s.in_features,
            dtype_bytes,
            count * compressed_bytes(s.out_features, s.in_features, dtype_bytes, n, m),
        )
        bias_params += count * s.out_features if s.bias else 0
    if bias_params:
        comps["bias"] = _component(bias_params, dtype_bytes)
    norm_params = {
        "llama": (2 * layers + 1) * h,
        "opt": (2 * layers + 1) * 2 * h,  # LayerNorm weight and bias
        "gemma3": layers * (4 * h + 2 * a["head_dim"]) + h,  # 4 block norms + q/k norms
    }[a["family"]]
    comps["norms"] = _component(norm_params, dtype_bytes)
    comps["lm_head"] = _component(0 if a["tie_word_embeddings"] else vocab * h, dtype_bytes)
    return _totals(comps, [s.name for s in linear_shapes(a)])


def prune_memory(
    arch: Mapping[str, Any], nsamples: int = 128, seqlen: int = 2048, dtype_bytes: int = 2, hessian: bool = True
) -> dict[str, Any]:
    """Accelerator bytes of layer-wise pruning, counted from the architecture (no weights needed):
    with the whole model on the device, with ``offload`` (one block on the device), and with offload
    plus ``activations_on=cpu``. Counted: weights, the calibration activations (inputs and outputs of
    the current block coexist: two copies of nsamples × seqlen × hidden), and SparseGPT's float32
    Hessian of the widest input (``hessian``); not counted: attention and MLP workspace of one batch,
    allocator slack. A projection on paper, to size a GPU before renting it."""
    a = normalize_arch(arch)
    mem = memory_report(a, dtype_bytes)
    comps = mem["components"]
    layers, h = a["num_hidden_layers"], a["hidden_size"]
    block_names = [s.name for s in linear_shapes(a)] + (["bias"] if "bias" in comps else [])
    final_norm = (2 if a["family"] == "opt" else 1) * h  # the norm after the last block is not in a block
    block_params = sum(comps[k]["params"] for k in block_names) // layers
    block_params += (comps["norms"]["params"] - final_norm) // layers
    block = block_params * dtype_bytes
    acts = 2 * nsamples * seqlen * h * dtype_bytes
    widest = max(s.in_features for s in linear_shapes(a))
    hess = widest * widest * 4 if hessian else 0
    return {
        "model_bytes": mem["dense_bytes"],
        "block_bytes": block,
        "activation_bytes": acts,
        "hessian_bytes": hess,
        "on_device": mem["dense_bytes"] + acts + hess,
        "offload": block + acts + hess,
        "offload_activations_on_cpu": block + hess + 2 * seqlen * h * dtype_bytes,  # one window in flight
    }


def _totals(comps: dict[str, dict[str, int]], linear_names: Sequence[str]) -> dict[str, Any]:
    dense = sum(c["dense_bytes"] for c in comps.values())
    comp = sum(c["compressed_bytes"] for c in comps.values())
    lin_dense = sum(comps[k]["dense_bytes"] for k in linear_names)
    lin_comp = sum(comps[k]["compressed_bytes"] for k in linear_names)
    return {
        "components": comps,
        "params": sum(c["params"] for c in comps.values()),
        "dense_bytes": dense,
        "compressed_bytes": comp,
        "ratio": comp / dense,
        "saving": 1.0 - comp / dense,
        "linear_dense_bytes": lin_dense,
        "linear_compressed_bytes": lin_comp,
        "linear_ratio": lin_comp / lin_dense if lin_dense else float("nan"),
    }


def block_linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The linears N:M pruning makes sparse: the family adapter's, else every ``nn.Linear`` but the head."""
    from esparse.models.adapters import ADAPTERS, get_adapter

    if getattr(getattr(model, "config", None), "model_type", None) in ADAPTERS:
        return list(get_adapter(model).named_linears(model))
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return [(name, mod) for name, mod in model.named_modules() if isinstance(mod, nn.Linear) and mod is not head]


def is_nm_sparse(weight: torch.Tensor, n: int = 2, m: int = 4) -> bool:
    """True iff every group of ``m`` consecutive input elements holds at most ``n`` non-zeros."""
    if weight.dim() != 2 or weight.shape[1] % m:
        return False
    nonzero = (weight.detach() != 0).reshape(weight.shape[0], -1, m).sum(-1)
    return bool((nonzero <= n).all())


def model_memory(model: nn.Module, dtype_bytes: int = 2, n: int = 2, m: int = 4) -> dict[str, Any]:
    """Bytes of a real model (counted from its modules; meta tensors work), dense vs block linears N:M.

    Adds ``nm_sparse``: whether every block linear already satisfies the pattern (otherwise the
    compressed figure is what the model would take once pruned).
    """
    linears = block_linears(model)
    lin_ids = {id(mod.weight) for _, mod in linears}
    comps: dict[str, dict[str, int]] = {}
    lin_params = lin_comp = 0
    for _, mod in linears:
        out_f, in_f = mod.weight.shape
        lin_params += out_f * in_f
        lin_comp += compressed_bytes(out_f, in_f, dtype_bytes, n, m)
    comps["linears"] = _component(lin_params, dtype_bytes, lin_comp)
    seen: set[int] = set()
    other = 0
    for p in model.parameters():  # parameters() already skips tied duplicates; ids guard the rest
        if id(p) in seen or id(p) in lin_ids:
            continue
        seen.add(id(p))
        other += p.numel()
    comps["other"] = _component(other, dtype_bytes)
    out = _totals(comps, ["linears"])
    on_meta = any(mod.weight.is_meta for _, mod in linears)
    out["nm_sparse"] = False if on_meta else all(is_nm_sparse(mod.weight, n, m) for _, mod in linears)
    return out


# --------------------------------------------------------------------------------------------
# GEMM


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """The dtype a bench actually uses: CPU half-precision matmul is too slow to mean anything, so fp32."""
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"bench dtype={dtype!r} is not one of {sorted(_DTYPES)}")
        dtype = _DTYPES[dtype]
    return torch.float32 if device.type == "cpu" else dtype


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"bench backend={backend!r} is not one of {list(BACKENDS)}")


@contextlib.contextmanager
def use_backend(backend: str) -> Iterator[None]:
    """Select cuSPARSELt or CUTLASS for ``to_sparse_semi_structured`` inside the block, then restore."""
    _check_backend(backend)
    cls = torch.sparse.SparseSemiStructuredTensor
    before = cls._FORCE_CUTLASS
    cls._FORCE_CUTLASS = backend == "cutlass"
    try:
        yield
    finally:
        cls._FORCE_CUTLASS = before


def to_semi_structured(weight: torch.Tensor, backend: str = "cusparselt") -> torch.Tensor:
    """A 2:4 weight as a semi-structured tensor of the chosen backend (CUDA only)."""
    with use_backend(backend):
        return torch.sparse.to_sparse_semi_structured(weight.detach().contiguous())


def kernel_available(
    device: str | torch.device, backend: str = "cusparselt", dtype: torch.dtype = torch.float16
) -> tuple[bool, str]:
    """Whether 2:4 semi-structured matmul runs here, probed with a tiny real product, and why not."""
    _check_backend(backend)
    device = torch.device(device)
    if device.type != "cuda":
        return False, f"2:4 semi-structured kernels need a CUDA device; bench device is {device.type}"
    if not torch.cuda.is_available():
        return False, "torch.cuda.is_available() is False"
    cap = torch.cuda.get_device_capability(device)
    if cap < (8, 0):
        return (
            False,
            f"compute capability {cap[0]}.{cap[1]} < 8.0: no sparse tensor cores (need Ampere or newer)",
        )
    if backend == "cusparselt" and not torch.backends.cusparselt.is_available():
        return False, "this torch build has no cuSPARSELt"
    try:
        w = torch.tensor([0.0, 0.0, 1.0, 1.0], device=device, dtype=dtype).tile(64, 16)  # 64 x 64, 2:4
        x = torch.randn(16, 64, device=device, dtype=dtype)
        check_close(F.linear(x, to_semi_structured(w, backend)), F.linear(x, w), f"probe ({backend})")
    except (RuntimeError, NotImplementedError, ValueError) as exc:
        return False, f"{backend} probe failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return True, f"{backend} on {torch.cuda.get_device_name(device)} (sm_{cap[0]}{cap[1]})"


def check_close(sparse_out: torch.Tensor, dense_out: torch.Tensor, what: str, rtol: float | None = None) -> float:
    """Relative Frobenius error of the sparse result vs dense-with-zeros; raises when off."""
    if sparse_out.shape != dense_out.shape:
        raise BenchCorrectnessError(f"{what}: sparse shape {tuple(sparse_out.shape)} != {tuple(dense_out.shape)}")
    tol = _RTOL.get(dense_out.dtype, 1e-2) if rtol is None else rtol
    s, d = sparse_out.detach().float(), dense_out.detach().float()
    if not bool(torch.isfinite(s).all()):
        raise BenchCorrectnessError(f"{what}: sparse result has non-finite values")
    err = float((s - d).norm() / d.norm().clamp_min(torch.finfo(torch.float32).tiny))
    if not err <= tol:
        raise BenchCorrectnessError(f"{what}: sparse result off by relative error {err:.3g} > {tol:g}")
    return err


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
        "dtype": str(dt).removeprefix("torch."), "backend": backend, "device": _device_name(device),
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


def _device_name(device: torch.device) -> str:
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    return device.type


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


# --------------------------------------------------------------------------------------------
# end to end


def to_semi_structured_(
    model: nn.Module, linears: Sequence[nn.Linear], backend: str = "cusparselt", n: int = 2, m: int = 4
) -> list[nn.Parameter]:
    """Swap each linear's weight for a semi-structured tensor in place; returns the originals.

    Refuses (ValueError naming the layer) any weight that is not already 2:4, because the kernel
    would silently drop the surplus non-zeros and change the model.
    """
    if (n, m) != (2, 4):
        raise ValueError(f"semi-structured kernels support 2:4 only, not {n}:{m}")
    names = {id(mod): name for name, mod in model.named_modules()}
    for lin in linears:
        if not is_nm_sparse(lin.weight, n, m):
            raise ValueError(f"linear {names.get(id(lin), '?')!r} is not 2:4 sparse; prune it before the swap")
    originals = []
    for lin in linears:
        originals.append(lin.weight)
        lin.weight = nn.Parameter(to_semi_structured(lin.weight, backend), requires_grad=False)
    return originals


def restore_dense_(linears: Sequence[nn.Linear], originals: Sequence[nn.Parameter]) -> None:
    """Undo :func:`to_semi_structured_`."""
    for lin, w in zip(linears, originals, strict=True):
        lin.weight = w


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _e2e_point(
    model: nn.Module, batch: int, prompt_len: int, gen_len: int, repeats: int, warmup: int, seed: int
) -> dict[str, float]:
    device = next(model.parameters()).device
    vocab = model.config.get_text_config().vocab_size
    gen = torch.Generator(device="cpu").manual_seed(seed)
    prefill, decode = [], []
    for i in range(warmup + repeats):
        ids = torch.randint(0, vocab, (batch, prompt_len), generator=gen).to(device)
        _sync(device)
        t0 = time.perf_counter()
        out = model(input_ids=ids, use_cache=True)
        _sync(device)
        t1 = time.perf_counter()
        past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
        for _ in range(gen_len):
            out = model(input_ids=nxt, past_key_values=past, use_cache=True)
            past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
        _sync(device)
        t2 = time.perf_counter()
        if i >= warmup:
            prefill.append((t1 - t0) * 1e3)
            decode.append((t2 - t1) * 1e3 / gen_len)
    return {"batch": batch, "prefill_ms": statistics.median(prefill), "decode_ms": statistics.median(decode)}


def e2e_latency(
    model: nn.Module,
    batch_sizes: Sequence[int] = (1, 8, 16, 64),
    prompt_len: int = 128,
    gen_len: int = 32,
    sparse: bool = False,
    device: str | torch.device | None = None,
    backend: str = "cusparselt",
    repeats: int = 3,
    warmup: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """Prefill latency and per-token decode latency vs batch size (RIA Table 9's grid).

    The model is used where it is (its device and dtype). With ``sparse`` and a usable kernel its
    block linears are swapped for semi-structured tensors for the measurement and restored after;
    otherwise the dense model is timed and ``available`` is False with the reason.
    """
    if prompt_len <= 0 or gen_len <= 0 or repeats <= 0:
        raise ValueError(f"e2e prompt_len={prompt_len}, gen_len={gen_len}, repeats={repeats} must be positive")
    param = next(model.parameters())
    if device is not None and torch.device(device) != param.device:
        raise ValueError(f"e2e device={device} but the model is on {param.device}; move the model first")
    ok, reason = (False, "dense run requested")
    linears: list[nn.Linear] = []
    originals: list[nn.Parameter] = []
    if sparse:
        ok, reason = kernel_available(param.device, backend, param.dtype)
        if ok:
            linears = [mod for _, mod in block_linears(model)]
            originals = to_semi_structured_(model, linears, backend)
    try:
        with torch.inference_mode():
            rows = [_e2e_point(model, b, prompt_len, gen_len, repeats, warmup, seed) for b in batch_sizes]
    finally:
        if originals:
            restore_dense_(linears, originals)
    return {
        "sparse": bool(sparse and ok), "available": ok, "reason": reason, "backend": backend,
        "device": _device_name(param.device), "dtype": str(param.dtype).removeprefix("torch."),
        "prompt_len": prompt_len, "gen_len": gen_len, "rows": rows,
    }  # fmt: skip


# --------------------------------------------------------------------------------------------
# pipeline stage

#: CPU-sized defaults (the default model's bench runs in seconds); the paper grid is a config away
DEFAULT_CFG: dict[str, Any] = {
    "device": None,  # None: cuda when present, else cpu
    "batch_sizes": (1,),
    "seqlens": (128,),
    "repeats": 5,
    "warmup": 2,
    "dtype": "float16",  # CPU runs use float32
    "backend": "cusparselt",
    "memory_dtype_bytes": 2,  # memory is reported for fp16 storage, the deployed format
    "e2e": False,
    "e2e_batch_sizes": (1, 8, 16, 64),
    "prompt_len": 128,
    "gen_len": 32,
}


def _stage_key(row: Mapping[str, Any]) -> str:
    if row["stage"] == "context":
        return f"context_b{row['batch']}_s{row['seqlen']}"
    return f"decode_b{row['batch']}"


def run_bench(model: nn.Module, cfg: Mapping[str, Any] | None = None) -> dict[str, float | bool | str]:
    """The pipeline's ``bench`` stage: memory, per-layer GEMM and (optionally) end-to-end, as flat metrics.

    Keys: ``bench/available``, ``bench/reason``, ``bench/memory/{dense_bytes,compressed_bytes,ratio}``,
    ``bench/gemm/<layer>/<stage>/dense_ms`` with stage ``context_b<B>_s<S>`` or ``decode_b<B>``,
    plus ``sparse_ms``/``speedup`` and ``bench/gemm/<layer>/breakeven_tokens`` only where timed;
    with ``e2e``: ``bench/e2e/b<B>/{prefill_ms,decode_ms}`` and their ``sparse_``/``speedup`` twins.
    """
    cfg = dict(cfg or {})
    unknown = sorted(k for k in cfg if k not in DEFAULT_CFG and k != "name" and not k.startswith("_"))
    if unknown:
        raise ValueError(f"unknown bench config keys {unknown}; known: {sorted(DEFAULT_CFG)}")
    c = {**DEFAULT_CFG, **cfg}
    device = torch.device(c["device"] or ("cuda" if torch.cuda.is_available() else "cpu"))
    dt = resolve_dtype(c["dtype"], device)
    backend = str(c["backend"])
    ok, reason = kernel_available(device, backend, dt)
    metrics: dict[str, float | bool | str] = {
        "bench/available": ok, "bench/reason": reason, "bench/device": _device_name(device),
        "bench/dtype": str(dt).removeprefix("torch."), "bench/backend": backend,
    }  # fmt: skip

    mem = model_memory(model, dtype_bytes=int(c["memory_dtype_bytes"]))
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


# --------------------------------------------------------------------------------------------
# environment and output


def bench_env(device: str | torch.device) -> dict[str, Any]:
    """Versions and device for a bench record."""
    import platform

    device = torch.device(device)
    env: dict[str, Any] = {
        "device": _device_name(device), "device_type": device.type, "torch": torch.__version__,
        "cuda": torch.version.cuda, "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
    }  # fmt: skip
    if device.type == "cuda" and torch.cuda.is_available():
        cap = torch.cuda.get_device_capability(device)
        env["capability"] = f"{cap[0]}.{cap[1]}"
        env["cusparselt"] = torch.backends.cusparselt.version() if torch.backends.cusparselt.is_available() else None
    return env


def device_slug(name: str) -> str:
    """``NVIDIA H100 80GB HBM3`` -> ``nvidia-h100-80gb-hbm3``."""
    slug = "".join(ch if ch.isalnum() else "-" for ch in name.lower())
    return "-".join(p for p in slug.split("-") if p) or "unknown"


write_json_atomic = tracking.write_json_atomic  # one atomic writer for the whole project
