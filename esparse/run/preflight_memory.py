"""Sizes a host or a device cannot hold, refused before the model loads with the projection in the
message: the calibration activations a block keeps, one evaluation batch, the model's weights on a
CUDA device. Part of :func:`esparse.run.preflight.check`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: bytes per element of a model dtype (config.DTYPES)
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
#: hidden-state copies of one evaluation batch alive at once (residual, attention, MLP input/output)
EVAL_HIDDEN_COPIES = 4


def available_host_bytes() -> int | None:
    """``MemAvailable`` of /proc/meminfo (psutil where there is no /proc and it is installed)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def _gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB"


def calibration_bytes(cfg: Mapping[str, Any], hidden: int, nbytes: int) -> tuple[int, int, int] | None:
    """``(nsamples, seqlen, bytes)`` of the calibration activations a block keeps (its inputs and
    outputs for every sample: 2 × nsamples × seqlen × hidden × dtype bytes); None without sizes."""
    cal = cfg.get("calibration") or {}
    n, seqlen = cal.get("nsamples"), cal.get("seqlen")
    if not (isinstance(n, int) and isinstance(seqlen, int)):
        return None
    return n, seqlen, 2 * n * seqlen * hidden * nbytes


def host_memory(cfg: Mapping[str, Any]) -> list[str]:
    """Sizes whose projected activation memory on the host exceeds what it has available: the
    calibration activations (inputs and outputs of a block for every sample: 2 × nsamples × seqlen ×
    hidden × dtype bytes) when they live on the host (``device=cpu`` or ``activations_on=cpu``), and
    one evaluation batch (batch_size × seqlen × 4 × hidden × dtype bytes, and one head chunk's float32
    logits and their log-softmax: ``esparse.evaluation.ppl``) on ``device=cpu``. The model's weights
    come on top; the arch is the config's."""
    model = cfg.get("model") or {}
    arch = model.get("arch") or {}
    hidden, vocab = arch.get("hidden_size"), arch.get("vocab_size")
    nbytes = DTYPE_BYTES.get(model.get("dtype", "float32"))
    stages = list(cfg.get("stages") or [])
    if not (isinstance(hidden, int) and nbytes):
        return []
    available = available_host_bytes()
    if available is None:
        return []
    on_host = cfg.get("device") == "cpu"
    problems = []
    from esparse.quant import active

    # a dense run calibrates only to quantize
    dense = (cfg.get("pattern") or {}).get("kind") == "dense" and not active(cfg.get("quant"))
    cal_on_host = "prune" in stages and not dense and (on_host or cfg.get("activations_on") == "cpu")
    sizes = calibration_bytes(cfg, hidden, nbytes)
    if cal_on_host and sizes and sizes[2] > available:
        n, seqlen, need = sizes
        problems.append(
            f"calibration.nsamples × calibration.seqlen: {n} × {seqlen} = {n * seqlen} tokens: their activations "
            f"need 2 × {n * seqlen} × {hidden} (hidden) × {nbytes} bytes = {_gb(need)} "
            f"on the host, more than its {_gb(available)} available (MemAvailable); lower calibration.nsamples or "
            "calibration.seqlen"
        )
    ev = (cfg.get("eval") or {}).get("ppl") or {}
    b, seqlen = ev.get("batch_size"), ev.get("seqlen")
    if "eval" in stages and on_host and ev.get("datasets") and isinstance(b, int) and isinstance(seqlen, int):
        from esparse.evaluation.head import head_chunk_tokens

        v = vocab if isinstance(vocab, int) else 0
        chunk = min(seqlen, head_chunk_tokens(v)) if v else 0  # logits exist one head chunk at a time
        need = b * seqlen * EVAL_HIDDEN_COPIES * hidden * nbytes + 2 * chunk * v * 4
        if need > available:
            problems.append(
                f"eval.ppl.batch_size × eval.ppl.seqlen: {b} × {seqlen} = {b * seqlen} tokens per batch need "
                f"{b * seqlen} × {EVAL_HIDDEN_COPIES} × {hidden} (hidden) × {nbytes} bytes + 2 × {chunk} (tokens per "
                f"head chunk) × {vocab} (vocab) × 4 bytes of logits = {_gb(need)} on the host, more than its "
                f"{_gb(available)} available (MemAvailable); lower eval.ppl.batch_size or eval.ppl.seqlen"
            )
    return problems


def available_device_bytes(device: str) -> int | None:
    """Free memory of a CUDA device now (``torch.cuda.mem_get_info``); None elsewhere."""
    import torch

    if not str(device).startswith("cuda") or not torch.cuda.is_available():
        return None
    return int(torch.cuda.mem_get_info(torch.device(device))[0])


def device_memory(cfg: Mapping[str, Any]) -> list[str]:
    """The accelerator's side of :func:`host_memory`: the model's weights (unless ``offload``: one
    block at a time) and the calibration activations kept on the device (``activations_on=device``),
    against the device's free memory. Nothing on a CPU run."""
    device = str(cfg.get("device") or "")
    available = available_device_bytes(device)
    model = cfg.get("model") or {}
    arch, nbytes = model.get("arch") or {}, DTYPE_BYTES.get(model.get("dtype", "float32"))
    hidden = arch.get("hidden_size")
    if available is None or not (isinstance(hidden, int) and nbytes):
        return []
    from esparse.bench.memory import memory_report

    try:
        weights = (
            0 if cfg.get("offload") else memory_report({"family": model.get("family"), **arch}, nbytes)["dense_bytes"]
        )
    except (KeyError, ValueError):  # an arch the catalogue cannot count: nothing to project
        return []
    sizes = calibration_bytes(cfg, hidden, nbytes)
    n, seqlen, acts = sizes if sizes else (None, None, 0)
    if "prune" not in (cfg.get("stages") or []) or cfg.get("activations_on") == "cpu":
        acts = 0
    if weights + acts <= available:
        return []
    return [
        f"device={device}: the model's weights ({_gb(weights)}{', offload' if cfg.get('offload') else ''}) and "
        f"the calibration activations (2 × {n} × {seqlen} × {hidden} × {nbytes} bytes = {_gb(acts)}) need "
        f"{_gb(weights + acts)}, more than its {_gb(available)} free; set offload=true, activations_on=cpu, or "
        "lower calibration.nsamples"
    ]
