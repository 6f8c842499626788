"""End-to-end latency: prefill and per-token decode vs batch size, dense or with 2:4 linears swapped in."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from esparse.bench.kernels import device_name, kernel_available, to_semi_structured
from esparse.bench.memory import block_linears, is_nm_sparse


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
        "device": device_name(param.device), "dtype": str(param.dtype).removeprefix("torch."),
        "prompt_len": prompt_len, "gen_len": gen_len, "rows": rows,
    }  # fmt: skip
