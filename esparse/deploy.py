"""Deploy a channel-permuted N:M model for real: weights stored in permuted order.

Pruning under an input permutation ``p`` leaves ``W[:, p]`` N:M-contiguous, which is what a
2:4 kernel needs. A layer then computes ``x[..., p] @ W[:, p].T`` — the same product. Where the
input is another linear's output through an element-wise op (gate/up → down, fc1 → fc2), the
gather is folded for free into the producer's output rows; elsewhere (q/k/v, gate/up, o_proj —
o_proj's input mixes heads, so no fold is exact) an explicit ``index_select`` runs first.

On disk the pruned model stays in the original channel order (plain transformers loads it
correctly); the sidecar carries the permutations and :func:`deploy` rebuilds this form in memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from esparse.models.adapters import Adapter, _get_attr, get_adapter


class PermutedLinear(nn.Module):
    """``y = x[..., perm] @ weight.T + bias`` with ``weight`` already stored column-permuted."""

    def __init__(self, linear: nn.Linear, perm: torch.Tensor):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("perm", perm.to(device=linear.weight.device, dtype=torch.long))
        self.weight = nn.Parameter(linear.weight.data[:, self.perm].contiguous(), requires_grad=False)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.data.clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.index_select(-1, self.perm), self.weight, self.bias)


def _set(block: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, attr = path.rpartition(".")
    setattr(_get_attr(block, parent) if parent else block, attr, module)


@torch.no_grad()
def deploy(
    model: nn.Module, permutations: Mapping[str, Sequence[int] | torch.Tensor], adapter: Adapter | None = None
) -> dict[str, str]:
    """Rewrite ``model`` in place so every permuted linear stores ``W[:, p]``; returns how each was done.

    ``permutations`` maps a linear's full module name to its input permutation (as recorded by
    pruning; linears of one shared-input group carry the same one).
    """
    adapter = adapter or get_adapter(model)
    how: dict[str, str] = {}
    for i, block in enumerate(adapter.blocks(model)):
        prefix = f"{adapter.blocks_path}.{i}"
        groups = adapter.groups
        folded: set[int] = set()
        for producer, consumer in adapter.folds:
            names = [f"{prefix}.{p}" for p in groups[consumer]]
            if not all(n in permutations for n in names):
                continue
            if any(list(map(int, permutations[n])) != list(map(int, permutations[names[0]])) for n in names):
                continue  # one permutation per linear (shuffle.share=linear): each gathers its own input
            perm = torch.as_tensor(permutations[names[0]], dtype=torch.long)
            for path in groups[producer]:  # producer rows: output channel k becomes perm[k]
                lin = _get_attr(block, path)
                lin.weight.data = lin.weight.data[perm].contiguous()
                if lin.bias is not None:
                    lin.bias.data = lin.bias.data[perm].contiguous()
            for path in groups[consumer]:
                lin = _get_attr(block, path)
                lin.weight.data = lin.weight.data[:, perm].contiguous()
                how[f"{prefix}.{path}"] = "folded"
            folded.add(consumer)
        for gi, group in enumerate(groups):
            if gi in folded:
                continue
            for path in group:
                name = f"{prefix}.{path}"
                if name in permutations:
                    perm = torch.as_tensor(permutations[name], dtype=torch.long)
                    _set(block, path, PermutedLinear(_get_attr(block, path), perm))
                    how[name] = "index_select"
    return how


def deployed_weights(model: nn.Module, adapter: Adapter | None = None):
    """(name, stored weight) of every prunable linear, as the kernel would see it."""
    adapter = adapter or get_adapter(model)
    for i, block in enumerate(adapter.blocks(model)):
        for group in adapter.groups:
            for path in group:
                yield f"{adapter.blocks_path}.{i}.{path}", _get_attr(block, path).weight
