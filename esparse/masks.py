"""Sparsity patterns, keep-masks from scores, and a checker for pruned weights.

Convention (docs/method.md §4.1): ``n:m`` means **n of every m consecutive input-channel weights are zero** in
each output row, so 1:4 is 25 % sparse and 3:4 is 75 %. Masks are boolean with True = keep.

Exact score ties are common (dequantised 4-bit weights) and which of two tied weights is pruned moves
a 2:4 perplexity by several percent, so the rule is a knob (:class:`TieBreak`, ``pattern.tie_break``):
``low_index`` (default: among equal scores the lower column (flat) index is pruned first),
``high_index`` (the higher first) or ``random`` (seeded, independent per row). Each is a stable sort,
so results never depend on the sort backend; without ties all three give the same mask.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

__all__ = [
    "Pattern",
    "TieBreak",
    "TIE_BREAKS",
    "LayerReport",
    "MaskReport",
    "nm_mask",
    "unstructured_mask",
    "prune_lowest_mask",
    "make_mask",
    "check_weights",
    "count_to_prune",
]

KINDS = ("nm", "unstructured", "dense")
SCOPES = ("row", "layer")
DEFAULT_UNSTRUCTURED_SPARSITY = 0.5
TIE_BREAKS = ("low_index", "high_index", "random")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class Pattern:
    """A sparsity pattern. ``sparsity`` and ``scope`` only matter for ``kind="unstructured"``."""

    kind: str
    n: int = 0
    m: int = 0
    sparsity: float = 0.0
    scope: str = "row"

    @classmethod
    def parse(cls, spec: str | Mapping | Pattern, **overrides: object) -> Pattern:
        """Build a validated pattern from "2:4" / "dense" / "unstructured" or a config mapping.

        Mapping keys: ``name`` (as the strings), ``kind``, ``n``, ``m``, ``sparsity``, ``scope``;
        explicit fields win over ``name`` (so ``pattern=2:4 pattern.n=1`` means 1:4).
        """
        if isinstance(spec, Pattern):
            fields: dict[str, object] = {
                "kind": spec.kind,
                "n": spec.n,
                "m": spec.m,
                "sparsity": spec.sparsity,
                "scope": spec.scope,
            }
        elif isinstance(spec, str):
            fields = cls._fields_from_name(spec)
        elif isinstance(spec, Mapping):
            fields = {}  # other config keys (e.g. _target_) are ignored
            if spec.get("name") is not None:
                fields = cls._fields_from_name(str(spec["name"]))
            for key in ("kind", "n", "m", "sparsity", "scope"):
                if spec.get(key) is not None:
                    fields[key] = spec[key]
            if "kind" not in fields:
                raise ValueError(f"pattern mapping needs a 'name' or 'kind', got keys {sorted(spec)}")
        else:
            raise ValueError(f"cannot parse a pattern from {spec!r}")
        fields.update({k: v for k, v in overrides.items() if v is not None})
        if fields.get("kind") == "unstructured" and "sparsity" not in fields:
            fields["sparsity"] = DEFAULT_UNSTRUCTURED_SPARSITY
        if "sparsity" in fields:
            try:
                fields["sparsity"] = float(fields["sparsity"])  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise ValueError(f"pattern sparsity must be a number, got {fields['sparsity']!r}") from None
        pattern = cls(**fields)  # type: ignore[arg-type]
        pattern.validate()
        return pattern

    @staticmethod
    def _fields_from_name(name: str) -> dict[str, object]:
        s = name.strip().lower()
        if s in ("dense", "unstructured"):
            return {"kind": s}
        parts = s.split(":")
        if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
            return {"kind": "nm", "n": int(parts[0]), "m": int(parts[1])}
        raise ValueError(f"unknown pattern {name!r}: expected 'n:m' (e.g. '2:4'), 'unstructured' or 'dense'")

    @property
    def name(self) -> str:
        return f"{self.n}:{self.m}" if self.kind == "nm" else self.kind

    @property
    def target_sparsity(self) -> float:
        if self.kind == "nm":
            return self.n / self.m
        return self.sparsity if self.kind == "unstructured" else 0.0

    def validate(self, in_features: int | None = None) -> Pattern:
        """Raise ValueError naming the bad value; return self so calls chain."""
        if self.kind not in KINDS:
            raise ValueError(f"unknown pattern kind {self.kind!r}; expected one of {KINDS}")
        if self.scope not in SCOPES:
            raise ValueError(f"unknown pattern scope {self.scope!r}; expected one of {SCOPES}")
        if self.kind == "nm":
            if not (_is_int(self.n) and _is_int(self.m)):
                raise ValueError(f"n:m pattern needs integers, got n={self.n!r}, m={self.m!r}")
            if self.n < 1:
                raise ValueError(f"n:m pattern needs n >= 1, got n={self.n}")
            if self.n >= self.m:
                raise ValueError(f"n:m pattern needs n < m, got {self.n}:{self.m}")
            if in_features is not None and in_features % self.m != 0:
                raise ValueError(f"in_features={in_features} is not a multiple of m={self.m} for pattern {self.name}")
        if self.kind == "unstructured" and not (0.0 <= self.sparsity < 1.0):
            raise ValueError(f"unstructured sparsity must be in [0, 1), got {self.sparsity!r}")
        return self

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "n": self.n,
            "m": self.m,
            "sparsity": self.target_sparsity,
            "scope": self.scope,
        }


# ------------------------------------------------------------------------------------------ tie-break
@dataclass(frozen=True)
class TieBreak:
    """Which of several exactly equal scores is pruned first. ``seed`` matters only for ``random``;
    :meth:`derive` gives each layer (and each SparseGPT column group) its own stream, so a result does
    not depend on the order in which layers are visited."""

    rule: str = "low_index"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rule not in TIE_BREAKS:
            raise ValueError(f"unknown tie_break {self.rule!r}; expected one of {TIE_BREAKS}")
        if not _is_int(self.seed):
            raise ValueError(f"tie_seed must be an integer, got {self.seed!r}")

    @classmethod
    def from_cfg(cls, pattern_cfg: Mapping) -> TieBreak:
        """From the ``pattern`` config group (``tie_break``, ``tie_seed``; absent = the default rule)."""
        seed = pattern_cfg.get("tie_seed")
        return cls(str(pattern_cfg.get("tie_break") or "low_index"), 0 if seed is None else seed)

    def derive(self, *keys: object) -> TieBreak:
        """The same rule with a seed mixed from ``keys`` (a layer name, a column offset)."""
        if self.rule != "random":
            return self
        return TieBreak(self.rule, zlib.crc32(repr((self.seed, *keys)).encode()))

    def ascending(self, score: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """Indices that sort ``score`` ascending along ``dim``, exact ties ordered by the rule."""
        if self.rule == "low_index":
            return torch.sort(score, dim=dim, stable=True).indices
        size = score.shape[dim]
        if self.rule == "high_index":
            flipped = torch.sort(score.flip(dim), dim=dim, stable=True).indices
            return size - 1 - flipped
        gen = torch.Generator().manual_seed(self.seed)
        shuffle = torch.rand(score.shape, generator=gen).argsort(dim=dim).to(score.device)
        order = torch.sort(score.gather(dim, shuffle), dim=dim, stable=True).indices
        return shuffle.gather(dim, order)


LOW_INDEX = TieBreak()


# ---------------------------------------------------------------------------------------------- masks
def count_to_prune(sparsity: float, total: int) -> int:
    """floor(sparsity · total), robust to binary representation (0.29 · 100 -> 29, not 28)."""
    return min(total, math.floor(sparsity * total + 1e-9))


def _check_score(score: torch.Tensor) -> None:
    if not isinstance(score, torch.Tensor) or score.dim() != 2:
        shape = tuple(score.shape) if isinstance(score, torch.Tensor) else type(score).__name__
        raise ValueError(f"score must be a 2-D (out, in) tensor, got {shape}")
    if score.is_floating_point() and bool(torch.isnan(score).any()):
        raise ValueError("score contains NaN; cannot rank weights")


def nm_mask(score: torch.Tensor, n: int, m: int, tie: TieBreak = LOW_INDEX) -> torch.Tensor:
    """Keep-mask pruning the n lowest scores of each m consecutive inputs in every row."""
    _check_score(score)
    Pattern("nm", n, m).validate(in_features=score.shape[1])
    rows, cols = score.shape
    groups = score.reshape(rows, cols // m, m)
    order = tie.ascending(groups, dim=-1)
    keep = torch.ones_like(groups, dtype=torch.bool)
    keep.scatter_(-1, order[..., :n], False)
    return keep.reshape(rows, cols)


def prune_lowest_mask(score: torch.Tensor, k: int, scope: str = "row", tie: TieBreak = LOW_INDEX) -> torch.Tensor:
    """Keep-mask pruning exactly the k lowest scores of each row (scope="row") or of the whole matrix
    (scope="layer"); shared by ``unstructured_mask`` and SparseGPT's per-block selection."""
    if scope == "row":
        order = tie.ascending(score, dim=1)
        keep = torch.ones_like(score, dtype=torch.bool)
        keep.scatter_(1, order[:, :k], False)
        return keep
    if scope != "layer":
        raise ValueError(f"unknown pattern scope {scope!r}; expected one of {SCOPES}")
    flat = score.reshape(-1)
    order = tie.ascending(flat, dim=0)
    keep = torch.ones_like(flat, dtype=torch.bool)
    keep[order[:k]] = False
    return keep.reshape(score.shape)


