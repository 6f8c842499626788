"""PyTorch's 2:4 semi-structured kernels: whether they run here, which backend, and whether they are right.

Every sparse result is checked against the dense product with the same zeros before its time
counts; where the kernels cannot run (CPU, pre-Ampere GPU, a torch build without them) the reason is
returned so records can say ``available=False`` and why.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from esparse.finite import all_finite

BACKENDS = ("cusparselt", "cutlass")

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}

#: relative Frobenius error allowed between the sparse kernel and dense-with-zeros. fp16 output
#: rounding alone is ~5e-4; a wrong sparse result (bad metadata, wrong layout) is O(1).
_RTOL = {torch.float16: 1e-2, torch.bfloat16: 3e-2, torch.float32: 5e-3}


class BenchCorrectnessError(RuntimeError):
    """The sparse kernel's output disagrees with the dense product of the same 2:4 weight."""


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
    if not all_finite(s):
        raise BenchCorrectnessError(f"{what}: sparse result has non-finite values")
    err = float((s - d).norm() / d.norm().clamp_min(torch.finfo(torch.float32).tiny))
    if not err <= tol:
        raise BenchCorrectnessError(f"{what}: sparse result off by relative error {err:.3g} > {tol:g}")
    return err


def device_name(device: torch.device) -> str:
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    return device.type
