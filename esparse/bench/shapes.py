"""The linear kinds of a decoder block, as E-Sparse's GEMM table names them (weights ``out × in``).

Memory accounting and GEMM timing both work per kind: ``qkv`` (or ``q`` and ``kv`` when
grouped-query attention makes K/V narrower than Q), ``att_out``, ``ffn1`` (gate and up, or OPT's
fc1) and ``ffn2`` (down, or fc2). These names are what the bench emits and what analysis reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from esparse.models.arch import normalize_arch

#: E-Sparse's table rows; ``q``/``kv`` split ``qkv`` when grouped-query attention makes them differ.
LABELS = {
    "qkv": "Q/K/V",
    "q": "Q",
    "kv": "K/V",
    "att_out": "Att_Out",
    "ffn1": "FFN-1",
    "ffn2": "FFN-2",
}


@dataclass(frozen=True)
class LinearShape:
    """One kind of linear in a decoder block: ``per_block`` matrices of ``out_features × in_features``."""

    name: str
    out_features: int
    in_features: int
    per_block: int
    bias: bool = False

    def __post_init__(self) -> None:
        if self.name not in LABELS:
            raise ValueError(f"LinearShape name={self.name!r} is not one of {sorted(LABELS)}")
        for field in ("out_features", "in_features", "per_block"):
            value = getattr(self, field)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"LinearShape {field}={value!r} must be a positive int")

    @property
    def label(self) -> str:
        return LABELS[self.name]


def linear_shapes(arch: Mapping[str, Any]) -> list[LinearShape]:
    """The block's linear kinds, as in E-Sparse's GEMM table (weights are ``out × in``)."""
    a = normalize_arch(arch)
    h, inter = a["hidden_size"], a["intermediate_size"]
    q_out = a["num_attention_heads"] * a["head_dim"]
    kv_out = a["num_key_value_heads"] * a["head_dim"]
    if a["family"] == "opt":
        b = bool(a["enable_bias"])
        return [
            LinearShape("qkv", h, h, 3, b),
            LinearShape("att_out", h, h, 1, b),
            LinearShape("ffn1", inter, h, 1, b),
            LinearShape("ffn2", h, inter, 1, b),
        ]
    att_b, mlp_b = bool(a["attention_bias"]), bool(a["mlp_bias"])
    qkv = (
        [LinearShape("qkv", q_out, h, 3, att_b)]
        if kv_out == q_out
        else [LinearShape("q", q_out, h, 1, att_b), LinearShape("kv", kv_out, h, 2, att_b)]
    )
    return qkv + [
        LinearShape("att_out", h, q_out, 1, att_b),
        LinearShape("ffn1", inter, h, 2, mlp_b),  # gate and up
        LinearShape("ffn2", h, inter, 1, mlp_b),
    ]