def unstructured_mask(
    score: torch.Tensor, sparsity: float, scope: str = "row", tie: TieBreak = LOW_INDEX
) -> torch.Tensor:
    """Keep-mask pruning floor(sparsity·c) per row (Wanda) or floor(sparsity·numel) per layer (RIA)."""
    _check_score(score)
    Pattern("unstructured", sparsity=float(sparsity), scope=scope).validate()
    total = score.shape[1] if scope == "row" else score.numel()
    return prune_lowest_mask(score, count_to_prune(sparsity, total), scope, tie)


def make_mask(score: torch.Tensor, pattern: Pattern | str | Mapping, tie: TieBreak = LOW_INDEX) -> torch.Tensor:
    """Dispatch on the pattern kind; dense keeps everything."""
    p = Pattern.parse(pattern)
    _check_score(score)
    p.validate(in_features=score.shape[1])
    if p.kind == "dense":
        return torch.ones_like(score, dtype=torch.bool)
    if p.kind == "nm":
        return nm_mask(score, p.n, p.m, tie)
    return unstructured_mask(score, p.sparsity, p.scope, tie)


# -------------------------------------------------------------------------------------------- checker
@dataclass(frozen=True)
class LayerReport:
    """Zeros of one weight. ``violations`` counts groups (n:m), rows (unstructured/row) or the layer
    itself (unstructured/layer) that have fewer zeros than the pattern requires."""

    name: str
    zeros: int
    numel: int
    violations: int

    @property
    def sparsity(self) -> float:
        return self.zeros / self.numel if self.numel else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "zeros": self.zeros,
            "numel": self.numel,
            "sparsity": self.sparsity,
            "violations": self.violations,
        }


