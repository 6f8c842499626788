"""What a step after the score costs: whole-model prune time of each score alone, + DSnoT
(``refine=dsnot``), and + RTN / GPTQ / AWQ (``quant=...``), on the same calibration windows.

    python experiments/bench_prune_cost.py                       # the embedded default, 2:4, this machine
    python experiments/bench_prune_cost.py --repeats 2 -- pattern=4:8

Each variant is one real ``run.py`` pruning run (``stages=[prune]``, ``force=true``) in its own
process, written to a scratch results dir (never over your records). A row gives the record's prune
time (load and calibration data excluded), the step's own seconds as the run measured it
(``refine/seconds``, ``quant/seconds``), and the time added over its base variant (the same score
without the step). With ``--repeats`` > 1 the fastest repeat counts: on a shared machine the minimum
is the least disturbed. The 1-minute load average at each start is in the row, so a reader can see
whether the machine was quiet. Writes ``results/bench/prune_cost.json``, a bench record of kind
``prune_cost`` (``esparse.bench.schema``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_offload import prune_once  # noqa: E402  (one pruning run.py process, written to a scratch dir)

from esparse import bench  # noqa: E402

#: variant -> (its base variant or None, run.py overrides)
VARIANTS: dict[str, tuple[str | None, list[str]]] = {
    "wanda": (None, ["metric=wanda"]),
    "wanda + dsnot": ("wanda", ["metric=wanda", "refine=dsnot"]),
    "wanda + rtn": ("wanda", ["metric=wanda", "quant=rtn"]),
    "wanda + gptq": ("wanda", ["metric=wanda", "quant=gptq"]),
    "wanda + awq": ("wanda", ["metric=wanda", "quant=awq"]),
    "ria": (None, ["metric=ria"]),
    "ria + dsnot": ("ria", ["metric=ria", "refine=dsnot"]),
    "esparse": (None, ["metric=esparse"]),
    "esparse + dsnot": ("esparse", ["metric=esparse", "refine=dsnot"]),
    "sparsegpt": (None, ["metric=sparsegpt"]),
}


def step_seconds(metrics: dict) -> tuple[str | None, float | None]:
    for step in ("refine", "quant"):
        if f"{step}/seconds" in metrics:
            return step, float(metrics[f"{step}/seconds"])
    return None, None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of: {', '.join(VARIANTS)}")
    p.add_argument("--repeats", type=int, default=1, help="runs per variant; the fastest counts")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "bench" / "prune_cost.json")
    p.add_argument("overrides", nargs="*", help="run.py overrides for every variant, after --")
    args = p.parse_args()
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; known: {list(VARIANTS)}")
    if args.repeats < 1:
        raise SystemExit(f"--repeats: {args.repeats} must be >= 1")
    for name in names:  # a step is timed against its base: run the base too
        base = VARIANTS[name][0]
        if base and base not in names:
            names.insert(names.index(name), base)

    rows: dict[str, dict] = {}
    cfg0: dict = {}
    with tempfile.TemporaryDirectory(prefix="esparse-cost-") as tmp:
        for name in names:
            best = None
            for r in range(args.repeats):
                load = os.getloadavg()[0]
                over = [*VARIANTS[name][1], *args.overrides]
                print(f"[{name} #{r}] python run.py {' '.join(over)} stages=[prune] ...", flush=True)
                rec = prune_once(over, Path(tmp) / f"{name}-{r}".replace(" ", ""))
                wall = rec["_wall"]
                prune = float(rec["timings"]["prune"])
                if best is None or prune < best["prune_seconds"]:
                    step, secs = step_seconds(rec["metrics"])
                    best = {"variant": name, "base": VARIANTS[name][0], "step": step, "step_seconds": secs,
                            "prune_seconds": round(prune, 3), "wall_seconds": round(wall, 1),
                            "host_peak_gb_prune": (rec.get("memory") or {}).get("prune", {}).get("host_peak_gb"),
                            "loadavg_1min": round(load, 2), "repeats": args.repeats,
                            "config_hash": rec["config_hash"]}  # fmt: skip
                    cfg0 = cfg0 or rec["config"]
            rows[name] = best
    for row in rows.values():
        if row["base"]:
            base = rows[row["base"]]["prune_seconds"]
            row["added_seconds"] = round(row["prune_seconds"] - base, 3)
            row["added_fraction"] = round(row["prune_seconds"] / base - 1, 4)

    config = {"model": cfg0["model"]["name"], "pattern": cfg0["pattern"]["name"],
              "calibration": {k: cfg0["calibration"][k] for k in ("name", "nsamples", "seqlen", "seed")},
              "dtype": cfg0["model"].get("dtype"), "device": cfg0["device"], "overrides": args.overrides,
              "variants": {n: VARIANTS[n][1] for n in names}}  # fmt: skip
    what = "whole-model prune time (stages=[prune]) of each score alone and with a step after its mask"
    bench.write_bench_record(args.out, "prune_cost", config, list(rows.values()), what=what, device=str(cfg0["device"]))

    print(f"\n{config['model']} {config['pattern']}, calibration {config['calibration']['nsamples']}x"
          f"{config['calibration']['seqlen']}, {config['dtype']}")  # fmt: skip
    print(f"{'variant':18} {'prune s':>8} {'step s':>7} {'added s':>8} {'added':>7} {'load':>5}")
    for r in rows.values():
        step = "" if r["step_seconds"] is None else f"{r['step_seconds']:.1f}"
        added = f"{r['added_seconds']:8.1f} {r['added_fraction']:7.1%}" if r["base"] else f"{'':8} {'':7}"
        print(f"{r['variant']:18} {r['prune_seconds']:8.1f} {step:>7} {added} {r['loadavg_1min']:5.2f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
