"""Compressed N:M checkpoints: each pruned linear stored as its kept values plus their in-group
positions (the metadata a 2:4 kernel keeps), everything else as is; loading restores the
dense-with-zeros weights bit for bit.

Layout of ``<dir>/esparse-nm.safetensors``: ``<linear>.nm_values`` (out, in/m·(m−n)) and
``<linear>.nm_index`` (uint8, same shape, position 0..m−1 inside each group of m, in the layer's
permuted order when it has a permutation), and every other tensor of the state dict under its own
name. ``config.json`` and the tokenizer sit beside it, plus the usual ``esparse.json`` sidecar with
the pattern and permutations. Indices take a byte each here (8 bits where the kernel packs 2 for 2:4):
the file is a faithful, simple container, and ``esparse.bench`` does the kernel's byte accounting.

A quantized run (``quant=rtn|gptq|awq``) stores integer codes instead of ``nm_values``:
``<linear>.nm_codes`` (uint8; 4-bit codes two per byte, the even kept value in the low nibble),
``<linear>.nm_scale`` / ``nm_zero`` (rows × groups: the run's scale in its work dtype, the zero
point as uint8), ``<linear>.nm_group`` (int32, the group of each input column in the stored order)
and, for AWQ, ``<linear>.nm_col_scale``. Loading recomputes ``scale · (code − zero) [/ s]`` as the
quantizer did, so the weights are the evaluated fake-quant ones bit for bit (docs/quant.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from esparse import quant as quantizers
from esparse.masks import Pattern
from esparse.records import store

WEIGHTS = "esparse-nm.safetensors"
SIDECAR = "esparse.json"
#: the tensors of one compressed linear, ``<linear>.<suffix>``
PARTS = ("nm_values", "nm_index", "nm_codes", "nm_scale", "nm_zero", "nm_group", "nm_col_scale")


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


# ------------------------------------------------------------------------------ quantized kept values
def _kept_grid(index: torch.Tensor, n: int, m: int, grid: quantizers.Grid):
    """Scale, zero and channel scale of each kept value (rows × K), from its dense column."""
    cols = torch.arange(index.shape[1], device=index.device) // (m - n) * m + index.long()
    g = grid.group.to(index.device)[cols]
    scale, zero = grid.scale.to(index.device).gather(1, g), grid.zero.to(index.device).gather(1, g)
    cs = None if grid.col_scale is None else grid.col_scale.to(index.device)[cols]
    return scale, zero, cs


def _dequant(codes: torch.Tensor, scale, zero, cs, dtype: torch.dtype) -> torch.Tensor:
    """The quantizers' arithmetic: ``scale · (code − zero)`` (``/ s`` for AWQ) in the work dtype,
    then float32 (what ``quant.apply`` returns), then the model's dtype."""
    v = scale * (codes.to(scale.dtype) - zero)
    return (v if cs is None else v / cs).to(torch.float32).to(dtype)


def encode_codes(
    values: torch.Tensor, index: torch.Tensor, n: int, m: int, grid: quantizers.Grid, name: str = "weight"
) -> torch.Tensor:
    """The integer code (uint8) of each kept value of :func:`compress_nm` on ``grid`` (in the stored
    column order), checked to decode to the value exactly; a weight off its grid raises, naming the
    layer. Where a narrow dtype (bfloat16) maps neighbouring codes to one value, either is exact."""
    maxq = 2**grid.bits - 1
    scale, zero, cs = _kept_grid(index, n, m, grid)
    x = values.to(scale.dtype) if cs is None else values.to(scale.dtype) * cs
    codes = torch.clamp(torch.round(x / scale) + zero, 0, maxq)
    ok = _dequant(codes, scale, zero, cs, values.dtype) == values
    for step in (-1, 1):
        alt = torch.clamp(codes + step, 0, maxq)
        hit = ~ok & (_dequant(alt, scale, zero, cs, values.dtype) == values)
        codes, ok = torch.where(hit, alt, codes), ok | hit
    if not bool(ok.all()):
        raise ValueError(f"{name}: {int((~ok).sum())} kept weights are not on their {grid.bits}-bit grid")
    return codes.to(torch.uint8)