@dataclass(frozen=True)
class MaskReport:
    pattern: Pattern
    layers: list[LayerReport] = field(default_factory=list)

    @property
    def zeros(self) -> int:
        return sum(layer.zeros for layer in self.layers)

    @property
    def numel(self) -> int:
        return sum(layer.numel for layer in self.layers)

    @property
    def sparsity(self) -> float:
        """Zeros over all checked weights (the record's ``sparsity/actual``)."""
        return self.zeros / self.numel if self.numel else 0.0

    @property
    def ok(self) -> bool:
        return all(layer.violations == 0 for layer in self.layers)

    def raise_if_bad(self) -> MaskReport:
        for layer in self.layers:
            if layer.violations:
                unit = {
                    "nm": f"{self.pattern.m}-groups with fewer than {self.pattern.n} zeros",
                    "unstructured": "rows/layers below the target sparsity",
                }.get(self.pattern.kind, "")
                raise ValueError(
                    f"layer {layer.name!r} violates pattern {self.pattern.name}: "
                    f"{layer.violations} {unit} (sparsity {layer.sparsity:.4f})"
                )
        return self

    def to_dict(self) -> dict[str, object]:
        return {
            "pattern": self.pattern.name,
            "sparsity": self.sparsity,
            "ok": self.ok,
            "layers": [layer.to_dict() for layer in self.layers],
        }


def _violations(zero: torch.Tensor, p: Pattern, name: str) -> int:
    if p.kind == "dense":
        return 0
    if zero.dim() != 2:
        raise ValueError(f"layer {name!r}: expected a 2-D weight, got shape {tuple(zero.shape)}")
    rows, cols = zero.shape
    if p.kind == "nm":
        if cols % p.m:
            raise ValueError(f"layer {name!r}: in_features={cols} is not a multiple of m={p.m} ({p.name})")
        per_group = zero.reshape(rows, cols // p.m, p.m).sum(dim=-1)
        return int((per_group < p.n).sum())
    if p.scope == "row":
        return int((zero.sum(dim=1) < count_to_prune(p.sparsity, cols)).sum())
    return int(int(zero.sum()) < count_to_prune(p.sparsity, zero.numel()))


def check_weights(named_weights: Iterable[tuple[str, torch.Tensor]], pattern: Pattern | str | Mapping) -> MaskReport:
    """Count exact zeros of each weight and the places where the pattern is not met."""
    p = Pattern.parse(pattern)
    layers = []
    for name, weight in named_weights:
        zero = weight.detach() == 0
        layers.append(LayerReport(name, int(zero.sum()), zero.numel(), _violations(zero, p, name)))
    return MaskReport(p, layers)


def check(
    model: torch.nn.Module,
    pattern: Pattern | str | Mapping,
    adapter=None,
    permutations: Mapping[str, Sequence[int] | torch.Tensor] | None = None,
) -> MaskReport:
    """Verify the pattern on every prunable linear of ``model`` (the adapter says which).

    ``permutations`` maps a linear's full module name to the input-channel permutation it was pruned
    under; such a layer is checked in permuted order, where its N:M groups are contiguous.
    """
    if adapter is None:
        from esparse.models import get_adapter

        adapter = get_adapter(model)
    perms = permutations or {}

    def weights():
        for name, lin in adapter.named_linears(model):
            w = lin.weight
            if name in perms:
                w = w[:, torch.as_tensor(perms[name], device=w.device)]
            yield name, w

    return check_weights(weights(), pattern)
