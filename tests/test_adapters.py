"""Adapters: running blocks one by one with captured kwargs reproduces the model's own forward."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_llama, tiny_opt

from esparse.models import block_output, capture_block_kwargs, get_adapter


@pytest.mark.parametrize("make", [tiny_llama, tiny_opt], ids=["llama", "opt"])
def test_blockwise_forward_equals_full_forward(make):
    model = make()
    adapter = get_adapter(model)
    ids = torch.randint(0, 128, (3, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        hidden, per_block = capture_block_kwargs(model, adapter, ids)
        for i, block in enumerate(adapter.blocks(model)):
            hidden = block_output(block(hidden, **per_block[i]))
        # reference: the hidden state the model feeds its final norm
        captured = {}
        final_norm = model.model.norm if adapter.family == "llama" else model.model.decoder.final_layer_norm
        h = final_norm.register_forward_hook(lambda m, a, o: captured.setdefault("x", a[0]))
        model(input_ids=ids, use_cache=False)
        h.remove()
    torch.testing.assert_close(hidden, captured["x"], rtol=0, atol=1e-5)


def test_capture_restores_blocks():
    model = tiny_llama()
    adapter = get_adapter(model)
    before = list(adapter.blocks(model))
    capture_block_kwargs(model, adapter, torch.zeros(1, 8, dtype=torch.long))
    assert list(adapter.blocks(model)) == before


def test_groups_share_inputs():
    for make, fam, n_linears in [(tiny_llama, "llama", 7), (tiny_opt, "opt", 6)]:
        model = make()
        adapter = get_adapter(model)
        assert adapter.family == fam
        groups = adapter.linear_groups(adapter.blocks(model)[0])
        assert [len(g) for g in groups] == ([3, 1, 2, 1] if fam == "llama" else [3, 1, 1, 1])
        assert sum(1 for _ in adapter.named_linears(model)) == 2 * n_linears
        for g in groups:  # linears of one group read the same input width
            assert len({lin.in_features for _, lin in g}) == 1


def test_unknown_family_is_a_clear_error():
    model = tiny_llama()
    model.config.model_type = "mystery"
    with pytest.raises(ValueError, match="mystery"):
        get_adapter(model)
