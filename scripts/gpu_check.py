"""``make gpu-check``: everything only a GPU can measure, in one command (< 8 min on an H100).

1. **GEMM**: dense fp16 vs 2:4 semi-structured per linear at LLaMA-7B and LLaMA-13B shapes, both
   backends (cuSPARSELt, CUTLASS), context (batch 8 × 128 tokens, batch 1 × 2048) and decode (batch 1,
   8) → ``results/bench/gemm_<gpu>.json`` (the same record kind as ``experiments/bench_gemm.py``).
2. **Masks on the device**: a tiny random LLaMA (tests only; its numbers mean nothing) pruned in fp16
   on the GPU and on the CPU with the same calibration tokens, Wanda and RIA at 2:4, with and without
   RIA's channel permutation: how many kept/pruned decisions differ (float rounding flips near-ties
   only) → ``results/bench/device_masks_<gpu>.json``.
3. **Offload**: the accelerator's peak memory of pruning a random LLaMA with LLaMA-7B's block shapes
   (4 blocks, fp16, Wanda 2:4, 16 × 2048 calibration tokens) with the whole model on the GPU, with
   ``offload`` (one block on the GPU at a time) and with ``offload`` + activations on the CPU, beside
   ``esparse.bench.prune_memory``'s projection → ``results/bench/offload_memory_<gpu>.json`` (the
   record kind of ``experiments/bench_offload.py``, whose CUDA column needs Hydra and a real model).

Needs only torch, transformers and esparse's method modules (no Hydra, lm-eval or gguf), so it runs
on a bare GPU image: ``PYTHONPATH=. python scripts/gpu_check.py``. ``--dry-run`` runs both parts on
the CPU at toy sizes (what CI runs: the path, not a number). No GPU number exists until this has run
on a GPU; the JSON names the device, and nothing here is estimated.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from esparse import bench  # noqa: E402
from esparse.masks import Pattern  # noqa: E402
from esparse.models.arch import arch_from_hf_config, model_arch  # noqa: E402
from esparse.pruning import PruneSpec, prune_model  # noqa: E402
from esparse.records.memory import PeakMemory  # noqa: E402

CASES = (("wanda", "none"), ("ria", "none"), ("wanda", "ria_cp_lsa"), ("ria", "ria_cp_lsa"))


def gemm(device: torch.device, dry: bool) -> list[dict]:
    """Per-layer GEMM rows for LLaMA-7B and -13B shapes (dry: two tiny shapes, one repeat)."""
    rows = []
    for model in ("llama7b", "llama13b"):
        arch = model_arch(model)
        if dry:
            shapes = bench.linear_shapes(arch)[:2]
            shapes = [dataclasses.replace(s, out_features=64, in_features=128) for s in shapes]
            grid = {"batch_sizes": [1], "seqlens": [16], "repeats": 1, "warmup": 0, "shapes": shapes}
        else:
            grid = {"batch_sizes": [1, 8], "seqlens": [128, 2048], "repeats": 50, "warmup": 10}
        rows += [{"model": model, **r} for r in bench.gemm_table(arch, dtype="float16", backends=list(bench.BACKENDS),
                                                                 device=device, **grid)]  # fmt: skip
    return rows


def tiny_llama(seed: int = 0):
    """A 2-block random LLaMA, fp32 (tests only)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256)  # fmt: skip
    return LlamaForCausalLM(cfg).eval()


def kept(model) -> dict[str, torch.Tensor]:
    from esparse.models import get_adapter

    return {n: (lin.weight != 0).cpu() for n, lin in get_adapter(model).named_linears(model)}


def device_masks(device: torch.device, dtype: torch.dtype) -> list[dict]:
    """Prune the same tiny model on ``device`` and on the CPU in ``dtype``; count differing decisions."""
    from esparse.masks import check

    calib = torch.randint(0, 256, (8, 64), generator=torch.Generator().manual_seed(0))
    rows = []
    for metric, shuffle in CASES:
        spec = PruneSpec(metric, Pattern.parse("2:4"), shuffle=shuffle)
        out = {}
        for where in (device, torch.device("cpu")):
            model = tiny_llama().to(dtype=dtype, device=where)
            t0 = time.perf_counter()
            report = prune_model(model, calib, spec, device=where, progress=False)
            ok = check(model, "2:4", permutations=report.layer_permutations()).ok  # in the stored order
            out[where.type] = (kept(model), time.perf_counter() - t0, ok)
        (a, secs, ok_a), (b, _, ok_b) = out[device.type], out["cpu"]
        total = sum(m.numel() for m in a.values())
        diff = sum(int((a[n] != b[n]).sum()) for n in a)
        rows.append({"model": "tiny_random_llama", "metric": metric, "pattern": "2:4", "shuffle": shuffle,
                     "device": bench.device_name(device), "reference_device": "cpu",
                     "dtype": str(dtype).removeprefix("torch."), "mask_entries": total, "differing": diff,
                     "agreement": 1 - diff / total, "pattern_ok": bool(ok_a and ok_b), "seconds": secs})  # fmt: skip
    return rows


