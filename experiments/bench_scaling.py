"""How prune time, evaluation time and peak host memory grow with the model, and what a LLaMA-7B
prune would cost on this CPU.

    python experiments/bench_scaling.py                        # every case, ~15 min on 2 cores
    python experiments/bench_scaling.py --cases smollm2_135m,llama7b_blocks --blocks 2

Each case is one real ``run.py`` process (``stages=[prune,eval]``, Wanda 2:4, no dense baseline) on the
same protocol: ``--calib`` calibration windows and ``--eval`` evaluation windows of the bundled corpus.
The cases are the two embedded models (SmolLM2-135M, Gemma-3-270M) and random LLaMAs with the true
decoder-block shapes of LLaMA-7B and LLaMA-13B (``--blocks`` blocks, SmolLM2's tokenizer and
vocabulary; random weights: their perplexity means nothing, their cost is the point), in float32, in
bfloat16, and with ``offload=true``.

Pruning is two forward passes of the calibration tokens through every block linear (statistics, then
the pruned block's outputs), so its time should grow as block-linear parameters x calibration tokens;
evaluation as (block-linear + output-head parameters) x evaluation tokens. The bench fits the seconds
per (parameter x token) of each, shows how far each case is from the fit, and projects a LLaMA-7B
Wanda prune (128 x 2048 calibration tokens, the papers' protocol) and its WikiText-2 evaluation on this
CPU. The machine's float32 GEMM rate is measured in the same run (``torch.mm`` at 4096^3), so each
case's achieved GFLOP/s can be read as a fraction of it. Writes ``results/bench/scaling.json``, a bench
record of kind ``scaling`` (``esparse.bench.schema``); ``make figures`` draws ``scaling``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_offload import prune_once  # noqa: E402  (one run.py process in a scratch results dir)

from esparse import bench  # noqa: E402
from esparse.bench.shapes import linear_shapes  # noqa: E402
from esparse.models.arch import normalize_arch  # noqa: E402

#: the decoder-block shapes of the papers' LLaMA-1 models (conf/model/llama7b.yaml, llama13b.yaml)
LLAMA_SHAPES = {
    "llama7b": {"hidden_size": 4096, "intermediate_size": 11008, "num_attention_heads": 32},
    "llama13b": {"hidden_size": 5120, "intermediate_size": 13824, "num_attention_heads": 40},
}


class Case(NamedTuple):
    what: str
    shape: str | None  #: a key of LLAMA_SHAPES for a random LLaMA; None for an embedded model
    overrides: list[str]
    fitted: bool = True  #: float32 on the device: in the fit, and run at both sizes


CASES: dict[str, Case] = {
    "smollm2_135m": Case("SmolLM2-135M (embedded default)", None, ["model=smollm2_135m"]),
    "gemma3_270m": Case("Gemma-3-270M (embedded second family)", None, ["model=gemma3_270m"]),
    "llama7b_blocks": Case("random LLaMA, LLaMA-7B block shapes", "llama7b", []),
    "llama7b_blocks_bf16": Case("random LLaMA, LLaMA-7B blocks, bfloat16", "llama7b", ["model.dtype=bfloat16"], False),
    "llama7b_blocks_offload": Case("random LLaMA, LLaMA-7B blocks, offload", "llama7b", ["offload=true"], False),
    "llama13b_blocks": Case("random LLaMA, LLaMA-13B block shapes", "llama13b", []),
}
#: the projection's protocol: the papers' calibration (128 x 2048) and LLaMA-7B's WikiText-2 test split
#: (its tokenizer gives about 338k tokens: 165 windows of 2048)
PAPER_CALIB_TOKENS = 128 * 2048
PAPER_EVAL_TOKENS = 165 * 2048


def gemm_gflops(size: int = 4096, repeats: int = 3) -> float:
    """The float32 GEMM rate of this machine at the current thread count: best of ``repeats``."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best / 1e9


def random_llama_dir(shape: str, blocks: int, tokenizer_src: str, out: Path) -> tuple[Path, list[str]]:
    """A ``save_pretrained`` dir of a random LLaMA with ``shape``'s blocks and the given tokenizer,
    and the ``run.py`` overrides that load it (arch keys stated, so the loaded-architecture check holds)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_src)
    s = LLAMA_SHAPES[shape]
    heads = s["num_attention_heads"]
    arch = {**s, "num_hidden_layers": blocks, "num_key_value_heads": heads, "head_dim": s["hidden_size"] // heads,
            "vocab_size": len(tok), "tie_word_embeddings": False}  # fmt: skip
    torch.manual_seed(0)
    cfg = LlamaConfig(**arch, max_position_embeddings=2048, torch_dtype="float32")
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    over = [f"model.path={out}", f"model.name=random_{shape}_{blocks}blocks", "model.source=hub",
            "model.context_length=2048", "model.dtype=float32"]  # fmt: skip
    return out, over + [f"model.arch.{k}={v}" for k, v in arch.items()]


def params(arch: dict[str, Any]) -> dict[str, int]:
    """Block-linear parameters (all blocks: what pruning passes tokens through), output-head parameters,
    and their sum (what evaluation passes tokens through)."""
    a = normalize_arch(arch)
    linear = sum(s.per_block * s.out_features * s.in_features for s in linear_shapes(a)) * a["num_hidden_layers"]
    head = a["vocab_size"] * a["hidden_size"]
    return {"linear_params": linear, "head_params": head, "eval_params": linear + head}


def prune_flop(linear_params: int, calib_tokens: int) -> int:
    """A prune's minimal work: two calibration passes (statistics, then pruned outputs) through every
    block linear, 2 FLOP per parameter and token each."""
    return 2 * 2 * linear_params * calib_tokens


def eval_flop(eval_params: int, eval_tokens: int) -> int:
    """An evaluation's minimal work: one pass through the block linears and the output head."""
    return 2 * eval_params * eval_tokens


