"""Exact weight bytes, dense vs N:M-compressed: from an architecture (no weights) or a real model.

Byte arithmetic only, nothing measured: an N:M weight costs its kept values plus the kernels' index
metadata; embeddings, norms, biases and the lm_head stay dense. Beside fp16, the block linears are
also counted as N:M + int4 / int8 codes and as dense int4 (quantization alone), each with an fp16
scale and zero per row and group of :data:`QUANT_GROUP_SIZE` input columns (docs/quant.md).
``prune_memory`` projects the accelerator bytes of layer-wise pruning, to size a GPU before renting it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from esparse.bench.shapes import linear_shapes
from esparse.models.arch import normalize_arch

#: the quantization group the int4 / int8 figures assume (conf/quant's default, GPTQ's and AWQ's)
QUANT_GROUP_SIZE = 128
#: bytes of one scale and of one zero point (fp16, as GPTQ/AWQ checkpoints keep the scale)
GRID_BYTES = 2
#: the quantized layouts counted beside fp16: {name: (bits, N:M-compressed)}
QUANT_LAYOUTS = {"nm_int4": (4, True), "nm_int8": (8, True), "int4": (4, False)}


def dense_bytes(out_features: int, in_features: int, dtype_bytes: int = 2) -> int:
    return out_features * in_features * dtype_bytes


def _check_nm(out_features: int, in_features: int, dtype_bytes: int, n: int, m: int) -> None:
    if not 0 < n < m:
        raise ValueError(f"N:M pattern {n}:{m} must satisfy 0 < n < m")
    if out_features <= 0 or in_features <= 0 or dtype_bytes <= 0:
        raise ValueError(f"shape {out_features}x{in_features}, dtype_bytes={dtype_bytes} must be positive")
    if in_features % m:
        raise ValueError(f"in_features={in_features} is not a multiple of m={m}")


def index_bytes(out_features: int, in_features: int, n: int = 2, m: int = 4) -> int:
    """The N:M index metadata alone: ``ceil(log2 m)`` bits per kept value, rounded up to a byte once."""
    return -(-(out_features * (in_features // m) * n * math.ceil(math.log2(m))) // 8)


def quantized_bytes(
    out_features: int,
    in_features: int,
    bits: int = 4,
    group_size: int = QUANT_GROUP_SIZE,
    nm: tuple[int, int] | None = (2, 4),
) -> int:
    """Bytes of a weight stored as ``bits``-bit integer codes (optionally N:M-compressed first):

        bytes = ceil(kept·bits / 8)  +  index metadata (N:M only)  +  out·ceil(in / group_size)·2·2

    with ``kept = out·in·n/m`` (N:M; the index as :func:`compressed_bytes` counts it) or ``out·in``
    (dense), and an fp16 scale and zero per row and group of ``group_size`` dense input columns
    (``-1``: one per row), as esparse/quant.py's grid. 2:4 + int4 at group 128: 0.25 + 0.125 +
    0.03125 bytes per dense element = 20.3 % of fp16.
    """
    if bits <= 0 or (group_size != -1 and group_size < 1):
        raise ValueError(f"bits={bits} must be positive and group_size={group_size} -1 or >= 1")
    n, m = nm if nm is not None else (1, 1)
    if nm is not None:
        _check_nm(out_features, in_features, 1, n, m)
    elif out_features <= 0 or in_features <= 0:
        raise ValueError(f"shape {out_features}x{in_features} must be positive")
    kept = out_features * (in_features // m) * n
    index = index_bytes(out_features, in_features, n, m) if nm is not None else 0
    groups = 1 if group_size == -1 else -(-in_features // group_size)
    return -(-kept * bits // 8) + index + out_features * groups * 2 * GRID_BYTES


def compressed_bytes(out_features: int, in_features: int, dtype_bytes: int = 2, n: int = 2, m: int = 4) -> int:
    """Bytes of an N:M weight stored as the sparse kernels store it: kept values + index metadata.

    Each group of ``m`` consecutive input elements keeps ``n`` values and, per kept value, its
    position inside the group in ``ceil(log2 m)`` bits:

        bytes = out·in·(n/m)·dtype_bytes  +  ceil(out·(in/m)·n·ceil(log2 m) / 8)

    For 2:4 this is the CUTLASS/cuSPARSELt layout (4 bits of metadata per group of 4, i.e. 2 bits
    per kept element); for fp16 it is 1.125 bytes per dense element = 56.25 % of dense. Other N:M
    (4:8, ...) have no kernel; the same count is then the natural index encoding.
    """
    _check_nm(out_features, in_features, dtype_bytes, n, m)
    return out_features * (in_features // m) * n * dtype_bytes + index_bytes(out_features, in_features, n, m)


def _component(params: int, dtype_bytes: int, compressed: int | None = None, **quantized: int) -> dict[str, int]:
    """A component's bytes; one not given (embeddings, norms: never pruned or quantized) stays dense."""
    dense = params * dtype_bytes
    out = {"params": params, "dense_bytes": dense, "compressed_bytes": dense if compressed is None else compressed}
    return out | {f"{k}_bytes": quantized.get(k, dense) for k in QUANT_LAYOUTS}


