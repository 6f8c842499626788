"""Offload (model on the CPU, one block at a time on the device) changes where, never what."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_llama, tiny_opt
from helpers import compose_cfg, tiny_overrides

from esparse.masks import Pattern
from esparse.models import get_adapter
from esparse.models.placement import stream_blocks, to_device
from esparse.pruning import PruneSpec, prune_model
from esparse.run.config import ConfigError, normalize, validate


def _spy_moves(model) -> list[tuple[int, str]]:
    """Record every block.to(...) call as (block index, device string)."""
    calls: list[tuple[int, str]] = []
    for i, block in enumerate(get_adapter(model).blocks(model)):
        orig = block.to

        def to(*args, _i=i, _orig=orig, **kw):
            calls.append((_i, str(args[0] if args else kw.get("device"))))
            return _orig(*args, **kw)

        block.to = to
    return calls


@pytest.mark.parametrize("make", [tiny_llama, tiny_opt], ids=["llama", "opt"])
@pytest.mark.parametrize("metric", ["wanda", "sparsegpt"])
def test_offloaded_pruning_is_bit_identical_and_moves_each_block_once(make, metric):
    calib = torch.randint(0, 128, (4, 16), generator=torch.Generator().manual_seed(0))
    spec = PruneSpec(metric, Pattern.parse("2:4"), shuffle="ria_cp")
    ref, off = make(), make()
    off.load_state_dict(ref.state_dict())
    prune_model(ref, calib, spec, progress=False, batch_size=2)
    calls = _spy_moves(off)
    prune_model(off, calib, spec, progress=False, batch_size=2, offload=True, store="cpu")
    for a, b in zip(ref.state_dict().values(), off.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    nblocks = len(get_adapter(off).blocks(off))
    assert calls == [(i, dev) for i in range(nblocks) for dev in ("cpu", "cpu")]  # to device, then home


def test_stream_blocks_same_logits_and_leaves_no_hooks():
    model = tiny_llama()
    adapter = get_adapter(model)
    ids = torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        calls = _spy_moves(model)
        with stream_blocks(model, adapter, "cpu"):
            out = model(input_ids=ids).logits
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    assert len(calls) == 2 * len(adapter.blocks(model))  # each block in and out once per forward
    assert all(not b._forward_pre_hooks and not b._forward_hooks for b in adapter.blocks(model))


def test_to_device_walks_nested_kwargs():
    t = torch.ones(2)
    moved = to_device({"a": (t, [t, 3]), "b": None}, "cpu")
    assert moved["a"][1][1] == 3 and moved["b"] is None and torch.equal(moved["a"][0], t)


def test_offload_with_device_map_and_bad_activations_on_are_rejected():
    with pytest.raises(ConfigError) as e:
        validate(normalize(compose_cfg(["offload=true", "device_map=auto", "activations_on=gpu"])))
    assert "device_map: 'auto'" in str(e.value) and "activations_on: 'gpu'" in str(e.value)


def test_pipeline_offload_gives_the_same_numbers_and_the_same_record(tiny_model_dir, text_corpus, tmp_path):
    from esparse.run.pipeline import run

    ovs = tiny_overrides(tiny_model_dir, text_corpus, tmp_path / "results", tmp_path / "cache")
    plain = run(compose_cfg(ovs + ["metric=wanda", "pattern=2:4"]))
    off = run(compose_cfg(ovs + ["metric=wanda", "pattern=2:4", "offload=true", "activations_on=cpu", "force=true"]))
    assert off["config_hash"] == plain["config_hash"]  # where it ran is not what it computed
    for key in ("ppl/wikitext2", "dense/ppl/wikitext2", "permutation/retained_after"):
        assert off["metrics"][key] == plain["metrics"][key], key