def fit(rows: list[dict[str, Any]], seconds: str, params_key: str, tokens_key: str) -> dict[str, Any]:
    """``seconds ~ per_param x P + per_param_token x P x T`` by non-negative least squares over the
    fitted cases' rows (P parameters, T tokens; the first term is the work that does not grow with tokens:
    masks, sorts, loads), and each row's ratio to the fit (1.0: on it). Needs two token counts."""
    base = [r for r in rows if CASES[r["case"]].fitted and r.get(seconds)]
    if len({r[tokens_key] for r in base}) < 2:
        return {}
    from scipy.optimize import nnls

    x = [[r[params_key], r[params_key] * r[tokens_key]] for r in base]
    a, b = (float(v) for v in nnls(x, [r[seconds] for r in base])[0])

    def at(r: dict[str, Any]) -> float:
        return a * r[params_key] + b * r[params_key] * r[tokens_key]

    return {"per_param": a, "per_param_token": b, "rows": len(base),
            "ratio_to_fit": {f"{r['case']} {r[tokens_key]}": round(r[seconds] / at(r), 3) for r in rows}}  # fmt: skip


def _windows(text: str, flag: str) -> tuple[int, int]:
    try:
        n, length = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"{flag} {text!r}: expected <windows>x<tokens>, e.g. 16x512") from None
    if n < 1 or length < 2:
        raise SystemExit(f"{flag} {text!r}: windows >= 1 and tokens >= 2")
    return n, length


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}")
    p.add_argument("--blocks", type=int, default=2, help="decoder blocks of the random LLaMAs")
    p.add_argument("--calib", default="16x512", help="calibration windows x tokens")
    p.add_argument("--eval", default="8x512", help="evaluation windows x tokens")
    p.add_argument("--small", default="4x512,2x512", help="calibration,evaluation of a second float32 run per "
                   "case, so the fit separates per-parameter from per-token cost; '' skips it")  # fmt: skip
    p.add_argument("--out", type=Path, default=ROOT / "results" / "bench" / "scaling.json")
    args = p.parse_args()
    names = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        raise SystemExit(f"--cases: unknown {unknown}; known: {list(CASES)}")
    if args.blocks < 1:
        raise SystemExit(f"--blocks: {args.blocks} must be >= 1")
    sizes = [(_windows(args.calib, "--calib"), _windows(args.eval, "--eval"))]
    if args.small:
        small = args.small.split(",")
        if len(small) != 2:
            raise SystemExit(f"--small {args.small!r}: expected <calibration>,<evaluation>, e.g. 4x512,2x512")
        sizes.append((_windows(small[0], "--small"), _windows(small[1], "--small")))
    plan = [(name, size) for name in names for i, size in enumerate(sizes) if i == 0 or CASES[name].fitted]

    gflops = gemm_gflops()
    print(f"float32 GEMM 4096^3 at {torch.get_num_threads()} threads: {gflops:.0f} GFLOP/s", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="esparse-scaling-") as tmp:
        dirs: dict[str, list[str]] = {}
        for name, ((cn, cl), (en, el)) in plan:
            what, shape, extra, _ = CASES[name]
            over = list(extra)
            if shape:
                if shape not in dirs:
                    from esparse.models.loading import model_source
                    from esparse.run.conf_files import conf_file

                    src = model_source(conf_file("model", "smollm2_135m"))
                    dirs[shape] = random_llama_dir(shape, args.blocks, src, Path(tmp) / shape)[1]
                over = dirs[shape] + over
            protocol = ["metric=wanda", "pattern=2:4", "eval.dense_baseline=false", f"calibration.nsamples={cn}",
                        f"calibration.seqlen={cl}", f"eval.ppl.nsamples={en}", f"eval.ppl.seqlen={el}"]  # fmt: skip
            print(f"[{name}] python run.py {' '.join(over + protocol)} stages=[prune,eval] ...", flush=True)
            rec = prune_once(over + protocol, Path(tmp) / f"run-{name}-{cn}", stages="[prune,eval]")
            rows.append(_row(name, what, rec, cn * cl, en * el, gflops))
            r = rows[-1]
            print(f"  prune {r['prune_seconds']:.1f} s, eval {r['eval_seconds']:.1f} s, "
                  f"peak {r['host_peak_gb']:.2f} GB", flush=True)  # fmt: skip

    prune_fit = fit(rows, "prune_seconds", "linear_params", "calib_tokens")
    eval_fit = fit(rows, "eval_seconds", "eval_params", "eval_tokens")
    l7 = params({"family": "llama", **LLAMA_SHAPES["llama7b"], "num_hidden_layers": 32, "num_key_value_heads": 32,
                 "head_dim": 128, "vocab_size": 32000, "tie_word_embeddings": False})  # fmt: skip
    projection: dict[str, Any] = {"calib_tokens": PAPER_CALIB_TOKENS, "eval_tokens": PAPER_EVAL_TOKENS,
                                  "dtype": "float32", "model": "llama7b (32 blocks, vocab 32000)"}  # fmt: skip
    wanted = {"wanda_prune_seconds": (prune_fit, l7["linear_params"], PAPER_CALIB_TOKENS),
              "wikitext2_eval_seconds": (eval_fit, l7["eval_params"], PAPER_EVAL_TOKENS)}  # fmt: skip
    for key, (f, prm, tokens) in wanted.items():
        if f:
            projection[key] = round(f["per_param"] * prm + f["per_param_token"] * prm * tokens)
    extra = {"gemm_gflops_fp32": round(gflops, 1), "prune_fit": prune_fit, "eval_fit": eval_fit,
             "projection": projection}  # fmt: skip
    config = {"cases": names, "blocks": args.blocks, "calib": args.calib, "eval": args.eval, "small": args.small,
              "metric": "wanda", "pattern": "2:4", "threads": torch.get_num_threads()}  # fmt: skip
    what = "prune and eval seconds and peak host memory per model size (Wanda 2:4, one run.py process per row)"
    bench.write_bench_record(args.out, "scaling", config, rows, what=what, device="cpu", extra=extra)

    print(f"\n{'case':24} {'Mparams':>8} {'tokens':>6} {'prune s':>8} {'eval s':>7} {'peak GB':>8} "
          f"{'prune/fit':>9} {'GEMM %':>7}")  # fmt: skip
    for r in rows:
        ratio = prune_fit.get("ratio_to_fit", {}).get(f"{r['case']} {r['calib_tokens']}", float("nan"))
        gemm = 100 * r["prune_gemm_fraction"]
        print(f"{r['case']:24} {r['linear_params'] / 1e6:8.0f} {r['calib_tokens']:6d} {r['prune_seconds']:8.1f} "
              f"{r['eval_seconds']:7.1f} {r['host_peak_gb']:8.2f} {ratio:9.2f} {gemm:6.0f}%")  # fmt: skip
    for k in ("wanda_prune_seconds", "wikitext2_eval_seconds"):
        if k in projection:
            print(f"projected LLaMA-7B {k}: {projection[k]} s ({projection[k] / 3600:.1f} h) on this CPU, float32")
    print(f"wrote {args.out}")


