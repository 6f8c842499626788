"""A block's statistics passes: feed each shared-input group's linear input to its ChannelStats, and
run the second pass (E-Sparse's entropy histogram) from the inputs kept in the first, or by running
the block again. Kept inputs are the same tensors in the same order, so both give the same bits."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from esparse.stats import ChannelStats, NonFiniteInputs


def stat_hook(st: ChannelStats, name: str, keep: list[torch.Tensor] | None = None):
    """Feed the linear's input to its stats (and, with ``keep``, hold it for the second pass)."""

    def hook(_mod: nn.Module, args: tuple, _out: torch.Tensor) -> None:
        x = args[0]
        try:
            st.update(x.detach())  # checks the input is finite
        except NonFiniteInputs as e:
            raise NonFiniteInputs(f"non-finite calibration activations at the input of {name}: {e}") from None
        if keep is not None and st.needs_second_pass:
            keep.append(x.detach())

    return hook


def inputs_bytes(inps: list[torch.Tensor], groups: list[list[tuple[str, nn.Linear]]]) -> int:
    """Bytes of one block's linear inputs over every calibration token (one tensor per group)."""
    tokens = sum(x[..., 0].numel() for x in inps)
    return tokens * sum(g[0][1].in_features for g in groups) * (inps[0].element_size() if inps else 0)


def second_pass(
    stats: list[ChannelStats], kept: list[list[torch.Tensor]] | None, hooks, rerun: Callable[[], object]
) -> str:
    """The histogram pass: replay the ``kept`` inputs, or ``rerun`` the block (its hooks feed the
    stats); then finalize. Returns ``replayed`` or ``rerun``."""
    if kept is not None:
        for h in hooks:  # the stats are fed by hand now
            h.remove()
        for st, xs in zip(stats, kept, strict=True):
            for x in xs if st.needs_second_pass else ():
                st.update(x)
    else:
        rerun()
    for st in stats:
        st.finalize()
    return "replayed" if kept is not None else "rerun"
