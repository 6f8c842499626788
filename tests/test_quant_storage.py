"""Quantized N:M checkpoints: ``save_format=nm`` after ``quant=rtn|gptq|awq`` stores integer codes on
the run's grid and loads back the evaluated fake-quant weights bit for bit (esparse/compressed.py,
docs/quant.md)."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_llama
from helpers import compose_cfg, tiny_overrides

from esparse.compressed import (
    compress_nm,
    decode_codes,
    decompress_nm,
    encode_codes,
    load_compressed,
    pack_codes,
    save_compressed,
    unpack_codes,
)
from esparse.masks import Pattern, nm_mask
from esparse.models import get_adapter
from esparse.pruning import PruneSpec, prune_model
from esparse.quant import awq_grid, gptq_grid, rtn_grid

BITS = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(BITS[t.dtype])


def _layer(rows=8, cols=256, seed=0):
    """A 2:4-masked layer with one kept weight small enough to round to 0, and a Hessian."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g)
    mask = nm_mask(torch.rand(rows, cols, generator=g), 2, 4)
    col = int(mask[0].nonzero()[0])
    w[0, col] = 1e-6  # kept, and far below half a grid step: its code is the zero point
    x = torch.randn(512, cols, generator=g)
    return w, mask, (col,), 2 * x.T @ x / 512, x.abs().mean(0)


def _quantize(method, w, mask, hessian, absmean, bits, gs, **kw):
    if method == "rtn":
        return rtn_grid(w, bits, gs, mask)
    if method == "gptq":
        return gptq_grid(w, hessian, bits, gs, mask, **kw)
    return awq_grid(w, absmean, hessian, bits, gs, mask=mask)


def _round_trip(q, grid, perm=None, dtype=torch.float32):
    """Stored (values → codes → packed) and back; the grid goes to the stored column order as in
    save_compressed."""
    q = q.to(dtype)
    values, index = compress_nm(q, 2, 4, perm)
    g = grid if perm is None else grid.columns(perm)
    codes = encode_codes(values, index, 2, 4, g)
    assert codes.dtype == torch.uint8 and int(codes.max()) < 2**grid.bits
    back = unpack_codes(pack_codes(codes, grid.bits), grid.bits, index.shape[1])
    assert torch.equal(back, codes)
    return decompress_nm(decode_codes(back, index, 2, 4, g, dtype), index, 2, 4, perm)


@pytest.mark.parametrize("gs", [128, -1])
@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("method", ["rtn", "gptq", "awq"])
def test_codes_restore_the_fake_quant_weights_bit_for_bit(method, bits, gs):
    w, mask, (col,), hessian, absmean = _layer()
    q, grid = _quantize(method, w, mask, hessian, absmean, bits, gs)
    assert grid.scale.shape == (8, 2 if gs == 128 else 1) and grid.bits == bits
    assert (grid.col_scale is not None) == (method == "awq")
    assert q[0, col] == 0 and mask[0, col]  # the kept weight that rounds to 0 is stored as its zero code
    assert bool((q[~mask] == 0).all())
    for dtype in (torch.float32, torch.float16, torch.bfloat16):  # the model's dtype, cast from float32
        assert torch.equal(_bits(_round_trip(q, grid, dtype=dtype)), _bits(q.to(dtype)))


def test_act_order_groups_and_a_permutation_are_followed():
    """GPTQ's act_order makes the groups non-contiguous; a permuted checkpoint reorders them again."""
    w, mask, _, hessian, absmean = _layer(seed=1)
    q, grid = _quantize("gptq", w, mask, hessian, absmean, 4, 128, act_order=True)
    assert sorted(grid.group.bincount().tolist()) == [128, 128] and not torch.equal(grid.group, grid.group.sort()[0])
    perm = torch.randperm(256, generator=torch.Generator().manual_seed(2))
    permuted_mask = torch.empty_like(mask)
    permuted_mask[:, perm] = nm_mask(torch.rand(8, 256, generator=torch.Generator().manual_seed(3)), 2, 4)
    q2, grid2 = rtn_grid(w, 4, 128, permuted_mask)  # a mask that is 2:4 only in the permuted order
    assert torch.equal(_bits(_round_trip(q, grid)), _bits(q))
    assert torch.equal(_bits(_round_trip(q2, grid2, perm)), _bits(q2))


def test_pack_two_4_bit_codes_per_byte_by_hand():
    codes = torch.tensor([[1, 2, 15], [0, 7, 9]], dtype=torch.uint8)
    packed = pack_codes(codes, 4)  # even column low nibble, odd high, odd count padded
    assert packed.tolist() == [[0x21, 0x0F], [0x70, 0x09]]
    assert torch.equal(unpack_codes(packed, 4, 3), codes)
    assert pack_codes(codes, 8) is not None and torch.equal(unpack_codes(pack_codes(codes, 8), 8, 3), codes)


