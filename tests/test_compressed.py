"""Compressed N:M checkpoints restore the dense-with-zeros weights exactly."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_llama, tiny_opt

from esparse.compressed import compress_nm, decompress_nm, load_compressed, save_compressed
from esparse.masks import Pattern
from esparse.models import get_adapter
from esparse.pruning import PruneSpec, prune_model


def test_compress_small_matrix_by_hand():
    # 2:4 = 2 zeros in every 4; row 1's second group keeps a weight that is itself 0
    w = torch.tensor([[0.0, 1.5, 0.0, -2.0, 3.0, 0.0, 0.0, 4.0], [5.0, 0.0, 6.0, 0.0, 0.0, 0.0, 7.0, 0.0]])
    values, index = compress_nm(w, 2, 4)
    assert values.tolist() == [[1.5, -2.0, 3.0, 4.0], [5.0, 6.0, 0.0, 7.0]]
    assert index.dtype == torch.uint8
    assert index.tolist() == [[1, 3, 0, 3], [0, 2, 0, 2]]
    assert torch.equal(decompress_nm(values, index, 2, 4), w)


def test_compress_rejects_a_dense_group_naming_the_layer():
    w = torch.tensor([[1.0, 2.0, 3.0, 0.0]])
    with pytest.raises(ValueError, match=r"blocks\.0\.q.*row 0, group 0"):
        compress_nm(w, 2, 4, name="blocks.0.q")


@pytest.mark.parametrize("n,m", [(2, 4), (4, 8), (1, 4), (3, 4)])
def test_roundtrip_random_nm_with_permutation(n, m):
    from esparse.masks import nm_mask

    g = torch.Generator().manual_seed(n * 10 + m)
    w = torch.randn(6, 4 * m, generator=g)
    perm = torch.randperm(4 * m, generator=g)
    pruned = torch.empty_like(w)
    pruned[:, perm] = w[:, perm] * nm_mask(w[:, perm].abs(), n, m)
    values, index = compress_nm(pruned, n, m, perm)
    assert values.shape == (6, 4 * (m - n))
    assert torch.equal(decompress_nm(values, index, n, m, perm), pruned)


@pytest.mark.parametrize("make", [tiny_llama, tiny_opt], ids=["llama", "opt"])
def test_save_load_same_logits_and_smaller_linears(make, tmp_path):
    model = make()
    calib = torch.randint(0, 128, (4, 16), generator=torch.Generator().manual_seed(0))
    spec = PruneSpec("wanda", Pattern.parse("2:4"), shuffle="ria_cp_lsa")
    perms = prune_model(model, calib, spec, progress=False).layer_permutations()
    info = save_compressed(model, None, tmp_path / "c", "2:4", perms)
    # fp32 values at half the count + one byte of index per value: 0.5 + 0.5/4 of the dense bytes
    assert info["linear_stored_bytes"] == info["linear_dense_bytes"] * 5 // 8
    loaded, _, sidecar = load_compressed(tmp_path / "c")
    assert sidecar["permutations"] == perms
    pairs = zip(get_adapter(model).named_linears(model), get_adapter(loaded).named_linears(loaded), strict=True)
    for (name, a), (_, b) in pairs:
        assert torch.equal(a.weight, b.weight), name
    ids = torch.randint(0, 128, (2, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, model(input_ids=ids).logits, rtol=0, atol=0)


def test_export_of_an_unpruned_model_fails_before_writing(tmp_path):
    with pytest.raises(ValueError, match="not 2:4 sparse"):
        save_compressed(tiny_llama(), None, tmp_path / "c", "2:4")
    assert not (tmp_path / "c").exists()
