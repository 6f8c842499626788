"""The default run against this machine's limits: seconds per stage, the share of the float32 GEMM rate
its minimal work reaches, and peak host memory per stage.

    python experiments/bench_default_run.py                 # the embedded default, 3 repeats, ~6 min
    python experiments/bench_default_run.py --repeats 1 -- metric=wanda

Each repeat is one ``run.py`` process with the default config (plus any overrides after ``--``),
``stages=[prune,eval]`` and ``eval.dense_baseline=false`` (the dense number is computed once per
machine and reused, so it is not the run's own work), writing to a scratch results dir. The minimal
work of such a run is two passes of the calibration tokens through the block linears (statistics,
then the pruned block's outputs for the next block) and one pass of the evaluation tokens through
the linears and the head: ``2 x 2 x linear params x calibration tokens + 2 x (linear + head params)
x evaluation tokens`` FLOP (attention's own products not counted: a floor). ``gemm_fraction`` is
that work over the run's prune + eval seconds, divided by a 4096^3 float32 GEMM's rate measured in
the same process at the same thread count. Writes ``results/bench/default_run.json`` (kind
``default_run``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from bench_offload import prune_once  # noqa: E402
from bench_scaling import eval_flop, gemm_gflops, params, prune_flop  # noqa: E402

from esparse import bench  # noqa: E402

#: the stages a prune + eval record times and measures
STAGES = ("load", "eval_data", "calibration_data", "prune", "keep", "eval")


def minimal_tflop(linear: int, head: int, calib_tokens: int, eval_tokens: int) -> float:
    """Two calibration passes through the linears and one evaluation pass through linears and head."""
    return (prune_flop(linear, calib_tokens) + eval_flop(linear + head, eval_tokens)) / 1e12


def row_of(rec: dict, gflops: float, repeat: int) -> dict:
    """One bench row from a run record and the GEMM rate measured beside it."""
    cfg, tim, mem = rec["config"], rec["timings"], rec.get("memory") or {}
    arch = rec["details"].get("loaded_arch") or {"family": cfg["model"]["family"], **cfg["model"]["arch"]}
    pr = params(arch)
    calib = cfg["calibration"]["nsamples"] * cfg["calibration"]["seqlen"]
    windows = rec["details"]["ppl_windows"].values()  # what was scored, whatever nsamples said
    eval_tokens = sum(len(w["nll"]) * (w["tokens_per_window"] + 1) for w in windows)
    work = minimal_tflop(pr["linear_params"], pr["head_params"], calib, eval_tokens)
    seconds = tim["prune"] + tim["eval"]
    return {
        "repeat": repeat, "model": cfg["model"]["name"], "metric": cfg["metric"]["name"],
        "pattern": cfg["pattern"]["name"], "calib_tokens": calib, "eval_tokens": eval_tokens,
        "linear_params": pr["linear_params"], "head_params": pr["head_params"],
        "load_seconds": tim.get("load"),
        "data_seconds": (tim.get("calibration_data") or 0) + (tim.get("eval_data") or 0),
        "prune_seconds": tim["prune"], "eval_seconds": tim["eval"], "wall_seconds": round(rec["_wall"], 1),
        "minimal_tflop": round(work, 3), "achieved_gflops": round(work * 1e3 / seconds, 1),
        "gemm_gflops": round(gflops, 1), "gemm_fraction": round(work * 1e3 / seconds / gflops, 3),
        "host_peak_gb": max((m.get("host_peak_gb") or 0) for m in mem.values()) if mem else None,
        **{f"host_peak_gb_{stage}": (mem.get(stage) or {}).get("host_peak_gb") for stage in STAGES},
        "loadavg_1min": os.getloadavg()[0], "config_hash": rec["config_hash"],
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "results" / "bench" / "default_run.json")
    p.add_argument("overrides", nargs="*", help="run.py overrides, after --")
    args = p.parse_args()
    if args.repeats < 1:
        raise SystemExit(f"--repeats: {args.repeats} must be >= 1")
    over = [*args.overrides, "eval.dense_baseline=false"]
    rows = []
    print(f"{'#':>2} {'prune s':>8} {'eval s':>7} {'TFLOP':>6} {'GFLOP/s':>8} {'GEMM':>7} {'GEMM %':>7} {'peak GB':>8}")
    for i in range(args.repeats):
        gflops = gemm_gflops()
        with tempfile.TemporaryDirectory(prefix="esparse-default-run-") as tmp:
            rec = prune_once(over, Path(tmp), stages="[prune,eval]")
        r = row_of(rec, gflops, i)
        rows.append(r)
        print(f"{i:2d} {r['prune_seconds']:8.1f} {r['eval_seconds']:7.1f} {r['minimal_tflop']:6.2f} "
              f"{r['achieved_gflops']:8.1f} {r['gemm_gflops']:7.1f} {100 * r['gemm_fraction']:6.1f}% "
              f"{r['host_peak_gb']:8.2f}", flush=True)  # fmt: skip
    config = {"repeats": args.repeats, "overrides": over, "threads": torch.get_num_threads()}
    what = "the default run's stage seconds, share of the float32 GEMM rate and peak host memory per stage"
    bench.write_bench_record(args.out, "default_run", config, rows, what=what, device="cpu")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
