"""Peak host memory of the evaluation: esparse's head-on-demand losses against the full-logit reference.

    python experiments/bench_eval_memory.py                      # SmolLM2 and Gemma-3, ~5 min on 2 cores
    python experiments/bench_eval_memory.py --models smollm2_135m --items 32

Per bundled model, four measurements, each in a fresh process (so one peak never hides another):
perplexity over ``--windows`` 512-token windows of the bundled evaluation text, by
``esparse.evaluation.ppl.perplexity`` (head in chunks) and by the plain reference (the model's own
logits for the batch, then a cross-entropy per window); zero-shot PIQA (``--items`` items of the
bundled validation split) by ``evaluate_zeroshot`` (``ContinuationHeadLM``: head on the continuation
rows only) and by lm-eval's stock ``HFLM`` (log-softmax of the whole padded batch's logits). A row
gives the peak RSS, the RSS before the evaluation (the model and data), the result and its relative
distance from the reference's. Writes ``results/bench/eval_memory.json`` (kind ``eval_memory``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from esparse import bench  # noqa: E402

MODELS = ("smollm2_135m", "gemma3_270m")
#: (stage, path): esparse's evaluation first, its reference second
CASES = (("ppl", "esparse"), ("ppl", "reference"), ("zeroshot", "esparse"), ("zeroshot", "reference"))


def _reference_ppl(model: torch.nn.Module, windows: torch.Tensor, batch_size: int) -> float:
    """exp(mean NLL) from the model's own full logits: the unchunked computation."""
    nll, count = 0.0, 0
    with torch.no_grad():
        for s in range(0, windows.shape[0], batch_size):
            ids = windows[s : s + batch_size]
            logits = model(input_ids=ids, use_cache=False).logits
            for i in range(ids.shape[0]):
                nll += float(torch.nn.functional.cross_entropy(logits[i, :-1].float(), ids[i, 1:], reduction="sum"))
            count += ids[:, 1:].numel()
    return float(torch.tensor(nll / count, dtype=torch.float64).exp())


def one(model_name: str, stage: str, path: str, windows_n: int, items: int, batch_size: int) -> dict:
    """One measurement, in this process: load, evaluate under PeakMemory, return the row."""
    from omegaconf import OmegaConf

    from esparse.evaluation import ppl, zeroshot
    from esparse.models.loading import load_model
    from esparse.records.memory import PeakMemory, host_rss_bytes, release_freed_heap
    from esparse.run.data import eval_windows, load_texts, tokenize_stream

    cfg = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "model" / f"{model_name}.yaml"), resolve=True)
    model, tok = load_model(cfg)
    windows = None
    if stage == "ppl":
        windows = eval_windows(tokenize_stream(load_texts("bundled_wiki", "eval"), tok), 512, windows_n)
    release_freed_heap()
    before = host_rss_bytes() or 0
    t0 = time.perf_counter()
    with PeakMemory() as pm:
        if stage == "ppl" and path == "esparse":
            value = ppl.perplexity(model, windows, batch_size=batch_size, progress=False).value
        elif stage == "ppl":
            value = _reference_ppl(model, windows, batch_size)
        elif path == "esparse":
            metrics, _ = zeroshot.evaluate_zeroshot(model, tok, {"tasks": ["piqa_local"], "limit": items,
                                                               "batch_size": 8})  # fmt: skip
            value = metrics["zeroshot/piqa_local/acc"]
        else:
            import lm_eval
            from lm_eval.models.huggingface import HFLM

            c = zeroshot.resolve_config({"tasks": ["piqa_local"], "limit": items, "batch_size": 8})
            tm = zeroshot.task_manager(c)
            lm = HFLM(pretrained=model, tokenizer=tok, batch_size=8)
            out = lm_eval.simple_evaluate(model=lm, tasks=["piqa_local"], num_fewshot=0, limit=items, task_manager=tm)
            value = out["results"]["piqa_local"]["acc,none"]
    return {
        "model": model_name, "stage": stage, "path": path, "value": value,
        "metric": "perplexity" if stage == "ppl" else "acc",
        "size": windows_n if stage == "ppl" else items, "batch_size": batch_size if stage == "ppl" else 8,
        "vocab": int(model.get_output_embeddings().out_features),
        "host_rss_before_gb": round(before / 1e9, 4), "host_peak_gb": round((pm.host_peak or 0) / 1e9, 4),
        "added_gb": round(((pm.host_peak or 0) - before) / 1e9, 4), "seconds": round(time.perf_counter() - t0, 2),
        "loadavg_1min": os.getloadavg()[0],
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--windows", type=int, default=8, help="512-token perplexity windows")
    p.add_argument("--items", type=int, default=64, help="PIQA items (each two loglikelihood requests)")
    p.add_argument("--batch-size", type=int, default=4, help="perplexity windows per forward (the default run's)")
    p.add_argument("--one", nargs=3, metavar=("MODEL", "STAGE", "PATH"), help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=ROOT / "results" / "bench" / "eval_memory.json")
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(*args.one, args.windows, args.items, args.batch_size)))
        return

    rows = []
    head = ("model", "stage", "path", "value", "rel diff", "before GB", "peak GB", "s")
    print("{:14} {:9} {:10} {:>10} {:>9} {:>9} {:>8} {:>7}".format(*head))
    for model_name in args.models.split(","):
        for stage, path in CASES:
            cmd = [sys.executable, __file__, "--one", model_name, stage, path, "--windows", str(args.windows),
                   "--items", str(args.items), "--batch-size", str(args.batch_size)]  # fmt: skip
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
        for row in rows[-len(CASES) :]:
            ref = next(r for r in rows[-len(CASES) :] if r["stage"] == row["stage"] and r["path"] == "reference")
            row["rel_diff_vs_reference"] = abs(row["value"] - ref["value"]) / abs(ref["value"])
            print(f"{row['model']:14} {row['stage']:9} {row['path']:10} {row['value']:10.5f} "
                  f"{row['rel_diff_vs_reference']:9.2e} {row['host_rss_before_gb']:9.3f} {row['host_peak_gb']:8.3f} "
                  f"{row['seconds']:7.1f}", flush=True)  # fmt: skip
    what = "peak host RSS of perplexity and zero-shot: head-on-demand losses vs the full-logit reference"
    path = bench.write_bench_record(args.out, "eval_memory", vars(args) | {"out": str(args.out)}, rows, what=what)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
