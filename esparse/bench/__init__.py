"""Speed and memory of 2:4 weights: per-layer GEMM, end-to-end latency, compressed bytes.

Everything here is measured or counted, never assumed. Memory is exact byte arithmetic on the
model's shapes (no weights needed). Timings compare dense ``F.linear`` with PyTorch's
semi-structured kernels (``torch.sparse.to_sparse_semi_structured``, cuSPARSELt or CUTLASS); every
sparse result is checked against the dense product with the same zeros before its time counts.
Where the kernels cannot run (CPU, pre-Ampere GPU, a torch build without them) the records say so
(``available=False`` plus the reason), keep the dense timings, and carry no speedup at all.

One idea per module: ``shapes`` (a block's linear kinds), ``memory`` (byte arithmetic),
``kernels`` (the semi-structured kernels and their correctness check), ``gemm`` (per-layer timing),
``e2e`` (end-to-end latency), ``stage`` (the pipeline's bench stage), ``schema`` (the one format of
every bench file, and its writer).
Architectures come from the catalogue, ``esparse.models.arch``.
"""

from __future__ import annotations

from esparse.bench.e2e import e2e_latency, restore_dense_, to_semi_structured_
from esparse.bench.gemm import breakeven_tokens, gemm_bench, gemm_table, random_24_weight
from esparse.bench.kernels import (
    BACKENDS,
    BenchCorrectnessError,
    check_close,
    device_name,
    kernel_available,
    resolve_dtype,
    to_semi_structured,
    use_backend,
)
from esparse.bench.memory import (
    block_linears,
    compressed_bytes,
    dense_bytes,
    index_bytes,
    is_nm_sparse,
    memory_report,
    model_memory,
    prune_memory,
    quantized_bytes,
)
from esparse.bench.schema import COLUMNS, SCHEMA_VERSION, bench_record, device_slug, write_bench_record
from esparse.bench.shapes import LABELS, LinearShape, linear_shapes
from esparse.bench.stage import bench_defaults, run_bench

__all__ = [
    "BACKENDS",
    "COLUMNS",
    "LABELS",
    "BenchCorrectnessError",
    "LinearShape",
    "SCHEMA_VERSION",
    "bench_defaults",
    "bench_record",
    "block_linears",
    "breakeven_tokens",
    "check_close",
    "compressed_bytes",
    "dense_bytes",
    "device_name",
    "device_slug",
    "e2e_latency",
    "gemm_bench",
    "gemm_table",
    "index_bytes",
    "is_nm_sparse",
    "kernel_available",
    "linear_shapes",
    "memory_report",
    "model_memory",
    "prune_memory",
    "quantized_bytes",
    "random_24_weight",
    "resolve_dtype",
    "restore_dense_",
    "run_bench",
    "to_semi_structured",
    "to_semi_structured_",
    "use_backend",
    "write_bench_record",
]