def _row(name: str, what: str, rec: dict[str, Any], calib_tokens: int, eval_tokens: int, gflops: float) -> dict:
    """One bench row from a run record."""
    cfg, mem, tim = rec["config"], rec.get("memory") or {}, rec["timings"]
    arch = rec["details"].get("loaded_arch") or {"family": cfg["model"]["family"], **cfg["model"]["arch"]}
    pr = params(arch)
    row = {
        "case": name, "what": what, "model": cfg["model"]["name"], "blocks": arch["num_hidden_layers"],
        "hidden_size": arch["hidden_size"], "intermediate_size": arch["intermediate_size"], **pr,
        "dtype": cfg["model"]["dtype"], "offload": bool(cfg.get("offload")),
        "calib_tokens": calib_tokens, "eval_tokens": eval_tokens,
        "prune_seconds": tim.get("prune"), "eval_seconds": tim.get("eval"),
        "host_peak_gb": max((m.get("host_peak_gb") or 0) for m in mem.values()) if mem else None,
        "host_peak_gb_prune": mem.get("prune", {}).get("host_peak_gb"),
        "host_peak_gb_eval": mem.get("eval", {}).get("host_peak_gb"),
        "wall_seconds": round(rec["_wall"], 1), "config_hash": rec["config_hash"],
    }  # fmt: skip
    row["prune_gflops"] = round(prune_flop(pr["linear_params"], calib_tokens) / row["prune_seconds"] / 1e9, 1)
    row["eval_gflops"] = round(eval_flop(pr["eval_params"], eval_tokens) / row["eval_seconds"] / 1e9, 1)
    row["prune_gemm_fraction"] = round(row["prune_gflops"] / gflops, 3)
    row["eval_gemm_fraction"] = round(row["eval_gflops"] / gflops, 3)
    return row


if __name__ == "__main__":
    main()
