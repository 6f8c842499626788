"""Weight memory dense fp16 vs 2:4-compressed linears, for the papers' models and the default model.

    python experiments/bench_memory.py

Bytes are exact arithmetic on the published configs (no weights needed): every block linear
stored as 2:4 values + 2-bit metadata (56.25 % of its fp16 bytes), embeddings, norms, biases and
the lm_head dense; beside it 2:4 + int4 / int8 codes and dense int4, each with an fp16 scale and
zero per row and group of 128 inputs (``esparse.bench.quantized_bytes``, docs/quant.md). The
architectures are the catalogue's (``conf/model/*.yaml``). The default model
is also counted from its real modules, built on the meta device from the config inside its bundled
GGUF, when that package is installed. Prints the E-Sparse memory table beside ours and writes
``results/bench/memory.json``, a bench record of kind ``memory`` (``esparse.bench.schema``).
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import torch

from esparse import bench
from esparse.models.arch import arch_from_hf_config, model_arch
from esparse.run.conf_files import conf_file

# E-Sparse memory table: dense GB, sparse GB, saving (unit as printed in the paper: "GB")
PAPER = {
    "llama7b": (9.85, 5.65, 0.4264),
    "llama13b": (19.11, 10.89, 0.4301),
    "llama30b": (47.99, 27.17, 0.4338),
    "llama65b": (96.50, 54.50, 0.4352),
}
#: the models of the papers' memory tables (E-Sparse T6, RIA's LLaMA-2 / OPT), and the default model
MODELS = (
    "llama7b", "llama13b", "llama30b", "llama65b", "llama2_7b", "llama2_13b", "llama2_70b", "opt6.7b", "opt30b",
    "smollm2_135m",
)  # fmt: skip
DEFAULT_MODEL = "smollm2_135m"


def default_model_counted() -> dict | None:
    """The default model's bytes counted from its real module tree (meta device), or None if absent."""
    model_cfg = conf_file("model", DEFAULT_MODEL)
    spec = importlib.util.find_spec(model_cfg["package"])
    if spec is None or not spec.submodule_search_locations:
        return None
    pkg = next(iter(spec.submodule_search_locations))
    if not (Path(pkg) / model_cfg["gguf_file"]).is_file():
        return None
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(pkg, gguf_file=model_cfg["gguf_file"])
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    counted = bench.model_memory(model)
    counted["arch"] = arch_from_hf_config(config)
    return counted


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("results/bench/memory.json"))
    args = p.parse_args()

    archs = {name: model_arch(name) for name in MODELS}
    reports = {name: bench.memory_report(arch, dtype_bytes=2) for name, arch in archs.items()}
    counted = default_model_counted()
    if counted is not None:
        mine = reports[DEFAULT_MODEL]
        keys = ("dense_bytes", "compressed_bytes", "nm_int4_bytes", "nm_int8_bytes", "int4_bytes")
        if [counted[k] for k in keys] != [mine[k] for k in keys]:
            raise SystemExit(f"default model: counted {counted} != config arithmetic {mine}")

    gb, gib = 1e9, 2**30
    print(f"{'model':13} {'params':>15} {'dense GB':>9} {'dense GiB':>9} {'2:4 GB':>8} {'ratio':>7} "
          f"{'saving':>7} {'2:4+i4':>7} {'2:4+i8':>7} {'int4':>7} | {'paper dense':>11} {'paper 2:4':>9} "
          f"{'paper saving':>12}")  # fmt: skip
    for name, r in reports.items():
        paper = PAPER.get(name)
        ref = f"{paper[0]:11.2f} {paper[1]:9.2f} {paper[2]:12.2%}" if paper else f"{'':11} {'':9} {'':12}"
        quant = " ".join(f"{r[k] / gb:7.3f}" for k in ("nm_int4_bytes", "nm_int8_bytes", "int4_bytes"))
        print(
            f"{name:13} {r['params']:>15,} {r['dense_bytes'] / gb:9.3f} {r['dense_bytes'] / gib:9.3f} "
            f"{r['compressed_bytes'] / gb:8.3f} {r['ratio']:7.4f} {r['saving']:7.2%} {quant} | {ref}"
        )
    print("limit for one large fp16 2:4 matrix: ratio 0.5625 (values 0.5 + metadata 0.0625)")
    print("2:4+i4 / 2:4+i8 / int4 (GB): block linears at 13/32, 21/32, 17/32 B per element (fp16 grids, group 128)")
    if counted is not None:
        dense, comp = counted["dense_bytes"], counted["compressed_bytes"]
        print(f"default model counted from its modules: {dense:,} B dense, {comp:,} B with 2:4 linears")
    else:
        package = conf_file("model", DEFAULT_MODEL)["package"]
        print(f"default model package {package!r} not installed: config arithmetic only")

    path = bench.write_bench_record(
        args.out,
        "memory",
        {"dtype_bytes": 2, "n": 2, "m": 4, "quant_group_size": 128, "models": list(MODELS), "archs": archs},
        [{"model": name, **r} for name, r in reports.items()],
        what="weight bytes, fp16, dense vs every block linear 2:4-compressed (values + 2-bit metadata), "
        "and 2:4 + int4 / int8, dense int4 (fp16 scale + zero per row and 128 inputs)",
        extra={
            "formula": "2:4 linear bytes = out*in*(1/2)*2 + out*in/4*4 bits/8 = 1.125*out*in = 0.5625*dense",
            "formula_quantized": "linear bytes = ceil(kept*bits/8) + index (2:4 only: kept*2 bits/8) "
            "+ out*ceil(in/128)*(2+2); kept = out*in/2 (2:4) or out*in (dense int4)",
            "default_model_counted": counted,
            "paper_esparse_memory_gb": {k: {"dense": v[0], "sparse": v[1], "saving": v[2]} for k, v in PAPER.items()},
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
