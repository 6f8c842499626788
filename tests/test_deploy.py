"""The deployed (physically permuted) model computes what the masked model computes."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_llama, tiny_opt

from esparse.checkpoint import load_pruned, save_pruned
from esparse.deploy import PermutedLinear, deploy, deployed_weights
from esparse.masks import Pattern, check_weights
from esparse.models import get_adapter
from esparse.pruning import PruneSpec, prune_model


def _pruned(make, shuffle="ria_cp_lsa", vocab=128, share="group"):
    model = make()
    calib = torch.randint(0, vocab, (4, 16), generator=torch.Generator().manual_seed(0))
    spec = PruneSpec("wanda", Pattern.parse("2:4"), shuffle=shuffle, share=share)
    return model, prune_model(model, calib, spec, progress=False)


def _deploy_and_compare(model, perms) -> dict[str, str]:
    """Deploy in place; the logits must equal the masked model's. Returns how each linear was stored."""
    ids = torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        how = deploy(model, perms)
        out = model(input_ids=ids).logits
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    assert check_weights(deployed_weights(model), "2:4").ok
    return how


@pytest.mark.parametrize("shuffle", ["ria_cp_lsa", "lsa_relabel"])
@pytest.mark.parametrize("make", [tiny_llama, tiny_opt], ids=["llama", "opt"])
def test_deployed_logits_equal_masked(make, shuffle):
    model, report = _pruned(make, shuffle)
    perms = report.layer_permutations()
    assert perms  # the shuffle really permuted something
    # in original order the pattern is generally broken; in stored (deployed) order it is exact
    how = _deploy_and_compare(model, perms)
    assert set(how.values()) == {"folded", "index_select"}
    fold_layer = "mlp.down_proj" if make is tiny_llama else "fc2"
    assert all(v == "folded" for k, v in how.items() if k.endswith(fold_layer))
    adapter = get_adapter(model)
    o_proj = "self_attn.o_proj" if make is tiny_llama else "self_attn.out_proj"
    assert isinstance(adapter.blocks(model)[0].get_submodule(o_proj), PermutedLinear)


def test_pattern_holds_only_in_permuted_order():
    model, report = _pruned(tiny_llama)
    adapter = get_adapter(model)
    plain = check_weights(((n, lin.weight) for n, lin in adapter.named_linears(model)), "2:4")
    from esparse.masks import check

    assert check(model, "2:4", permutations=report.layer_permutations()).ok
    assert not plain.ok  # proves the permutation is not the identity in effect


def test_save_load_roundtrip_and_tamper(tmp_path, tokenizer):
    model, report = _pruned(lambda: tiny_llama(vocab=len(tokenizer)), vocab=len(tokenizer))
    cfg = {
        "pattern": {"name": "2:4", "kind": "nm", "n": 2, "m": 4},
        "metric": {"name": "wanda"},
        "shuffle": {"name": "ria_cp_lsa"},
        "model": {"name": "tiny"},
    }
    save_pruned(model, tokenizer, tmp_path / "ckpt", cfg, "abc123", report.layer_permutations())
    loaded, _, sidecar = load_pruned(tmp_path / "ckpt")
    ids = torch.randint(0, len(tokenizer), (1, 10))
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, model(input_ids=ids).logits, rtol=0, atol=1e-6)
    assert sidecar["config_hash"] == "abc123"
    deployed, _, _ = load_pruned(tmp_path / "ckpt", deploy=True)
    with torch.no_grad():
        torch.testing.assert_close(deployed(input_ids=ids).logits, model(input_ids=ids).logits, rtol=0, atol=1e-5)
    assert check_weights(deployed_weights(deployed), "2:4").ok

    # one extra nonzero where the pattern demands a zero: the check names the layer
    from safetensors.torch import load_file, save_file

    f = tmp_path / "ckpt" / "model.safetensors"
    state = load_file(f)
    name = "model.layers.1.mlp.up_proj.weight"
    w = state[name]
    zero = (w == 0).nonzero()[0]
    w[zero[0], zero[1]] = 1.0
    save_file(state, f, metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"model\.layers\.1\.mlp\.up_proj"):
        load_pruned(tmp_path / "ckpt")


@pytest.mark.parametrize("make", [tiny_llama, tiny_opt], ids=["llama", "opt"])
def test_one_permutation_per_linear_deploys_with_equal_logits(make):
    """shuffle.share=linear (RIA's code): q, k and v each get their own input permutation, so they
    cannot share one folded order; each gathers its own input and the logits stay those of the mask."""
    model, report = _pruned(make, share="linear")
    perms = report.layer_permutations()
    q, k = "self_attn.q_proj", "self_attn.k_proj"  # the same names in both families
    assert any(perms[f"{p}.{q}"] != perms[f"{p}.{k}"] for p in {n.rsplit(".self_attn", 1)[0] for n in perms if q in n})
    how = _deploy_and_compare(model, perms)
    assert all(v == "index_select" for k_, v in how.items() if q in k_)