def test_a_weight_off_its_grid_is_refused_naming_the_layer():
    w, mask, _, hessian, absmean = _layer()
    q, grid = rtn_grid(w, 4, 128, mask)
    q[mask] += 1e-3
    values, index = compress_nm(q, 2, 4)
    with pytest.raises(ValueError, match=r"blocks\.0\.q: \d+ kept weights are not on their 4-bit grid"):
        encode_codes(values, index, 2, 4, grid, "blocks.0.q")


def _pruned(quant, order="prune_first", bits=4, group_size=16):
    model = tiny_llama()
    calib = torch.randint(0, 128, (4, 16), generator=torch.Generator().manual_seed(0))
    kw = {"bits": bits, "group_size": group_size, "order": order}
    spec = PruneSpec("wanda", Pattern.parse("2:4"), shuffle="ria_cp_lsa", quant=quant, quant_kwargs=kw)
    report = prune_model(model, calib, spec, progress=False)
    return model, report, {"name": quant, **kw}


@pytest.mark.parametrize(
    ("quant", "order", "bits", "group_size"),
    [("rtn", "prune_first", 4, 16), ("gptq", "prune_first", 8, -1), ("awq", "prune_first", 4, 16),
     ("rtn", "quantize_first", 4, 16)],
)  # fmt: skip
def test_save_load_quantized_model_same_weights_and_logits(quant, order, bits, group_size, tmp_path):
    model, report, section = _pruned(quant, order, bits, group_size)
    perms = report.layer_permutations()
    assert perms and set(report.grids) == {n for n, _ in get_adapter(model).named_linears(model)}
    info = save_compressed(model, None, tmp_path / "q", "2:4", perms, quant=section, grids=report.grids)
    plain = save_compressed(model, None, tmp_path / "p", "2:4", perms)  # the same weights as floats
    assert info["linear_stored_bytes"] < plain["linear_stored_bytes"] * (0.6 if bits == 4 else 0.8)
    loaded, _, sidecar = load_compressed(tmp_path / "q")
    assert sidecar["quant"] == {**section, "form": "integer codes", "dtype": "float32"}
    pairs = zip(get_adapter(model).named_linears(model), get_adapter(loaded).named_linears(loaded), strict=True)
    for (name, a), (_, b) in pairs:  # + 0.0: a pruned weight that was -0.0 (w · mask) loads as +0.0
        assert torch.equal(_bits(a.weight.data + 0.0), _bits(b.weight.data)), name
    ids = torch.randint(0, 128, (2, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, model(input_ids=ids).logits, rtol=0, atol=0)


def test_an_unquantized_save_keeps_the_float_format_and_a_missing_grid_fails_before_writing(tmp_path):
    from safetensors import safe_open

    model, report, section = _pruned("rtn")
    save_compressed(model, None, tmp_path / "p", "2:4", report.layer_permutations(), quant={"name": "none"})
    with safe_open(str(tmp_path / "p" / "esparse-nm.safetensors"), "pt") as f:
        assert f.metadata() == {"format": "esparse-nm", "n": "2", "m": "4"}
        names = f.keys()
    assert {k.rpartition(".")[2] for k in names if ".nm_" in k} == {"nm_values", "nm_index"}
    assert "quant" not in load_compressed(tmp_path / "p")[2]
    with pytest.raises(ValueError, match=r"quant=rtn: no quantization grid for \['model\.layers\.0"):
        save_compressed(model, None, tmp_path / "q", "2:4", report.layer_permutations(), quant=section, grids={})
    assert not (tmp_path / "q").exists()


def test_a_run_saves_codes_and_a_resumed_run_saves_the_same(tiny_model_dir, text_corpus, tmp_path, monkeypatch):
    """The pipeline passes the run's grids; after a failed save the resume copy carries them."""
    import esparse.compressed as compressed
    from esparse.run.pipeline import run

    def cfg(root):
        extra = ["metric=wanda", "pattern=2:4", "shuffle=ria_cp", "quant=awq", "quant.group_size=16"]
        over = tiny_overrides(tiny_model_dir, text_corpus, root / "results", root / "cache")
        return compose_cfg([*over, *extra, f"save_dir={root / 'nm'}", "save_format=nm"])

    assert run(cfg(tmp_path / "ref"))["status"] == "done"
    real = compressed.save_compressed
    monkeypatch.setattr(compressed, "save_compressed", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        run(cfg(tmp_path / "run"))
    monkeypatch.setattr(compressed, "save_compressed", real)
    rec = run(cfg(tmp_path / "run"))
    assert rec["status"] == "done" and rec["resumed"]["kept"] == ["prune"]
    ref, _, side = load_compressed(tmp_path / "ref" / "nm")
    again, _, _ = load_compressed(tmp_path / "run" / "nm")
    assert side["quant"]["name"] == "awq" and side["quant"]["group_size"] == 16
    for (name, a), (_, b) in zip(ref.named_parameters(), again.named_parameters(), strict=True):
        assert torch.equal(a, b), name