def decode_codes(
    codes: torch.Tensor, index: torch.Tensor, n: int, m: int, grid: quantizers.Grid, dtype: torch.dtype
) -> torch.Tensor:
    """The kept values (``dtype``) of :func:`encode_codes`'s codes: the inverse, bit for bit."""
    return _dequant(codes, *_kept_grid(index, n, m, grid), dtype)


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """8-bit codes as they are; 4-bit ones two per byte (even column low nibble, odd high; an odd
    count padded with a 0 nibble)."""
    if bits == 8:
        return codes.contiguous()
    if codes.shape[1] % 2:
        codes = torch.nn.functional.pad(codes, (0, 1))
    return (codes[:, 0::2] | (codes[:, 1::2] << 4)).contiguous()


def unpack_codes(packed: torch.Tensor, bits: int, k: int) -> torch.Tensor:
    """The (rows, ``k``) codes of :func:`pack_codes`."""
    if bits == 8:
        return packed
    return torch.stack((packed & 0xF, packed >> 4), dim=-1).reshape(packed.shape[0], -1)[:, :k]


def _grid_parts(name: str, grid: quantizers.Grid) -> dict[str, torch.Tensor]:
    parts = {
        f"{name}.nm_scale": grid.scale,
        f"{name}.nm_zero": grid.zero.to(torch.uint8),
        f"{name}.nm_group": grid.group.to(torch.int32),
    }
    if grid.col_scale is not None:
        parts[f"{name}.nm_col_scale"] = grid.col_scale
    return {k: v.detach().cpu().contiguous() for k, v in parts.items()}


def _grid_of(name: str, tensors: Mapping[str, torch.Tensor], bits: int) -> quantizers.Grid:
    scale = tensors[f"{name}.nm_scale"]
    group = tensors[f"{name}.nm_group"].long()
    return quantizers.Grid(
        bits, scale, tensors[f"{name}.nm_zero"].to(scale.dtype), group, tensors.get(f"{name}.nm_col_scale")
    )


def grid_tensors(grids: Mapping[str, quantizers.Grid]) -> dict[str, torch.Tensor]:
    """Grids as flat tensors (``<linear>.nm_scale``, ...), the checkpoint's names: for the resume copy."""
    return {k: v for name, grid in grids.items() for k, v in _grid_parts(name, grid).items()}


def grids_from_tensors(tensors: Mapping[str, torch.Tensor], bits: int) -> dict[str, quantizers.Grid]:
    """The inverse of :func:`grid_tensors` (``bits`` from the run's config)."""
    names = [k.removesuffix(".nm_scale") for k in tensors if k.endswith(".nm_scale")]
    return {name: _grid_of(name, tensors, bits) for name in names}


def _quantized_tensors(name: str, values, index, n: int, m: int, grid: quantizers.Grid) -> dict[str, torch.Tensor]:
    """The file tensors of one quantized linear (the grid already in the stored column order)."""
    codes = pack_codes(encode_codes(values, index, n, m, grid, name), grid.bits)
    return {f"{name}.nm_codes": codes.cpu(), f"{name}.nm_index": index.cpu(), **_grid_parts(name, grid)}


def _dequantized_weight(name: str, tensors: Mapping[str, torch.Tensor], n: int, m: int, bits: int, dtype, perm):
    """One linear's dense-with-zeros weight from its quantized tensors."""
    index = tensors[f"{name}.nm_index"]
    codes = unpack_codes(tensors[f"{name}.nm_codes"], bits, index.shape[1])
    values = decode_codes(codes, index, n, m, _grid_of(name, tensors, bits), dtype)
    return decompress_nm(values, index, n, m, perm)


