"""Channel permutations: retained score and wall time per method, at LLaMA-7B layer shapes.

    python experiments/bench_permutation.py                # all shapes, ~minutes on 2 cores
    python experiments/bench_permutation.py --shapes 4096x4096 --patterns 2:4
    python experiments/bench_permutation.py --device cuda --out results/bench/permutation_cuda.json

Scores are random stand-ins for |W|·||X||: |N(0,1)| entries times a per-input-channel lognormal
norm (sigma 1), the heavy-tailed column profile that makes permutation matter. Real layers are added
when ``results/bench/scores_smollm2.pt`` exists (a ``torch.save``d dict: layer name -> (r, c) score);
otherwise they are skipped. ``greedy`` (Pool & Yu, O(c² r) per swap search) runs only on a reduced
matrix, the first ``--greedy-cols`` columns of the first shape, where every other method runs too.

Retained is reported as a fraction of the unstructured upper bound (top (1 - n/m)·c scores per row),
gain as the relative increase over the identity. Each method is timed at every ``--threads`` count:
wall seconds and cpu seconds (process time, all threads), both including the registry's validation
and never-worse-than-identity guard, with the 1-minute load average. On a shared, loaded CPU wall
time overstates the code's cost; single-thread cpu seconds are the load-robust figure, and bound
the unloaded 2-core wall time from above (up to thread overhead).
Writes ``results/bench/permutation.json``, a bench record of kind ``permutation``
(``esparse.bench.schema``): one row per (matrix, method, thread count).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import torch

from esparse import permutation as P
from esparse.bench import write_bench_record
from esparse.records import provenance

# (method, kwargs) per run; the esparse block sweep stands in for the paper's lost block size
METHODS: list[tuple[str, dict[str, Any]]] = [
    ("none", {}),
    ("esparse_global", {}),
    ("ria_cp", {}),
    ("ria_cp_lsa", {}),
    ("ria_cp_lsa", {"community_size": 64}),
    ("ria_cp_lsa", {"sweeps": 2}),
    ("esparse", {"block": 8}),
    ("esparse", {"block": 16}),
    ("esparse", {"block": 32}),
    ("esparse", {}),
    ("lsa_relabel", {"rounds": 2}),
    ("lsa_relabel", {}),
]
REDUCED_EXTRA: list[tuple[str, dict[str, Any]]] = [("greedy", {}), ("ria_cp_lsa", {"communities": 1, "sweeps": 3})]
REAL_SCORES = Path("results/bench/scores_smollm2.pt")


def synthetic_score(r: int, c: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(r, c, generator=g).abs() * torch.exp(torch.randn(c, generator=g))


def parse_shape(text: str) -> tuple[int, int]:
    r, c = text.lower().split("x")
    return int(r), int(c)


def label(name: str, kw: dict[str, Any]) -> str:
    return name + ("(" + ",".join(f"{k}={v}" for k, v in kw.items()) + ")" if kw else "")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_label(device: torch.device) -> str:
    """Where the scores lived, as the tables print it: the GPU's name, or the CPU model and its cores."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = provenance.cpu_info()
    return f"cpu ({cpu['model']}, {cpu['cores']} cores)"


