"""Per-layer GEMM latency at LLaMA-7B shapes: dense fp16 vs 2:4 semi-structured (cuSPARSELt, CUTLASS).

    python experiments/bench_gemm.py                 # GPU: batch 1,8 x seqlen 128,2048, both backends
    python experiments/bench_gemm.py --device cpu    # no kernels: records available=false, dense fp32 only

Writes ``results/bench/gemm_<device-slug>.json``, a bench record of kind ``gemm``
(``esparse.bench.schema``: the environment, the grid, every row).
On CPU the grid is reduced (context b1·s128, decode b1 and b8, 3 repeats) so it ends in < 2 min;
timing fp32 GEMMs on a CPU says nothing about the sparse kernels, it only exercises the path.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from esparse import bench
from esparse.models.arch import model_arch

MODEL = "llama7b"

# E-Sparse GEMM table (A100 40GB, FasterTransformer, batch 4, seqlen 1024, model not stated): dense, sparse ms
ESPARSE_T5 = {
    ("context", "Q/K/V"): (8.452, 5.815),
    ("context", "Att_Out"): (3.488, 2.540),
    ("context", "FFN-1"): (11.487, 8.073),
    ("context", "FFN-2"): (11.478, 8.958),
    ("decode", "Q/K/V"): (0.122, 0.098),
    ("decode", "Att_Out"): (0.046, 0.030),
    ("decode", "FFN-1"): (0.160, 0.112),
    ("decode", "FFN-2"): (0.158, 0.109),
}
# RIA Table 5 (A100, LLaMA2-13B, batch 8, seqlen 128): speedup per kind and overall
RIA_T5 = {"cutlass": {"Q/K/V/Out": 1.21, "Up/Gate": 1.23, "Down": 1.23, "Overall": 1.22},
          "cusparselt": {"Q/K/V/Out": 1.64, "Up/Gate": 1.65, "Down": 1.62, "Overall": 1.63}}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--backends", nargs="+", default=list(bench.BACKENDS), choices=bench.BACKENDS)
    p.add_argument("--repeats", type=int, default=None, help="default 100 on GPU, 3 on CPU")
    p.add_argument("--warmup", type=int, default=None, help="default 20 on GPU, 1 on CPU")
    p.add_argument("--out", type=Path, default=Path("results/bench"))
    args = p.parse_args()

    device = torch.device(args.device)
    gpu = device.type == "cuda"
    arch = model_arch(MODEL)
    grid = {
        "batch_sizes": [1, 8] if gpu else [1],
        "seqlens": [128, 2048] if gpu else [128],
        "repeats": args.repeats or (100 if gpu else 3),
        "warmup": args.warmup if args.warmup is not None else (20 if gpu else 1),
    }
    t0 = time.perf_counter()
    rows = bench.gemm_table(arch, dtype="float16", backends=args.backends, device=device, **grid)
    if not gpu:  # decode at batch 8 too, cheaply (the context grid above is already the reduced one)
        rows += bench.gemm_table(arch, [8], [], dtype="float16", backends=args.backends, device=device,
                                 repeats=grid["repeats"], warmup=grid["warmup"])  # fmt: skip
    wall = time.perf_counter() - t0
    available = any(r["available"] for r in rows)
    reasons = sorted({r["reason"] for r in rows})
    breakeven = {f"{layer}/{backend}": t for (layer, backend), t in bench.breakeven_tokens(rows).items()}

    print(f"LLaMA-7B shapes on {bench.device_name(device)}  kernels available: {available}")
    for reason in reasons:
        print(f"  reason: {reason}")
    head = f"{'layer':8} {'stage':7} {'b':>3} {'s':>5} {'tokens':>6} {'backend':10} {'dtype':8} "
    print(head + f"{'dense ms':>10} {'2:4 ms':>10} {'speedup':>8} {'dense TF/s':>10}")
    for r in rows:
        sparse = f"{r['sparse_ms']:10.4f} {r['speedup']:8.3f}" if "speedup" in r else f"{'-':>10} {'-':>8}"
        print(
            f"{r['label']:8} {r['stage']:7} {r['batch']:>3} {r['seqlen'] or '':>5} {r['tokens']:>6} "
            f"{r['backend']:10} {r['dtype']:8} {r['dense_ms']:10.4f} {sparse} {r['dense_tflops']:10.3f}"
        )
    if breakeven:
        print("2:4 pays from (tokens):", breakeven)
    print("paper E-Sparse T5 (A100, b4 s1024), dense/sparse ms:", ESPARSE_T5)
    print("paper RIA T5 (A100, LLaMA2-13B b8 s128), speedups:", RIA_T5)

    config = {"model": MODEL, **grid, "decode_extra_batch_sizes": [] if gpu else [8], "backends": args.backends}
    extra = {
        "shapes": [vars(s) for s in bench.linear_shapes(arch)],
        "available": available,
        "reasons": reasons,
        "breakeven_tokens": breakeven,
        "wall_s": wall,
        "paper": {
            "esparse_t5_ms": {f"{k[0]}/{k[1]}": v for k, v in ESPARSE_T5.items()},
            "ria_t5_speedup": RIA_T5,
        },
    }
    path = bench.write_bench_record(
        args.out / f"gemm_{bench.device_slug(bench.device_name(device))}.json",
        "gemm",
        config,
        [{"model": MODEL, **r} for r in rows],
        what="per-layer GEMM, dense fp16 F.linear vs 2:4 torch.sparse.to_sparse_semi_structured",
        device=str(device),
        extra=extra,
    )
    print(f"wrote {path} ({wall:.1f} s)")


if __name__ == "__main__":
    main()
