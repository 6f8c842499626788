"""Compressed N:M checkpoints: each pruned linear stored as its kept values plus their in-group
positions (the metadata a 2:4 kernel keeps), everything else as is; loading restores the
dense-with-zeros weights bit for bit.

Layout of ``<dir>/esparse-nm.safetensors``: ``<linear>.nm_values`` (out, in/m·(m−n)) and
``<linear>.nm_index`` (uint8, same shape, position 0..m−1 inside each group of m, in the layer's
permuted order when it has a permutation), and every other tensor of the state dict under its own
name. ``config.json`` and the tokenizer sit beside it, plus the usual ``esparse.json`` sidecar with
the pattern and permutations. Indices take a byte each here (8 bits where the kernel packs 2 for 2:4):
the file is a faithful, simple container, and ``esparse.bench`` does the kernel's byte accounting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from esparse.masks import Pattern
from esparse.records import store

WEIGHTS = "esparse-nm.safetensors"
SIDECAR = "esparse.json"


def compress_nm(
    weight: torch.Tensor, n: int, m: int, perm: Sequence[int] | torch.Tensor | None = None, name: str = "weight"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, index) of an N:M weight (n zeros in every m consecutive inputs, in ``perm`` order).

    A group with fewer than n zeros is an error naming the layer; a group with more (a kept weight
    that is itself 0) stores that zero as a value, so decompression is exact either way.
    """
    w = weight.detach()
    if perm is not None:
        w = w[:, torch.as_tensor(perm, device=w.device)]
    rows, cols = w.shape
    if cols % m:
        raise ValueError(f"{name}: in_features={cols} is not divisible by m={m}")
    groups = w.reshape(rows, cols // m, m)
    nonzero = groups != 0
    bad = nonzero.sum(-1) > m - n
    if bad.any():
        r, g = (int(v) for v in bad.nonzero()[0])
        raise ValueError(f"{name}: not {n}:{m} sparse (row {r}, group {g} has more than {m - n} nonzeros)")
    # kept positions: the nonzeros first, padded with zero positions, each group in ascending order
    order = torch.sort((~nonzero).to(torch.int8), dim=-1, stable=True).indices[..., : m - n]
    index = torch.sort(order, dim=-1).values
    values = torch.gather(groups, -1, index)
    return values.reshape(rows, -1).contiguous(), index.reshape(rows, -1).to(torch.uint8).contiguous()


def decompress_nm(
    values: torch.Tensor, index: torch.Tensor, n: int, m: int, perm: Sequence[int] | torch.Tensor | None = None
) -> torch.Tensor:
    """The dense-with-zeros weight (original input order) from :func:`compress_nm`'s output."""
    rows = values.shape[0]
    keep = m - n
    groups = values.shape[1] // keep
    out = torch.zeros(rows, groups, m, dtype=values.dtype, device=values.device)
    out.scatter_(-1, index.reshape(rows, groups, keep).long(), values.reshape(rows, groups, keep))
    out = out.reshape(rows, groups * m)
    if perm is not None:
        inv = torch.argsort(torch.as_tensor(perm, device=out.device))
        out = out[:, inv]
    return out


def save_compressed(
    model,
    tokenizer,
    save_dir: str | Path,
    pattern: Pattern | str | Mapping,
    permutations: Mapping[str, Sequence[int]] | None = None,
    extra: Mapping[str, Any] | None = None,
    adapter=None,
) -> dict[str, int]:
    """Write ``model`` with every prunable linear N:M-compressed; returns the bytes written.

    Raises ValueError (naming the layer) before writing anything if a linear is not N:M. The
    directory is written whole or not at all (a temporary sibling renamed when complete); an
    existing ``save_dir`` is replaced only if empty or an earlier esparse checkpoint.
    """
    from safetensors.torch import save_file

    p = Pattern.parse(pattern)
    if p.kind != "nm":
        raise ValueError(f"compressed export needs an N:M pattern, got {p.name!r}")
    if adapter is None:
        from esparse.models import get_adapter

        adapter = get_adapter(model)
    perms = dict(permutations or {})
    linears = dict(adapter.named_linears(model))
    tensors: dict[str, torch.Tensor] = {}
    for name, lin in linears.items():
        values, index = compress_nm(lin.weight, p.n, p.m, perms.get(name), name)
        tensors[f"{name}.nm_values"], tensors[f"{name}.nm_index"] = values.cpu(), index.cpu()
    compressed = {f"{name}.weight" for name in linears}
    seen: set[int] = set()
    for key, t in model.state_dict().items():
        if key in compressed or t.data_ptr() in seen:  # tied weights (lm_head = embed) are stored once
            continue
        seen.add(t.data_ptr())
        tensors[key] = t.detach().cpu().contiguous()
    save_dir = Path(save_dir).expanduser()
    with store.staged_dir(save_dir, SIDECAR) as tmp:  # whole or not at all: a sibling renamed when complete
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": "esparse-nm", "n": str(p.n), "m": str(p.m)})
        model.config.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        sidecar = {"format": "esparse-nm", "pattern": {"name": p.name, "kind": "nm", "n": p.n, "m": p.m}}
        sidecar.update({"permutations": perms, "compressed_layers": sorted(linears), **dict(extra or {})})
        store.write_json_atomic(tmp / SIDECAR, sidecar)
    linear_dense = sum(lin.weight.numel() * lin.weight.element_size() for lin in linears.values())
    linear_stored = sum(tensors[f"{k}.nm_values"].nbytes + tensors[f"{k}.nm_index"].nbytes for k in linears)
    return {
        "file_bytes": (save_dir / WEIGHTS).stat().st_size,
        "linear_dense_bytes": linear_dense,
        "linear_stored_bytes": linear_stored,
    }


def _skip_init():
    try:  # transformers >= 5: a context that skips weight initialisation
        from transformers.initialization import no_init_weights
    except ImportError:  # pragma: no cover - older transformers: initialise (slower, same result)
        from contextlib import nullcontext as no_init_weights
    return no_init_weights()


def load_compressed(save_dir: str | Path, device: str = "cpu", trust_remote_code: bool = False):
    """``(model, tokenizer, sidecar)`` with the dense-with-zeros weights restored exactly; the N:M
    pattern is re-verified (in permuted order where a layer has a permutation)."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from esparse.masks import check

    save_dir = Path(save_dir).expanduser()
    sidecar = store.read_record(save_dir / SIDECAR)
    if sidecar is None or sidecar.get("format") != "esparse-nm":
        raise FileNotFoundError(f"{save_dir} is not a compressed esparse checkpoint (no esparse-nm {SIDECAR})")
    p = Pattern.parse(sidecar["pattern"])
    perms = sidecar.get("permutations") or {}
    tensors = load_file(str(save_dir / WEIGHTS))
    state: dict[str, torch.Tensor] = {}
    for key, t in tensors.items():
        if key.endswith(".nm_values"):
            name = key.removesuffix(".nm_values")
            state[f"{name}.weight"] = decompress_nm(t, tensors[f"{name}.nm_index"], p.n, p.m, perms.get(name))
        elif not key.endswith(".nm_index"):
            state[key] = t
    config = AutoConfig.from_pretrained(save_dir, trust_remote_code=trust_remote_code)
    with _skip_init():  # every weight is overwritten below: random init would only cost time
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    dtype = next(iter(state.values())).dtype
    model.to(dtype)
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = (
        {k for k in missing if k.endswith("lm_head.weight")} if getattr(config, "tie_word_embeddings", False) else set()
    )
    if set(missing) - tied or unexpected:
        raise ValueError(
            f"{save_dir}: state dict mismatch: missing {sorted(set(missing) - tied)}, unexpected {unexpected}"
        )
    if tied:
        model.tie_weights()
    model.eval().to(device)
    tok = None
    if any(save_dir.glob("tokenizer*")):
        tok = AutoTokenizer.from_pretrained(save_dir, trust_remote_code=trust_remote_code)
    check(model, sidecar["pattern"], permutations=perms).raise_if_bad()
    return model, tok, sidecar