def offload_memory(device: torch.device, dry: bool) -> tuple[dict, list[dict]]:
    """Peak device memory of one prune per placement (dry: the tiny model on the CPU, fp32)."""
    import copy

    if dry:
        base, dtype, (nsamples, seqlen) = tiny_llama(), torch.float32, (4, 32)
    else:
        from transformers import LlamaConfig, LlamaForCausalLM

        a = model_arch("llama7b")
        keys = ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim",
                "vocab_size", "tie_word_embeddings")  # fmt: skip
        torch.manual_seed(0)
        cfg = LlamaConfig(**{k: a[k] for k in keys}, num_hidden_layers=4, max_position_embeddings=2048)
        base, dtype, (nsamples, seqlen) = LlamaForCausalLM(cfg).eval(), torch.float16, (16, 2048)
    arch = arch_from_hf_config(base.config)  # what the projection counts is the model that runs
    base = base.to(dtype)
    calib = torch.randint(0, arch["vocab_size"], (nsamples, seqlen), generator=torch.Generator().manual_seed(0))
    projected = bench.prune_memory(arch, nsamples=nsamples, seqlen=seqlen, dtype_bytes=base.dtype.itemsize,
                                   hessian=False)  # fmt: skip
    spec = PruneSpec("wanda", Pattern.parse("2:4"))
    rows = []
    for placement, offload, store in (("on_device", False, None), ("offload", True, None),
                                      ("offload_activations_on_cpu", True, "cpu")):  # fmt: skip
        model = copy.deepcopy(base)
        if not offload:
            model = model.to(device)
        t0 = time.perf_counter()
        with PeakMemory(str(device)) as peak:
            prune_model(model, calib, spec, batch_size=4, device=device, progress=False, offload=offload,
                        store=store)  # fmt: skip
        mem = peak.as_dict()
        rows.append({"placement": placement, "device": bench.device_name(device),
                     "host_peak_gb_prune": mem["host_peak_gb"], "device_peak_gb_prune": mem["device_peak_gb"],
                     "projected_device_gb": round(projected[placement] / 1e9, 4),
                     "projected_device_bytes": int(projected[placement]),
                     "prune_seconds": round(time.perf_counter() - t0, 3)})  # fmt: skip
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    config = {"model": "random llama, llama7b block shapes" if not dry else "tiny random llama",
              "blocks": arch["num_hidden_layers"], "metric": "wanda", "pattern": "2:4",
              "calibration": {"nsamples": nsamples, "seqlen": seqlen}, "dtype": str(dtype).removeprefix("torch."),
              "dry_run": dry}  # fmt: skip
    return config, rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="CPU, toy sizes: the path, not a measurement")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    args = p.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu-check: no CUDA device here; --dry-run runs the CPU path (no GPU number is made)", file=sys.stderr)
        return 2
    device = torch.device("cpu" if args.dry_run else "cuda")
    slug = bench.device_slug(bench.device_name(device)) + ("-dry-run" if args.dry_run else "")
    t0 = time.perf_counter()
    rows = gemm(device, args.dry_run)
    what = "per-layer GEMM, dense fp16 F.linear vs 2:4 torch.sparse.to_sparse_semi_structured (gpu-check)"
    config = {"models": ["llama7b", "llama13b"], "dry_run": args.dry_run, "backends": list(bench.BACKENDS)}
    g = bench.write_bench_record(args.out / f"gemm_{slug}.json", "gemm", config, rows, what=what, device=str(device))
    masks = device_masks(device, torch.float32 if args.dry_run else torch.float16)
    what = "the same tiny prune on the device and on the CPU"
    m = bench.write_bench_record(args.out / f"device_masks_{slug}.json", "device_masks", {"cases": CASES}, masks,
                                 what=what, device=str(device))  # fmt: skip
    ocfg, offload = offload_memory(device, args.dry_run)
    what = "peak memory of one prune per placement (gpu-check: a random LLaMA with LLaMA-7B blocks, no run.py)"
    o = bench.write_bench_record(args.out / f"offload_memory_{slug}.json", "prune_memory", ocfg, offload,
                                 what=what, device=str(device))  # fmt: skip
    for r in rows:
        sp = f"{r['speedup']:.2f}x" if "speedup" in r else f"no kernel ({r['reason']})"
        print(f"{r['model']:9} {r['label']:8} {r['stage']:7} tokens={r['tokens']:<5} {r['backend']:10} "
              f"dense {r['dense_ms']:.4f} ms  2:4 {sp}")  # fmt: skip
    for r in masks:
        print(f"masks {r['metric']:6} {r['shuffle']:10} {r['device']} vs cpu: {r['differing']} of "
              f"{r['mask_entries']} differ (agreement {r['agreement']:.5f}), pattern ok {r['pattern_ok']}")  # fmt: skip
    for r in offload:
        dev = "n/a (CPU)" if r["device_peak_gb_prune"] is None else f"{r['device_peak_gb_prune']:.3f} GB"
        print(f"offload {r['placement']:28} device peak {dev:>10}  projected {r['projected_device_gb']:.3f} GB  "
              f"{r['prune_seconds']:.1f} s")  # fmt: skip
    print(f"wrote {g}, {m} and {o} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
