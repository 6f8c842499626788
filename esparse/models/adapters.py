"""Model-family adapters: where the decoder blocks are and which linears share an input.

The pruning loop never looks at a model's name. It asks the adapter registered for the
model's ``config.model_type`` (the type transformers itself dispatches on) for the block list
and the groups of linears that read the same input tensor (those share one set of activation
statistics and, when channels are shuffled, one input permutation).

How to *call* a block alone is not hard-coded per family: :func:`capture_block_kwargs` swaps
every block for a recorder, runs the model's own forward once on embeddings only, and keeps the
exact keyword arguments (masks, rotary position embeddings, per-layer-type masks for Gemma 3)
that the installed transformers version passes to each block.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

#: what a shared-input group is in a block: attention input (q/k/v) and output (o_proj/out_proj),
#: MLP input (gate/up, fc1) and output (down_proj, fc2)
ROLES = ("attn_in", "attn_out", "mlp_in", "mlp_out")


@dataclass(frozen=True)
class Adapter:
    """Static description of one model family.

    ``groups`` lists, in execution order inside a block, tuples of linear-module paths (relative
    to the block) that consume the same input. ``folds`` pairs a producer group with the consumer
    group whose input channels are exactly the producer's output rows (possibly through an
    element-wise op), so an input permutation of the consumer can be folded into the producer's
    rows instead of an explicit gather. ``roles`` names what each group is in the block (one of
    :data:`ROLES`), for the methods that treat linears by role (RIA's official community counts)
    without reading module names.
    """

    family: str
    blocks_path: str
    groups: tuple[tuple[str, ...], ...]
    folds: tuple[tuple[int, int], ...] = field(default=())
    roles: tuple[str, ...] = ROLES

    def __post_init__(self) -> None:
        if len(self.roles) != len(self.groups) or not set(self.roles) <= set(ROLES):
            raise ValueError(f"{self.family} adapter: roles {self.roles} must name each of the {len(self.groups)} "
                             f"groups with one of {ROLES}")  # fmt: skip

    def blocks(self, model: nn.Module) -> nn.ModuleList:
        return _get_attr(model, self.blocks_path)

    def set_blocks(self, model: nn.Module, blocks: nn.ModuleList) -> None:
        parent_path, _, attr = self.blocks_path.rpartition(".")
        setattr(_get_attr(model, parent_path) if parent_path else model, attr, blocks)

    def linear_groups(self, block: nn.Module) -> list[list[tuple[str, nn.Linear]]]:
        """The block's prunable linears, grouped by shared input, in execution order."""
        out = []
        for group in self.groups:
            mods = [(path, _get_attr(block, path)) for path in group]
            for path, mod in mods:
                if not isinstance(mod, nn.Linear):
                    raise TypeError(f"{self.family} adapter: {path} is {type(mod).__name__}, not nn.Linear")
            out.append(mods)
        return out

    def named_linears(self, model: nn.Module) -> Iterator[tuple[str, nn.Linear]]:
        """Every prunable linear of the model with its full module path."""
        for i, block in enumerate(self.blocks(model)):
            for group in self.linear_groups(block):
                for path, mod in group:
                    yield f"{self.blocks_path}.{i}.{path}", mod


def _get_attr(obj: object, path: str):
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


_LLAMA_GROUPS = (
    ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    ("self_attn.o_proj",),
    ("mlp.gate_proj", "mlp.up_proj"),
    ("mlp.down_proj",),
)
_OPT_GROUPS = (
    ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    ("self_attn.out_proj",),
    ("fc1",),
    ("fc2",),
)

LLAMA = Adapter("llama", "model.layers", _LLAMA_GROUPS, folds=((2, 3),))
OPT = Adapter("opt", "model.decoder.layers", _OPT_GROUPS, folds=((2, 3),))
GEMMA3 = Adapter("gemma3", "model.layers", _LLAMA_GROUPS, folds=((2, 3),))

#: keyed by ``config.model_type`` as declared by the checkpoint's config.json
ADAPTERS: dict[str, Adapter] = {
    "llama": LLAMA,
    "mistral": LLAMA,
    "qwen2": LLAMA,
    "qwen3": LLAMA,
    "gemma3_text": GEMMA3,
    "opt": OPT,
}


def get_adapter(model: nn.Module) -> Adapter:
    model_type = getattr(model.config, "model_type", None)
    try:
        return ADAPTERS[model_type]
    except KeyError:
        raise ValueError(
            f"no adapter for model_type={model_type!r}; known: {sorted(ADAPTERS)}. "
            "Add one to esparse/models/adapters.py (blocks path + linear groups)."
        ) from None


class _StopForward(Exception):
    pass


class _Recorder(nn.Module):
    """Stands in for a block: records its call and passes the hidden states through."""

    def __init__(self, index: int, store: dict, stop_after: int):
        super().__init__()
        self.index, self.store, self.stop_after = index, store, stop_after

    def forward(self, hidden_states, *args, **kwargs):
        if self.index == 0:
            self.store["hidden"] = hidden_states
        self.store.setdefault("kwargs", {})[self.index] = kwargs
        if self.index >= self.stop_after:
            raise _StopForward
        return hidden_states


@torch.no_grad()
def capture_block_kwargs(
    model: nn.Module, adapter: Adapter, input_ids: torch.Tensor, all_blocks: bool = True
) -> tuple[torch.Tensor, list[dict]]:
    """Run the model's own forward with every block replaced by a recorder.

    Returns block 0's input hidden states and, per block, the keyword arguments the model passes
    to it (attention masks, position embeddings, ...). No block is computed, so this costs one
    embedding lookup. With ``all_blocks=False`` the forward stops at block 0 and block 0's kwargs
    are reused for all blocks (enough for families whose blocks all get the same arguments).
    """
    blocks = adapter.blocks(model)
    store: dict = {}
    last = len(blocks) - 1 if all_blocks else 0  # stop there: the final norm and lm_head are not needed
    recorders = nn.ModuleList(_Recorder(i, store, last) for i in range(len(blocks)))
    adapter.set_blocks(model, recorders)
    try:
        model(input_ids=input_ids, use_cache=False)
    except _StopForward:
        pass
    finally:
        adapter.set_blocks(model, blocks)
    kw = store["kwargs"]
    per_block = [_drop_cache(kw.get(i, kw[0])) for i in range(len(blocks))]
    return store["hidden"], per_block


def _drop_cache(kwargs: dict) -> dict:
    return {k: v for k, v in kwargs.items() if k not in ("past_key_values", "past_key_value", "use_cache")}


def block_output(out) -> torch.Tensor:
    """Blocks return a tensor in transformers 5.x; older versions returned a tuple."""
    return out[0] if isinstance(out, tuple) else out
