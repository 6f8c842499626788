"""Bench: byte accounting by hand, shapes from configs, and the CPU path of the timing code.

The semi-structured kernel itself needs a CUDA GPU; everything around it (the correctness check,
speedup arithmetic, the swap of linears) runs here with a stand-in "kernel" that is a plain
tensor, so a wrong sparse result can be injected.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    OPTConfig,
    OPTForCausalLM,
)

from esparse import bench
from esparse.bench import BenchCorrectnessError, LinearShape
from esparse.models.arch import arch_from_hf_config, model_arch
from esparse.records import store


def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=100,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(cfg).eval()


# ---------------------------------------------------------------- byte accounting


def test_compressed_bytes_small_matrix_by_hand():
    # 8x16 fp16 2:4: 128 elements, 32 groups of 4. Values: 64 kept x 2 B = 128 B.
    # Metadata: 32 groups x (2 kept x 2 bits) = 128 bits = 16 B. Total 144 B; dense 256 B.
    assert bench.compressed_bytes(8, 16, dtype_bytes=2) == 144
    assert bench.dense_bytes(8, 16, dtype_bytes=2) == 256
    # int8 2:4: 64 x 1 B + 16 B = 80 B.
    assert bench.compressed_bytes(8, 16, dtype_bytes=1) == 80
    # 4:8 fp16: 16 groups of 8, 64 kept x 2 B = 128 B; 16 x 4 kept x 3 bits = 192 bits = 24 B.
    assert bench.compressed_bytes(8, 16, dtype_bytes=2, n=4, m=8) == 152
    # 1x4 fp16 2:4: 2 values (4 B) + 4 bits of metadata rounded up to 1 B.
    assert bench.compressed_bytes(1, 4) == 5


def test_quantized_bytes_of_a_128x256_layer_by_hand():
    # 128 x 256 = 32,768 dense elements; fp16 dense 65,536 B; 2:4 keeps 16,384 values.
    # Index metadata: 16,384 kept x 2 bits = 4,096 B. Grids at group 128: 128 rows x 2 groups x
    # (2 B scale + 2 B zero) = 1,024 B (per row, group -1: 128 x 4 = 512 B).
    # 2:4 + int4: 16,384 x 4 bits = 8,192 B + 4,096 + 1,024 = 13,312 B (20.3125 % of fp16).
    # 2:4 + int8: 16,384 B + 4,096 + 1,024 = 21,504 B. Dense int4: 32,768 x 4 bits = 16,384 + 1,024 = 17,408 B.
    assert bench.index_bytes(128, 256) == 4_096
    assert bench.quantized_bytes(128, 256, bits=4) == 13_312
    assert bench.quantized_bytes(128, 256, bits=4) * 64 == bench.dense_bytes(128, 256) * 13  # 13/64 = 20.3125 %
    assert bench.quantized_bytes(128, 256, bits=8) == 21_504
    assert bench.quantized_bytes(128, 256, bits=4, nm=None) == 17_408
    assert bench.quantized_bytes(128, 256, bits=4, group_size=-1) == 12_800
    assert bench.compressed_bytes(128, 256) == 32_768 + 4_096  # the fp16 2:4 figure beside them
    # a row narrower than a group is one group (esparse/quant.py: min(group_size, cols)): 2 x 64 keeps 64
    # values, 32 B of codes + 64 x 2 bits = 16 B of index + 2 rows x 4 B; 4:8 has 3 index bits per kept value
    assert bench.quantized_bytes(2, 64, bits=4) == 32 + 16 + 8
    assert bench.quantized_bytes(1, 8, bits=4, nm=(4, 8)) == 2 + 2 + 4
    with pytest.raises(ValueError, match="10 is not a multiple of m=4"):
        bench.quantized_bytes(8, 10)
    with pytest.raises(ValueError, match="group_size=0"):
        bench.quantized_bytes(8, 16, group_size=0)


def test_fp16_24_limit_is_56_25_percent_exactly():
    c, d = bench.compressed_bytes(4096, 4096, 2), bench.dense_bytes(4096, 4096, 2)
    assert c == 18_874_368  # 4096*4096 * (1 B values + 1/8 B metadata)
    assert d == 33_554_432
    assert c * 10_000 == d * 5_625


@settings(max_examples=60, deadline=None)
@given(out=st.integers(1, 300), groups=st.integers(1, 300))
def test_24_fp16_is_nine_eighths_byte_per_element(out, groups):
    c = bench.compressed_bytes(out, 4 * groups, 2)
    elems = out * 4 * groups
    assert 9 * elems <= 8 * c < 9 * elems + 8  # 1.125 B per dense element, metadata rounded up once


@pytest.mark.parametrize(
    ("args", "bad"),
    [((8, 10), "in_features=10"), ((8, 16, 2, 4, 4), "4:4"), ((0, 16), "0x16"), ((8, 16, 2, 0, 4), "0:4")],
)
def test_compressed_bytes_rejects_bad_input(args, bad):
    with pytest.raises(ValueError, match=bad):
        bench.compressed_bytes(*args)


# ---------------------------------------------------------------- shapes and arch


def test_linear_shapes_llama7b():
    assert bench.linear_shapes(model_arch("llama7b")) == [
        LinearShape("qkv", 4096, 4096, 3),
        LinearShape("att_out", 4096, 4096, 1),
        LinearShape("ffn1", 11008, 4096, 2),
        LinearShape("ffn2", 4096, 11008, 1),
    ]
    assert [s.label for s in bench.linear_shapes(model_arch("llama7b"))] == [
        "Q/K/V",
        "Att_Out",
        "FFN-1",
        "FFN-2",
    ]


def test_linear_shapes_gqa_and_opt():
    # SmolLM2-135M: 9 heads x 64 = 576 for Q, 3 kv heads x 64 = 192 for K and V.
    assert bench.linear_shapes(model_arch("smollm2_135m")) == [
        LinearShape("q", 576, 576, 1),
        LinearShape("kv", 192, 576, 2),
        LinearShape("att_out", 576, 576, 1),
        LinearShape("ffn1", 1536, 576, 2),
        LinearShape("ffn2", 576, 1536, 1),
    ]
    opt = bench.linear_shapes(model_arch("opt6.7b"))
    assert opt[2] == LinearShape("ffn1", 16384, 4096, 1, bias=True)
    assert opt[3] == LinearShape("ffn2", 4096, 16384, 1, bias=True)


def test_bad_arch_and_shape_raise():
    with pytest.raises(ValueError, match="family='gpt2'"):
        bench.linear_shapes({"family": "gpt2"})
    with pytest.raises(ValueError, match="hidden_size=None"):
        bench.linear_shapes({"family": "llama", "intermediate_size": 8})
    with pytest.raises(ValueError, match="'mlp'"):
        LinearShape("mlp", 4, 4, 1)
    with pytest.raises(ValueError, match="per_block=0"):
        LinearShape("q", 4, 4, 0)


def test_memory_report_llama7b_by_hand_and_beside_the_paper():
    r = bench.memory_report(model_arch("llama7b"), dtype_bytes=2)
    # per block: QKV 3*4096^2 + O 4096^2 + gate/up 2*11008*4096 + down 4096*11008 = 202,375,168
    # x32 blocks = 6,476,005,376; embed + lm_head 2*32000*4096 = 262,144,000; norms 65*4096 = 266,240
    assert r["params"] == 6_738_415_616
    assert r["dense_bytes"] == 13_476_831_232  # 13.48 GB = 12.55 GiB
    assert r["linear_dense_bytes"] == 12_952_010_752
    assert r["linear_compressed_bytes"] == 7_285_506_048  # x 0.5625
    assert r["compressed_bytes"] == 7_810_326_528  # + 524,820,480 dense (embeddings, head, norms)
    assert r["components"]["ffn1"]["dense_bytes"] == 5_771_362_304
    assert r["components"]["lm_head"]["dense_bytes"] == 262_144_000
    # The paper's 9.85 GB -> 5.65 GB (saving 42.64 %) is not the fp16 weight bytes of LLaMA-7B (13.48 GB
    # in either unit); the comparable figure is the saving: ours 42.05 %, within 1 point of the paper.
    assert r["saving"] == pytest.approx(1 - 7_810_326_528 / 13_476_831_232)
    assert abs(r["saving"] - 0.4264) < 0.01
    # every in_features (4096, 11008 = 86 x 128) is a multiple of 128: per dense element, 2:4 + int4 is
    # 0.25 + 0.125 + 4/128 = 13/32 B, 2:4 + int8 0.5 + 0.125 + 1/32 = 21/32 B, dense int4 0.5 + 1/32 = 17/32 B;
    # 6,476,005,376 linear params / 32 = 202,375,168; the rest (524,820,480 B) stays fp16
    assert r["linear_nm_int4_bytes"] == 202_375_168 * 13 == 2_630_877_184  # 2.63 GB vs 13.48 GB dense
    assert r["linear_nm_int8_bytes"] == 202_375_168 * 21
    assert r["linear_int4_bytes"] == 202_375_168 * 17
    assert r["nm_int4_bytes"] == r["linear_nm_int4_bytes"] + 524_820_480
    assert r["nm_int4_ratio"] == r["nm_int4_bytes"] / r["dense_bytes"] and r["quant_group_size"] == 128
    assert r["components"]["lm_head"]["nm_int4_bytes"] == r["components"]["lm_head"]["dense_bytes"]


def _tiny_models():
    torch.manual_seed(0)
    llama = tiny_llama()
    opt = OPTForCausalLM(
        OPTConfig(
            hidden_size=64,
            ffn_dim=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            vocab_size=100,
            max_position_embeddings=32,
            word_embed_proj_dim=64,
        )
    )
    gemma = Gemma3ForCausalLM(
        Gemma3TextConfig(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=1,
            head_dim=32,
            vocab_size=100,
        )
    )
    return {"llama": llama, "opt": opt, "gemma3": gemma}


@pytest.mark.parametrize("family", ["llama", "opt", "gemma3"])
def test_memory_report_matches_real_modules(family):
    model = _tiny_models()[family]
    arch = arch_from_hf_config(model.config)
    assert arch["family"] == family
    from_arch = bench.memory_report(arch)
    counted = bench.model_memory(model)
    n_params = sum(p.numel() for p in model.parameters())  # tied weights counted once
    assert from_arch["params"] == counted["params"] == n_params
    assert from_arch["dense_bytes"] == counted["dense_bytes"] == 2 * n_params
    assert from_arch["compressed_bytes"] == counted["compressed_bytes"]
    assert counted["nm_sparse"] is False  # random weights are dense


def test_tiny_llama_memory_by_hand():
    # hidden 64, MLP 128, 2 blocks, 4 heads x 16, 2 kv heads: per block q 4096 + k,v 2x2048 + o 4096
    # + gate,up 2x8192 + down 8192 = 36,864; x2 = 73,728 linear params. Other: embed 6400 +
    # lm_head 6400 + norms 5x64 = 13,120. Dense 2 x 86,848 = 173,696 B.
    # Compressed: 73,728 x 1.125 = 82,944 B + 26,240 B = 109,184 B.
    r = bench.model_memory(tiny_llama())
    assert (r["dense_bytes"], r["compressed_bytes"]) == (173_696, 109_184)
    # 2:4 + int4: 73,728 x (0.25 + 0.125) = 27,648 B of codes and index; every row is one group of 128
    # (or fewer) inputs: rows q,k,v,o,gate,up,down 64+32+32+64+128+128+64 = 512 per block, x2 blocks x 4 B
    # = 4,096 B; + 26,240 B dense (embed, lm_head, norms) = 57,984 B
    assert r["nm_int4_bytes"] == 27_648 + 4_096 + 26_240


# ---------------------------------------------------------------- GEMM, CPU path


def test_kernel_unavailable_on_cpu_and_bad_backend():
    ok, reason = bench.kernel_available("cpu")
    assert ok is False and "CUDA" in reason
    with pytest.raises(ValueError, match="'triton'"):
        bench.kernel_available("cpu", backend="triton")


def test_gemm_bench_cpu_reports_unavailable_with_dense_timings():
    rec = bench.gemm_bench(LinearShape("ffn1", 64, 32, 2), tokens=16, device="cpu", repeats=3, warmup=1)
    assert rec["available"] is False and "CUDA" in rec["reason"]
    assert rec["dtype"] == "float32"  # fp16 requested, CPU runs fp32
    assert rec["dense_ms"] > 0 and rec["dense_ms_min"] <= rec["dense_ms"]
    assert not {"sparse_ms", "speedup", "max_rel_err"} & rec.keys()  # nothing untimed is reported


def test_check_close_raises_on_wrong_result():
    torch.manual_seed(0)
    w = bench.random_24_weight(32, 64, torch.float32, torch.device("cpu"), torch.Generator().manual_seed(1))
    x = torch.randn(8, 64)
    y = x @ w.T
    assert bench.check_close(y.half(), y.half(), "same") == 0.0
    assert bench.check_close((y + 1e-4 * torch.randn_like(y)).half(), y.half(), "noise") < 1e-2
    wrong = y.clone()
    wrong[:, 0] += 10.0
    with pytest.raises(BenchCorrectnessError, match="layer ffn1 tokens=8"):
        bench.check_close(wrong, y, "layer ffn1 tokens=8")
    with pytest.raises(BenchCorrectnessError, match="non-finite"):
        bench.check_close(torch.full_like(y, float("nan")), y, "nan")
    with pytest.raises(BenchCorrectnessError, match="shape"):
        bench.check_close(y[:4], y, "short")


def _fake_kernel(monkeypatch, convert):
    """Pretend the kernel exists: 'semi-structured' weights are plain tensors from ``convert``."""
    monkeypatch.setattr(bench.gemm, "kernel_available", lambda *a, **k: (True, "fake kernel"))
    monkeypatch.setattr(bench.gemm, "to_semi_structured", lambda w, backend="cusparselt": convert(w))


def test_gemm_bench_sparse_path_times_and_checks(monkeypatch):
    _fake_kernel(monkeypatch, lambda w: w.clone())
    rec = bench.gemm_bench(LinearShape("att_out", 32, 64, 1), tokens=8, device="cpu", repeats=4, warmup=1)
    assert rec["available"] is True and rec["max_rel_err"] == 0.0
    assert rec["speedup"] == pytest.approx(rec["dense_ms"] / rec["sparse_ms"])


def test_gemm_bench_fails_loudly_on_injected_wrong_sparse_result(monkeypatch):
    def shifted(w):  # wrong metadata: every kept value moved one slot to the right inside its row
        return torch.roll(w, 1, dims=1)

    _fake_kernel(monkeypatch, shifted)
    with pytest.raises(BenchCorrectnessError, match=r"layer ffn2 \(32x64\) tokens=8"):
        bench.gemm_bench(LinearShape("ffn2", 32, 64, 1), tokens=8, device="cpu", repeats=2, warmup=0)


def test_random_24_weight_is_exactly_half_dense():
    w = bench.random_24_weight(16, 32, torch.float16, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert bench.is_nm_sparse(w) and int((w != 0).sum()) == 16 * 32 // 2
    assert not bench.is_nm_sparse(torch.ones(4, 8))


def test_gemm_table_points_and_single_backend_on_cpu():
    arch = {"family": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "vocab_size": 10}  # fmt: skip
    rows = bench.gemm_table(arch, [1, 2], [4, 8], backends=("cusparselt", "cutlass"), device="cpu", repeats=1, warmup=0)
    # 4 kinds x (2x2 context + 2 decode) points, one backend (dense timings do not depend on it)
    assert len(rows) == 4 * 6
    ctx = {(r["batch"], r["seqlen"], r["tokens"]) for r in rows if r["stage"] == "context"}
    assert ctx == {(1, 4, 4), (1, 8, 8), (2, 4, 8), (2, 8, 16)}
    assert {r["tokens"] for r in rows if r["stage"] == "decode"} == {1, 2}
    assert {r["backend"] for r in rows} == {"cusparselt"}
    assert bench.breakeven_tokens(rows) == {}


def test_breakeven_tokens_by_hand():
    def row(tokens, speedup, layer="qkv"):
        return {"layer": layer, "backend": "cutlass", "tokens": tokens, "speedup": speedup}

    rows = [row(1, 0.8), row(8, 1.1), row(128, 0.9), row(1024, 1.2), row(2048, 1.3), row(2048, 1.4)]
    rows += [row(1, 0.5, "ffn2"), row(2048, 0.9, "ffn2")]
    rows += [{"layer": "att_out", "backend": "cutlass", "tokens": 8}]  # untimed: no entry
    assert bench.breakeven_tokens(rows) == {("qkv", "cutlass"): 1024, ("ffn2", "cutlass"): None}


def test_use_backend_restores_flag():
    cls = torch.sparse.SparseSemiStructuredTensor
    before = cls._FORCE_CUTLASS
    with pytest.raises(KeyError), bench.use_backend("cutlass"):
        assert cls._FORCE_CUTLASS is True
        raise KeyError
    assert cls._FORCE_CUTLASS is before


# ---------------------------------------------------------------- end to end and the stage


def test_to_semi_structured_refuses_dense_and_swaps_back(monkeypatch):
    model = tiny_llama()
    linears = [m for _, m in bench.block_linears(model)]
    assert len(linears) == 2 * 7 and model.lm_head not in linears
    with pytest.raises(ValueError, match="model.layers.0.self_attn.q_proj"):
        bench.to_semi_structured_(model, linears)
    with torch.no_grad():
        for lin in linears:
            lin.weight.copy_(bench.random_24_weight(*lin.weight.shape, torch.float32, torch.device("cpu"),
                                                    torch.Generator().manual_seed(0)))  # fmt: skip
    monkeypatch.setattr(torch.sparse, "to_sparse_semi_structured", lambda w: w * 1.0)
    originals = bench.to_semi_structured_(model, linears)
    assert all(lin.weight is not o for lin, o in zip(linears, originals, strict=True))
    bench.restore_dense_(linears, originals)
    assert all(lin.weight is o for lin, o in zip(linears, originals, strict=True))


def test_e2e_latency_cpu_dense_only():
    out = bench.e2e_latency(tiny_llama(), batch_sizes=(1, 2), prompt_len=8, gen_len=2, sparse=True, repeats=1)
    assert out["available"] is False and out["sparse"] is False and "CUDA" in out["reason"]
    assert [r["batch"] for r in out["rows"]] == [1, 2]
    assert all(r["prefill_ms"] > 0 and r["decode_ms"] > 0 for r in out["rows"])


def test_run_bench_cpu_tiny_llama():
    model = tiny_llama()
    cfg = {"batch_sizes": [1], "seqlens": [16], "repeats": 2, "warmup": 1, "device": "cpu",
           "e2e": True, "e2e_batch_sizes": [1], "prompt_len": 8, "gen_len": 2}  # fmt: skip
    m = bench.run_bench(model, cfg)
    assert m["bench/available"] is False and "CUDA" in m["bench/reason"]
    assert m["bench/memory/dense_bytes"] == 173_696 and m["bench/memory/compressed_bytes"] == 109_184
    assert m["bench/memory/ratio"] == pytest.approx(109_184 / 173_696)
    for layer in ("q", "kv", "att_out", "ffn1", "ffn2"):
        assert m[f"bench/gemm/{layer}/context_b1_s16/dense_ms"] > 0
        assert m[f"bench/gemm/{layer}/decode_b1/dense_ms"] > 0
    assert m["bench/e2e/b1/prefill_ms"] > 0 and m["bench/e2e/b1/decode_ms"] > 0
    untimed = ("sparse_ms", "sparse_prefill", "sparse_decode", "speedup", "breakeven")
    assert not [k for k in m if any(u in k for u in untimed)]
    assert all(isinstance(v, (int, float, bool, str)) for v in m.values())
    json.dumps(m, allow_nan=False)
    with pytest.raises(ValueError, match="repeat"):
        bench.run_bench(model, {"repeat": 3})


def test_run_bench_memory_counts_the_runs_pattern():
    """A 4:8 model's memory is its 4:8 layout: 3 index bits per kept value, not 2:4's 2, and the
    4:8 check passes where the 2:4 one fails."""
    from esparse.masks import nm_mask

    model = tiny_llama()
    with torch.no_grad():
        for _, lin in bench.block_linears(model):
            lin.weight.mul_(nm_mask(lin.weight.abs(), 4, 8))
    cfg = {"batch_sizes": [1], "seqlens": [8], "repeats": 1, "warmup": 0, "device": "cpu"}
    m24, m48 = bench.run_bench(model, cfg), bench.run_bench(model, cfg, nm=(4, 8))
    assert (m24["bench/memory/pattern"], m48["bench/memory/pattern"]) == ("2:4", "4:8")
    assert m24["bench/memory/nm_sparse"] is False and m48["bench/memory/nm_sparse"] is True
    lin_params = sum(lin.weight.numel() for _, lin in bench.block_linears(model))
    # per dense element: half the value bytes (fp16: 1 byte) plus index bits / 8 per kept value (1/2 kept)
    extra = m48["bench/memory/compressed_bytes"] - m24["bench/memory/compressed_bytes"]
    assert extra == lin_params // 2 * (3 - 2) // 8


def test_device_slug_and_atomic_json(tmp_path):
    assert bench.device_slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    path = store.write_json_atomic(tmp_path / "a" / "b.json", {"x": 1})
    assert json.loads(path.read_text()) == {"x": 1}
    assert [p.name for p in path.parent.iterdir()] == ["b.json"]


def test_prune_memory_by_hand():
    from esparse.bench import prune_memory

    # llama, h=8, inter=16, 2 blocks, 2 heads, vocab 10, untied. Per block: q,k,v,o 4*8*8 = 256,
    # gate/up 2*16*8 = 256, down 8*16 = 128, two RMSNorms 2*8 = 16 -> 656 params = 1312 bytes (fp16).
    # Model: 2*656 + embed 80 + lm_head 80 + final norm 8 = 1480 params = 2960 bytes.
    arch = {"family": "llama", "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2,
            "num_attention_heads": 2, "vocab_size": 10, "tie_word_embeddings": False}  # fmt: skip
    r = prune_memory(arch, nsamples=3, seqlen=5, dtype_bytes=2)
    assert r["block_bytes"] == 1312 and r["model_bytes"] == 2960
    assert r["activation_bytes"] == 2 * 3 * 5 * 8 * 2  # inputs and outputs of the current block
    assert r["hessian_bytes"] == 16 * 16 * 4  # widest input (down_proj: 16), float32
    assert r["on_device"] == 2960 + 480 + 1024
    assert r["offload"] == 1312 + 480 + 1024
    assert r["offload_activations_on_cpu"] == 1312 + 1024 + 2 * 5 * 8 * 2
    assert prune_memory(arch, 3, 5, hessian=False)["hessian_bytes"] == 0


@pytest.mark.slow
def test_bench_offload_measures_three_placements_of_one_config(tiny_model_dir, text_corpus, tmp_path):
    """Three real pruning subprocesses, one config hash, a measured host peak each, no device peak on CPU."""
    import subprocess
    import sys

    from helpers import tiny_overrides

    root = Path(__file__).resolve().parents[1]
    over = tiny_overrides(tiny_model_dir, text_corpus, tmp_path / "r", tmp_path / "c")
    out = tmp_path / "offload.json"
    cmd = [sys.executable, "experiments/bench_offload.py", "--device", "cpu", "--out", str(out), "--", *over]
    subprocess.run(cmd, cwd=root, check=True, capture_output=True, timeout=600)
    rows = json.loads(out.read_text())["rows"]
    assert [r["placement"] for r in rows] == ["on_device", "offload", "offload_activations_on_cpu"]
    assert len({r["config_hash"] for r in rows}) == 1
    assert all(r["host_peak_gb_prune"] > 0.05 and r["device_peak_gb_prune"] is None for r in rows)
    proj = [r["projected_device_bytes"] for r in rows]
    assert proj[0] > proj[1] > proj[2] > 0
    assert not (tmp_path / "r" / "runs").exists()  # the scratch runs never land in the user's results


def _experiment(name: str):
    """experiments/<name>.py as a module (benches import each other from their own folder)."""
    import importlib

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)


def _bench_scaling():
    return _experiment("bench_scaling")


def test_bench_eval_memory_reference_is_the_same_perplexity():
    """The bench's full-logit reference computes what esparse's chunked perplexity computes."""
    from conftest import tiny_llama

    from esparse.evaluation import ppl

    mod = _experiment("bench_eval_memory")
    model = tiny_llama(vocab=96)
    windows = torch.randint(0, 96, (5, 17), generator=torch.Generator().manual_seed(0))
    want = ppl.perplexity(model, windows, batch_size=2, progress=False).value
    assert mod._reference_ppl(model, windows, batch_size=2) == pytest.approx(want, rel=1e-6)
    assert set(mod.CASES) == {(s, p) for s in ("ppl", "zeroshot") for p in ("esparse", "reference")}


def test_bench_scaling_params_of_llama7b_by_hand():
    mod = _bench_scaling()
    arch = {"family": "llama", "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
            "num_attention_heads": 32, "num_key_value_heads": 32, "head_dim": 128, "vocab_size": 32000,
            "tie_word_embeddings": False}  # fmt: skip
    p = mod.params(arch)
    per_block = 4 * 4096 * 4096 + 3 * 4096 * 11008  # q, k, v, o + gate, up, down
    assert p["linear_params"] == 32 * per_block == 6_476_005_376
    assert p["head_params"] == 32000 * 4096 and p["eval_params"] == p["linear_params"] + p["head_params"]


def test_bench_scaling_fit_recovers_per_param_and_per_token_cost():
    mod = _bench_scaling()
    a, b = 2e-8, 3e-12  # seconds per parameter, per parameter x token
    rows = [{"case": case, "linear_params": prm, "calib_tokens": tok, "prune_seconds": a * prm + b * prm * tok}
            for case, prm in (("smollm2_135m", 1e8), ("llama7b_blocks", 4e8)) for tok in (2048, 8192)]  # fmt: skip
    rows.append({"case": "llama7b_blocks_bf16", "linear_params": 4e8, "calib_tokens": 8192, "prune_seconds": 1.0})
    f = mod.fit(rows, "prune_seconds", "linear_params", "calib_tokens")
    assert f["per_param"] == pytest.approx(a, rel=1e-6) and f["per_param_token"] == pytest.approx(b, rel=1e-6)
    assert f["rows"] == 4  # the bf16 row is shown against the fit, not in it
    assert f["ratio_to_fit"]["smollm2_135m 2048"] == pytest.approx(1.0)
    assert f["ratio_to_fit"]["llama7b_blocks_bf16 8192"] == round(1.0 / (a * 4e8 + b * 4e8 * 8192), 3)
    one_size = [r for r in rows if r["calib_tokens"] == 8192]
    assert mod.fit(one_size, "prune_seconds", "linear_params", "calib_tokens") == {}  # cannot separate the terms


def test_bench_default_run_minimal_work_of_smollm2_by_hand():
    """SmolLM2-135M: 106,168,320 block-linear and 28,311,552 head parameters; 32 x 512 tokens each way."""
    mod = _experiment("bench_default_run")
    linear, head, tokens = 106_168_320, 28_311_552, 32 * 512
    assert mod.minimal_tflop(linear, head, tokens, tokens) == pytest.approx(
        (4 * linear * tokens + 2 * (linear + head) * tokens) / 1e12
    )
    arch = {"family": "llama", "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
            "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64, "vocab_size": 49152,
            "tie_word_embeddings": True}  # fmt: skip
    rec = {"config": {"model": {"name": "smollm2_135m"}, "metric": {"name": "esparse"}, "pattern": {"name": "2:4"},
                      "calibration": {"nsamples": 32, "seqlen": 512}},
           "timings": {"load": 1.0, "calibration_data": 2.0, "prune": 60.0, "eval": 20.0},
           "memory": {"prune": {"host_peak_gb": 1.5}, "eval": {"host_peak_gb": 1.3}},
           "details": {"loaded_arch": arch, "ppl_windows": {"w": {"tokens_per_window": 511, "nll": [1.0] * 32}}},
           "_wall": 90.0, "config_hash": "abc"}  # fmt: skip
    row = mod.row_of(rec, gflops=200.0, repeat=0)
    assert row["linear_params"] == linear and row["head_params"] == head and row["eval_tokens"] == tokens
    assert row["achieved_gflops"] == round(row["minimal_tflop"] * 1e3 / 80.0, 1)
    assert row["gemm_fraction"] == round(row["minimal_tflop"] * 1e3 / 80.0 / 200.0, 3)
    assert row["host_peak_gb"] == 1.5 and row["host_peak_gb_load"] is None
    bench.bench_record("default_run", {}, [row], what="checked against the schema")
