"""Peak memory of pruning one model with the whole model on the device, with ``offload=true``, and
with ``offload=true activations_on=cpu``: measured, beside the on-paper projection.

    python experiments/bench_offload.py                          # the embedded default, this machine
    python experiments/bench_offload.py --device cuda -- model=llama7b calibration=c4   # on a GPU

Each placement is one real ``run.py`` pruning run (``stages=[prune]``) in its own process, so the
host peak of one cannot leak into the next; the record's ``memory`` block gives the peak host RSS
(sampled) and, on CUDA, ``torch.cuda.max_memory_allocated`` per stage. Placement changes no number
(tested bit for bit), so the runs write to a scratch results dir, never over your records. The
projection is ``esparse.bench.prune_memory`` for the same model, dtype and calibration: weights,
two activation copies and SparseGPT's Hessian, without one batch's workspace or allocator slack.

On a CPU the "device" *is* the host: offload moves blocks from the CPU to the CPU, so the three
placements must show the same host peak and there is no accelerator peak to report (the JSON says
``device_peak_gb: null``). Writes ``results/bench/offload_memory_<cpu|cuda>.json``, a bench record of
kind ``prune_memory`` (``esparse.bench.schema``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from esparse import bench  # noqa: E402

PLACEMENTS = {
    "on_device": [],
    "offload": ["offload=true"],
    "offload_activations_on_cpu": ["offload=true", "activations_on=cpu"],
}

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def prune_once(overrides: list[str], results_dir: Path, stages: str = "[prune]") -> dict:
    """One ``run.py`` process (``stages``, default pruning only) writing to ``results_dir``: its record,
    with the process's wall time as ``_wall``."""
    cmd = [sys.executable, str(ROOT / "run.py"), *overrides, f"stages={stages}", "logger=none", "progress=false"]
    cmd += ["force=true", f"results_dir={results_dir}", f"hydra.run.dir={results_dir / 'hydra'}"]  # always last
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({' '.join(overrides)}):\n{proc.stderr[-3000:]}")
    (record_path,) = (results_dir / "runs").glob("*.json")
    rec = json.loads(record_path.read_text())
    rec["_wall"] = wall
    return rec


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="run.py device= (auto: cuda if available else cpu)")
    p.add_argument("--metric", default="wanda", help="metric= of the pruning runs (sparsegpt adds its Hessian)")
    p.add_argument("--out", type=Path, default=None, help="default results/bench/offload_memory_<cpu|cuda>.json")
    p.add_argument("overrides", nargs="*", help="extra run.py overrides after --, e.g. model=llama7b")
    args = p.parse_args()

    rows, records = [], {}
    with tempfile.TemporaryDirectory(prefix="esparse-offload-") as tmp:
        for name, extra in PLACEMENTS.items():
            over = [f"device={args.device}", f"metric={args.metric}", *extra, *args.overrides]
            print(f"[{name}] python run.py {' '.join(over)} stages=[prune] ...", flush=True)
            rec = prune_once(over, Path(tmp) / name)
            records[name] = rec
            cfg = rec["config"]
            hessian = cfg["metric"]["name"] == "sparsegpt" or bool(cfg["metric"].get("reconstruct"))
            proj = bench.prune_memory(
                rec["details"].get("loaded_arch") or {"family": cfg["model"]["family"], **cfg["model"]["arch"]},
                nsamples=cfg["calibration"]["nsamples"],
                seqlen=cfg["calibration"]["seqlen"],
                dtype_bytes=DTYPE_BYTES[cfg["model"].get("dtype", "float32")],
                hessian=hessian,
            )
            mem = rec.get("memory", {})
            rows.append(
                {
                    "placement": name,
                    "device": rec["env"]["device"],
                    "host_peak_gb_prune": mem.get("prune", {}).get("host_peak_gb"),
                    "host_peak_gb_all": max((m["host_peak_gb"] or 0) for m in mem.values()) if mem else None,
                    "device_peak_gb_prune": mem.get("prune", {}).get("device_peak_gb"),
                    "projected_device_gb": round(proj[name] / 1e9, 4),
                    "projected_device_bytes": int(proj[name]),
                    "prune_seconds": rec["timings"].get("prune"),
                    "wall_seconds": round(rec["_wall"], 1),
                    "config_hash": rec["config_hash"],
                }
            )

    hashes = {r["config_hash"] for r in rows}
    if len(hashes) != 1:  # placement is non-semantic: the three runs are one configuration
        raise SystemExit(f"placements produced different config hashes {hashes}")
    first = next(iter(records.values()))
    kind = "cuda" if str(first["config"]["device"]).startswith("cuda") else "cpu"
    out = args.out or ROOT / "results" / "bench" / f"offload_memory_{kind}.json"
    cfg = first["config"]
    config = {
        "model": cfg["model"]["name"],
        "metric": cfg["metric"]["name"],
        "pattern": cfg["pattern"]["name"],
        "calibration": {k: cfg["calibration"][k] for k in ("name", "nsamples", "seqlen")},
        "dtype": cfg["model"].get("dtype"),
        "device": cfg["device"],
        "overrides": args.overrides,
    }
    what = (
        "peak memory of one pruning run (stages=[prune]) per placement; host = sampled RSS of the process, "
        "device = torch.cuda.max_memory_allocated (null on CPU: no accelerator)"
    )
    bench.write_bench_record(out, "prune_memory", config, rows, what=what, device=str(cfg["device"]))

    print(f"\n{config['model']} {config['metric']} {config['pattern']}, calibration "
          f"{config['calibration']['nsamples']}x{config['calibration']['seqlen']} {config['dtype']}, "
          f"device {first['env']['device']}")  # fmt: skip
    print(f"{'placement':28} {'host peak GB':>12} {'device peak GB':>14} {'projected dev GB':>16} {'prune s':>8}")
    for r in rows:
        dev = "n/a (CPU)" if r["device_peak_gb_prune"] is None else f"{r['device_peak_gb_prune']:.3f}"
        print(
            f"{r['placement']:28} {r['host_peak_gb_prune']:12.3f} {dev:>14} {r['projected_device_gb']:16.3f} "
            f"{r['prune_seconds']:8.1f}"
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
