"""Where weights and activations live while a model too big for the accelerator is pruned or
evaluated: the model stays on the CPU ("home") and one decoder block at a time visits the device.

Nothing here changes what is computed, only where; so the offload keys are not part of a record's
config hash, and the tests check bit-equality with the plain path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from esparse.models.adapters import Adapter


def to_device(obj: Any, device: torch.device | str) -> Any:
    """``obj`` with every tensor inside (tuples, lists, dicts; e.g. a block's kwargs) on ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, tuple):
        return tuple(to_device(v, device) for v in obj)
    if isinstance(obj, list):
        return [to_device(v, device) for v in obj]
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    return obj


def module_device(module: nn.Module) -> torch.device:
    """Device of the module's first parameter (or buffer); CPU for an empty module."""
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


def non_blocks_to(model: nn.Module, adapter: Adapter, device: torch.device | str) -> None:
    """Move everything but the decoder blocks (embeddings, rotary tables, final norm, lm_head)."""
    blocks = adapter.blocks(model)
    adapter.set_blocks(model, nn.ModuleList())
    try:
        model.to(device)
    finally:
        adapter.set_blocks(model, blocks)


@contextmanager
def stream_blocks(model: nn.Module, adapter: Adapter, device: torch.device | str) -> Iterator[None]:
    """Run ``model``'s own forward with its blocks streamed: the non-block modules sit on ``device``
    for the duration, and each block is moved there just before it runs and home right after. Peak
    accelerator memory is one block plus the embeddings and activations, at the price of one
    host-to-device copy of every block per forward."""
    blocks = adapter.blocks(model)
    home = module_device(blocks[0]) if len(blocks) else torch.device("cpu")

    def arrive(mod: nn.Module, _args: Any) -> None:
        mod.to(device)

    def leave(mod: nn.Module, _args: Any, _out: Any) -> None:
        mod.to(home)

    handles = []
    for block in blocks:
        handles += [block.register_forward_pre_hook(arrive), block.register_forward_hook(leave)]
    non_blocks_to(model, adapter, device)
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        non_blocks_to(model, adapter, home)