def _quantized(out_f: int, in_f: int, n: int, m: int, group_size: int) -> dict[str, int]:
    """One linear's bytes in each of :data:`QUANT_LAYOUTS`."""
    return {
        k: quantized_bytes(out_f, in_f, bits, group_size, (n, m) if nm else None)
        for k, (bits, nm) in QUANT_LAYOUTS.items()
    }


def memory_report(
    arch: Mapping[str, Any], dtype_bytes: int = 2, n: int = 2, m: int = 4, group_size: int = QUANT_GROUP_SIZE
) -> dict[str, Any]:
    """Exact weight bytes per component, dense vs with every block linear stored N:M-compressed
    (and N:M + int4 / int8, dense int4: ``<layout>_bytes``, grids of ``group_size`` columns).

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
        quantized = _quantized(s.out_features, s.in_features, n, m, group_size)
        comps[s.name] = _component(
            count * s.out_features * s.in_features,
            dtype_bytes,
            count * compressed_bytes(s.out_features, s.in_features, dtype_bytes, n, m),
            **{k: count * v for k, v in quantized.items()},
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
    return _totals(comps, [s.name for s in linear_shapes(a)], group_size)


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


def _totals(comps: dict[str, dict[str, int]], linear_names: Sequence[str], group_size: int) -> dict[str, Any]:
    dense = sum(c["dense_bytes"] for c in comps.values())
    comp = sum(c["compressed_bytes"] for c in comps.values())
    lin_dense = sum(comps[k]["dense_bytes"] for k in linear_names)
    lin_comp = sum(comps[k]["compressed_bytes"] for k in linear_names)
    quantized: dict[str, Any] = {"quant_group_size": group_size}
    for k in QUANT_LAYOUTS:
        total = sum(c[f"{k}_bytes"] for c in comps.values())
        quantized[f"{k}_bytes"], quantized[f"{k}_ratio"] = total, total / dense
        quantized[f"linear_{k}_bytes"] = sum(comps[name][f"{k}_bytes"] for name in linear_names)
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
        **quantized,
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


def model_memory(
    model: nn.Module, dtype_bytes: int = 2, n: int = 2, m: int = 4, group_size: int = QUANT_GROUP_SIZE
) -> dict[str, Any]:
    """Bytes of a real model (counted from its modules; meta tensors work), dense vs block linears N:M
    (and the quantized layouts of :func:`memory_report`).

    Adds ``nm_sparse``: whether every block linear already satisfies the pattern (otherwise the
    compressed figure is what the model would take once pruned).
    """
    linears = block_linears(model)
    lin_ids = {id(mod.weight) for _, mod in linears}
    comps: dict[str, dict[str, int]] = {}
    lin_params = lin_comp = 0
    lin_quant = dict.fromkeys(QUANT_LAYOUTS, 0)
    for _, mod in linears:
        out_f, in_f = mod.weight.shape
        lin_params += out_f * in_f
        lin_comp += compressed_bytes(out_f, in_f, dtype_bytes, n, m)
        for k, v in _quantized(out_f, in_f, n, m, group_size).items():
            lin_quant[k] += v
    comps["linears"] = _component(lin_params, dtype_bytes, lin_comp, **lin_quant)
    seen: set[int] = set()
    other = 0
    for p in model.parameters():  # parameters() already skips tied duplicates; ids guard the rest
        if id(p) in seen or id(p) in lin_ids:
            continue
        seen.add(id(p))
        other += p.numel()
    comps["other"] = _component(other, dtype_bytes)
    out = _totals(comps, ["linears"], group_size)
    on_meta = any(mod.weight.is_meta for _, mod in linears)
    out["nm_sparse"] = False if on_meta else all(is_nm_sparse(mod.weight, n, m) for _, mod in linears)
    return out