def measure(
    case: str, score: torch.Tensor, n: int, m: int, runs: list[tuple[str, dict[str, Any]]], repeat: int,
    threads: list[int],
) -> list[dict]:  # fmt: skip
    """Every method on ``score``'s device, one row per thread count; on CUDA the clock stops only
    after the device is idle."""
    bound = P.upper_bound(score, n, m)
    base = P.retained_score(score, n, m)
    where = device_label(score.device)
    rows = []
    for name, kw in runs:
        fn = P.get(name)
        timing = {}
        for th in threads:
            torch.set_num_threads(th)
            load = os.getloadavg()[0]
            wall, cpu = [], []
            for _ in range(repeat):
                _sync(score.device)
                t0, c0 = time.perf_counter(), time.process_time()
                perm = fn(score, n, m, **kw)
                _sync(score.device)
                wall.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            timing[th] = {"seconds": min(wall), "cpu_seconds": min(cpu), "seconds_all": wall, "loadavg_1min": load}
        kept = P.retained_score(score, n, m, perm)
        common = {
            "case": case, "model": case.split()[0], "rows": int(score.shape[0]), "cols": int(score.shape[1]),
            "n": n, "m": m, "method": name, "kwargs": kw, "label": label(name, kw), "device": where,
        }  # fmt: skip
        score_cols = {"retained": kept, "retained_over_bound": kept / bound, "gain_over_none": kept / base - 1.0}
        rows += [{**common, "threads": th, **t, **score_cols} for th, t in timing.items()]
        times = " ".join(
            f"{t['seconds']:8.3f} {t['cpu_seconds']:8.3f} ({t['loadavg_1min']:4.1f})" for t in timing.values()
        )
        print(f"  {common['label']:38} {kept / bound:9.5f} {kept / base - 1:+8.3%} {times}", flush=True)
    return rows


def real_layers() -> dict[str, torch.Tensor]:
    if not REAL_SCORES.is_file():
        return {}
    blob = torch.load(REAL_SCORES, map_location="cpu", weights_only=True)
    return {k: v.float() for k, v in blob.items() if isinstance(v, torch.Tensor) and v.ndim == 2}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default="4096x4096,11008x4096,4096x11008", help="r x c, comma separated")
    p.add_argument("--patterns", default="2:4,4:8", help="N:M patterns; 4:8 runs on the first shape only")
    p.add_argument("--greedy-cols", type=int, default=256)
    p.add_argument("--repeat", type=int, default=1, help="timed runs per method (the minimum is kept)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", default=str(torch.get_num_threads()), help="torch thread counts to time, e.g. 2,1")
    p.add_argument("--device", default="cpu", help="where the scores live (cuda: LSA itself still runs in scipy)")
    p.add_argument("--out", type=Path, default=Path("results/bench/permutation.json"))
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available on this machine")
    threads = [int(t) for t in args.threads.split(",")]

    shapes = [parse_shape(s) for s in args.shapes.split(",")]
    patterns = [tuple(int(v) for v in s.split(":")) for s in args.patterns.split(",")]
    cases: list[tuple[str, torch.Tensor, int, int, list]] = []
    for i, (r, c) in enumerate(shapes):
        score = synthetic_score(r, c, args.seed + i)
        for j, (n, m) in enumerate(patterns):
            if j == 0 or i == 0:
                cases.append((f"synthetic {r}x{c}", score, n, m, METHODS))
    r, c = shapes[0]
    reduced = synthetic_score(r, c, args.seed)[:, : args.greedy_cols].contiguous()
    cases.append((f"synthetic {r}x{args.greedy_cols} (reduced)", reduced, *patterns[0], METHODS + REDUCED_EXTRA))
    layers = real_layers()
    if not layers:
        print(f"{REAL_SCORES} not found: real layers skipped")
    for name, score in layers.items():
        n, m = patterns[0]
        if score.shape[1] % m == 0:
            cases.append((f"real {name} {score.shape[0]}x{score.shape[1]}", score, n, m, METHODS))

    rows = []
    heads = " ".join(f"{f'wall {t}T':>8} {f'cpu {t}T':>8} (load)" for t in threads)
    print(f"{'method':40} {'ret/bound':>9} {'vs none':>8} {heads}")
    for case, score, n, m, runs in cases:
        print(f"{case}  {n}:{m}", flush=True)
        rows += measure(case, score.to(device), n, m, runs, args.repeat, threads)

    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    extra = {
        "score": "synthetic: |N(0,1)| * exp(N(0,1)) per input channel; real: results/bench/scores_smollm2.pt",
        "greedy_note": f"greedy only on the reduced {r}x{args.greedy_cols} matrix (O(c^2 r) per search)",
        "loadavg_end": list(os.getloadavg()),
    }
    what = "retained N:M score (fraction of the unstructured bound) and seconds per permutation method"
    path = write_bench_record(args.out, "permutation", config, rows, what=what, device=args.device, extra=extra)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