def save_compressed(
    model,
    tokenizer,
    save_dir: str | Path,
    pattern: Pattern | str | Mapping,
    permutations: Mapping[str, Sequence[int]] | None = None,
    extra: Mapping[str, Any] | None = None,
    adapter=None,
    quant: Mapping[str, Any] | None = None,
    grids: Mapping[str, quantizers.Grid] | None = None,
) -> dict[str, int]:
    """Write ``model`` with every prunable linear N:M-compressed; returns the bytes written.

    ``quant`` is the run's ``quant`` section: when it quantized, each linear's kept values are
    stored as integer codes on its grid from ``grids`` (``PruneReport.grids``, keyed like the
    permutations) and the sidecar records the settings. Raises ValueError (naming the layer) before
    writing anything if a linear is not N:M or a quantized one has no grid or leaves it. The
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
    qsection = dict(quant) if quantizers.active(quant) else None
    if qsection is not None:
        missing = sorted(set(linears) - set(grids or {}))
        if missing:
            raise ValueError(f"quant={qsection['name']}: no quantization grid for {missing} (PruneReport.grids)")
    tensors: dict[str, torch.Tensor] = {}
    for name, lin in linears.items():
        values, index = compress_nm(lin.weight, p.n, p.m, perms.get(name), name)
        if qsection is None:
            tensors[f"{name}.nm_values"], tensors[f"{name}.nm_index"] = values.cpu(), index.cpu()
            continue
        grid = grids[name]  # type: ignore[index]
        if grid.bits != qsection["bits"]:
            raise ValueError(f"{name}: grid of {grid.bits} bits, but quant.bits={qsection['bits']}")
        if name in perms:
            grid = grid.columns(torch.as_tensor(perms[name]))
        tensors.update(_quantized_tensors(name, values, index, p.n, p.m, grid))
    compressed = {f"{name}.weight" for name in linears}
    seen: set[int] = set()
    for key, t in model.state_dict().items():
        if key in compressed or t.data_ptr() in seen:  # tied weights (lm_head = embed) are stored once
            continue
        seen.add(t.data_ptr())
        tensors[key] = t.detach().cpu().contiguous()
    save_dir = Path(save_dir).expanduser()
    with store.staged_dir(save_dir, SIDECAR) as tmp:  # whole or not at all: a sibling renamed when complete
        meta = {"format": "esparse-nm", "n": str(p.n), "m": str(p.m)}
        meta.update({"bits": str(qsection["bits"])} if qsection is not None else {})
        save_file(tensors, str(tmp / WEIGHTS), metadata=meta)
        model.config.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        sidecar = {"format": "esparse-nm", "pattern": {"name": p.name, "kind": "nm", "n": p.n, "m": p.m}}
        sidecar.update({"permutations": perms, "compressed_layers": sorted(linears), **dict(extra or {})})
        if qsection is not None:
            dtype = str(next(iter(linears.values())).weight.dtype).removeprefix("torch.")
            keys = ("name", "bits", "group_size", "order")
            sidecar["quant"] = {**{k: qsection.get(k) for k in keys}, "form": "integer codes", "dtype": dtype}
        store.write_json_atomic(tmp / SIDECAR, sidecar)
    linear_dense = sum(lin.weight.numel() * lin.weight.element_size() for lin in linears.values())
    linear_stored = sum(t.nbytes for key, t in tensors.items() if key.rpartition(".nm_")[0] in linears)
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
    q = sidecar.get("quant")
    state: dict[str, torch.Tensor] = {}
    for key, t in tensors.items():
        if key.endswith(".nm_values"):
            name = key.removesuffix(".nm_values")
            state[f"{name}.weight"] = decompress_nm(t, tensors[f"{name}.nm_index"], p.n, p.m, perms.get(name))
        elif key.endswith(".nm_codes"):
            name, dtype = key.removesuffix(".nm_codes"), getattr(torch, q["dtype"])
            state[f"{name}.weight"] = _dequantized_weight(name, tensors, p.n, p.m, q["bits"], dtype, perms.get(name))
        elif key.rpartition(".")[2] not in PARTS:
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
