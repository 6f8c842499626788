"""Pruning scores: higher = more important. Registry keyed by the config name (``metric.name``).

Every score is a pure function ``score(weight, stats, **kw) -> Tensor`` (float32, same shape and device
as ``weight``, out × in). ``stats`` is anything with the attributes named in the function's ``.needs``
(``norm`` and ``entropy`` of shape (in,), ``hessian`` of shape (in, in)), normally a finalized
:class:`esparse.stats.ChannelStats`. Formulas: docs/method.md §3.

Each registered score also declares the ``metric.*`` options it takes (``.options``: type, allowed
values, and the default a library caller gets without a config) and whether its method
reconstructs the weights itself (``.reconstructs``: OBS selection and update, as SparseGPT; any
score may ask for the OBS update of the weights it keeps with ``metric.reconstruct``). Config
validation and the pruning loop read these declarations, so a new score is one registration.

A run's values come from the composed config (``conf/metric/<name>.yaml``, ``reconstruction``),
never from here; :func:`library_defaults` lists every keyword default a library caller gets
instead, and a test holds each equal to the YAML.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Protocol

import torch

from esparse.sparsegpt import DEFAULT_BLOCKSIZE, DEFAULT_PERCDAMP, inverse_hessian_factor
from esparse.stats import DEFAULT_BINS

__all__ = ["ScoreFn", "Option", "register", "get", "names", "check_options", "library_defaults", "NEEDS"]

NEEDS = frozenset({"norm", "entropy", "hessian"})
ESPARSE_FORMS = ("alpha_entropy", "alpha_norm")
#: the channel norm E-Sparse adds to α·H: Wanda's code convention, sqrt(Σx²/nsamples) (``wanda``), or
#: the plain ℓ2 norm over all calibration tokens E-Sparse's text defines, sqrt(Σx²) (``l2``)
ESPARSE_NORMS = ("wanda", "l2")
_KINDS = ("number", "int", "bool", "choice")


@dataclass(frozen=True)
class Option:
    """One ``metric.<name>`` key a score takes: its type, what is allowed, and its library default.

    ``kind``: ``"number"`` (at least ``minimum``, above it if ``exclusive``; ``choices`` are the
    words allowed besides numbers, e.g. ``"auto"``), ``"int"`` (at least ``minimum``), ``"bool"``, or
    ``"choice"`` (one of ``choices``). ``kwarg``: passed to the score function as a keyword, whose
    signature then holds the default; otherwise the pruning loop reads it (``bins``: the entropy
    histogram, ``reconstruct``: the OBS update) and ``default`` is what a
    :class:`~esparse.pruning.PruneSpec` built without a config uses.
    """

    name: str
    kind: str
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    exclusive: bool = False
    kwarg: bool = True
    default: Any = None
    doc: str = ""

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"option {self.name!r}: kind {self.kind!r} is not one of {list(_KINDS)}")

    def allowed(self) -> str:
        """What the option allows, in words (``"a positive number or 'auto'"``)."""
        if self.kind == "choice":
            return f"one of {list(self.choices)}"
        if self.kind == "bool":
            return "true or false"
        what = "an integer" if self.kind == "int" else "a number"
        if self.minimum is not None:
            if self.kind == "number" and self.minimum == 0 and self.exclusive:
                what = "a positive number"
            else:
                what = f"{what} {'>' if self.exclusive else '>='} {self.minimum}"
        return " or ".join([what, *map(repr, self.choices)])

    def problem(self, value: Any) -> str | None:
        """None if ``value`` is allowed, else ``"metric.<name>: <value> must be ..."``."""
        if self.kind == "choice":
            ok = isinstance(value, str) and value in self.choices
        elif self.kind == "bool":
            ok = isinstance(value, bool)
        elif isinstance(value, str) and value in self.choices:
            ok = True
        elif isinstance(value, bool) or not isinstance(value, int if self.kind == "int" else int | float):
            ok = False
        else:
            ok = self.minimum is None or (value > self.minimum if self.exclusive else value >= self.minimum)
        if ok:
            return None
        verb = "is not" if self.kind == "choice" else "must be"
        return f"metric.{self.name}: {value!r} {verb} {self.allowed()}" + (f" ({self.doc})" if self.doc else "")


#: the option every score takes: the OBS update of the kept weights (RIA appendix D, "+rec")
RECONSTRUCT = Option("reconstruct", "bool", kwarg=False, default=False, doc="OBS update of the kept weights")
COMMON_OPTIONS: tuple[Option, ...] = (RECONSTRUCT,)


class ScoreFn(Protocol):
    needs: frozenset[str]
    options: Mapping[str, Option]
    reconstructs: bool

    def __call__(self, weight: torch.Tensor, stats: Any, **kw: Any) -> torch.Tensor: ...


_REGISTRY: dict[str, ScoreFn] = {}


def register(
    name: str,
    needs: frozenset[str] | set[str] | tuple[str, ...] = (),
    options: tuple[Option, ...] = (),
    reconstructs: bool = False,
) -> Callable:
    """Decorator: register a score under ``name`` with the statistics it reads (``needs``), the
    ``metric.*`` options it takes, and whether its method selects and updates weights by OBS
    (``reconstructs``; the score then ranks only for the permutation and the retained-score report)."""
    needs = frozenset(needs)
    if not needs <= NEEDS:
        raise ValueError(f"score {name!r}: unknown needs {sorted(needs - NEEDS)}; known: {sorted(NEEDS)}")
    taken = [o.name for o in options] + [o.name for o in COMMON_OPTIONS] + ["name"]
    if len(set(taken)) != len(taken):
        raise ValueError(f"score {name!r}: an option is declared twice or shadows a common key: {sorted(taken)}")

    def deco(fn: Callable) -> ScoreFn:
        if name in _REGISTRY:
            raise ValueError(f"score {name!r} is already registered")
        params = inspect.signature(fn).parameters
        declared = {}
        for opt in options:
            if opt.kwarg:
                p = params.get(opt.name)
                if p is None or p.default is inspect.Parameter.empty:
                    raise ValueError(f"score {name!r}: option {opt.name!r} is not a keyword with a default of {fn}")
                opt = replace(opt, default=p.default)
            if opt.problem(opt.default) is not None:
                raise ValueError(f"score {name!r}: the default is not allowed: {opt.problem(opt.default)}")
            declared[opt.name] = opt
        fn.needs = needs  # type: ignore[attr-defined]
        fn.options = MappingProxyType(declared)  # type: ignore[attr-defined]
        fn.reconstructs = bool(reconstructs)  # type: ignore[attr-defined]
        _REGISTRY[name] = fn  # type: ignore[assignment]
        return fn  # type: ignore[return-value]

    return deco


def get(name: str) -> ScoreFn:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown score {name!r}; known scores: {', '.join(names())}") from None


def names() -> list[str]:
    return sorted(_REGISTRY)


def check_options(name: str, metric: Mapping[str, Any], complete: bool = True) -> list[str]:
    """What is wrong with the ``metric.*`` values of score ``name`` (``metric.name`` itself is
    skipped): an option the score does not take, a value it does not allow, and, if ``complete``, an
    option that is missing (the composed config gives each; nothing is filled in)."""
    known = {**get(name).options, **{o.name: o for o in COMMON_OPTIONS}}
    out = []
    for key, value in metric.items():
        if key == "name":
            continue
        if key not in known:
            out.append(f"metric.{key}: {value!r} is not an option of score {name!r}; its options: {sorted(known)}")
        elif (why := known[key].problem(value)) is not None:
            out.append(why)
    if complete:
        out += [
            f"metric.{key}: missing; score {name!r} takes {sorted(known)} (conf/metric/{name}.yaml gives each)"
            for key in known
            if key not in metric
        ]
    return out


def library_defaults() -> dict[str, Any]:
    """Every default a library caller gets without a config, where a run reads the config instead:
    each score's options (its keyword defaults, and ``bins``/``reconstruct`` of a bare
    :class:`~esparse.pruning.PruneSpec`) and the OBS settings of :func:`esparse.sparsegpt.sparsegpt_prune`
    (and of the ``sparsegpt`` score's ``percdamp``). Each equals the YAML under conf/ (tested)."""
    return {
        "metric": {n: {o.name: o.default for o in (*get(n).options.values(), *COMMON_OPTIONS)} for n in names()},
        "reconstruction": {"blocksize": DEFAULT_BLOCKSIZE, "percdamp": DEFAULT_PERCDAMP},
    }


# --------------------------------------------------------------------------------------------- helpers
def _abs(weight: torch.Tensor) -> torch.Tensor:
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D (out, in), got shape {tuple(weight.shape)}")
    return weight.detach().abs().to(torch.float32)


def _channel(stats: Any, attr: str, weight: torch.Tensor) -> torch.Tensor:
    """(1, in) float32 row of a per-input-channel statistic, on the weight's device."""
    if stats is None:
        raise ValueError(f"this score needs stats.{attr}, got stats=None")
    v = torch.as_tensor(getattr(stats, attr)).detach().to(device=weight.device, dtype=torch.float32)
    if v.shape != (weight.shape[1],):
        raise ValueError(f"stats.{attr} has shape {tuple(v.shape)}, expected ({weight.shape[1]},)")
    return v.reshape(1, -1)


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den where den > 0, else 0 (a zero row/column sum means every |W| in it is 0)."""
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(num))


# ---------------------------------------------------------------------------------------------- scores
@register("magnitude")
def magnitude(weight: torch.Tensor, stats: Any = None) -> torch.Tensor:
    """|W_ij|."""
    return _abs(weight)


@register("wanda", needs={"norm"})
def wanda(weight: torch.Tensor, stats: Any) -> torch.Tensor:
    """|W_ij| · ‖X_j‖₂ (Sun et al., 2023)."""
    return _abs(weight) * _channel(stats, "norm", weight)


def _relative_importance(a: torch.Tensor) -> torch.Tensor:
    col_sum = a.sum(dim=0, keepdim=True)  # Σ_k |W_kj|: over output rows, one per input column j
    row_sum = a.sum(dim=1, keepdim=True)  # Σ_k |W_ik|: over inputs, one per output row i
    return _safe_div(a, col_sum) + _safe_div(a, row_sum)


@register("ri")
def ri(weight: torch.Tensor, stats: Any = None) -> torch.Tensor:
    """Relative importance |W_ij| / Σ_k|W_kj| + |W_ij| / Σ_k|W_ik| (Zhang et al., 2024, RIA)."""
    return _relative_importance(_abs(weight))


@register("act_norm", needs={"norm"})
def act_norm(weight: torch.Tensor, stats: Any) -> torch.Tensor:
    """‖X_j‖₂ alone, the same for every weight of input channel j (RIA Table 2's ‖X‖₂ row): under a
    per-layer ranking it prunes whole input channels, the "channel corruption" RIA argues against."""
    return _channel(stats, "norm", weight).expand(weight.shape[0], -1).clone()


@register("w_in")
def w_in(weight: torch.Tensor, stats: Any = None) -> torch.Tensor:
    """|W_ij| / Σ_k|W_kj|: magnitude normalised over the weights of input channel j (RIA Table 2's
    |W|_in, the first term of RI)."""
    a = _abs(weight)
    return _safe_div(a, a.sum(dim=0, keepdim=True))


@register("w_out")
def w_out(weight: torch.Tensor, stats: Any = None) -> torch.Tensor:
    """|W_ij| / Σ_k|W_ik|: magnitude normalised over the weights of output channel i (RIA Table 2's
    |W|_out, the second term of RI). Within one row it ranks as magnitude does, so it differs from
    magnitude only under a per-layer ranking (``pattern.scope=layer``), RIA's setting for this table."""
    a = _abs(weight)
    return _safe_div(a, a.sum(dim=1, keepdim=True))


@register("ria", needs={"norm"}, options=(Option("a", "number", doc="exponent of the activation norm"),))
def ria(weight: torch.Tensor, stats: Any, a: float = 0.5) -> torch.Tensor:
    """RI · ‖X_j‖₂^a, a = 0.5 in the paper."""
    return _relative_importance(_abs(weight)) * _channel(stats, "norm", weight).pow(a)


@register(
    "esparse",
    needs={"norm", "entropy"},
    options=(
        Option("alpha", "number", choices=("auto",), minimum=0, exclusive=True, doc="entropy/norm weight"),
        Option("form", "choice", choices=ESPARSE_FORMS, doc="which term alpha scales"),
        Option("norm", "choice", choices=ESPARSE_NORMS, doc="channel norm convention"),
        Option("bins", "int", minimum=2, kwarg=False, default=DEFAULT_BINS, doc="entropy histogram bins"),
    ),
)
def esparse(
    weight: torch.Tensor, stats: Any, alpha: float | str = "auto", form: str = "alpha_entropy", norm: str = "wanda"
) -> torch.Tensor:
    """|W_ij| · (α·H_j + ‖X_j‖₂) (``alpha_entropy``) or |W_ij| · (H_j + α·‖X_j‖₂) (``alpha_norm``).

    ``norm`` is the convention of ‖X_j‖₂: ``wanda`` (Wanda's code, sqrt(Σx²/nsamples), what every
    activation score here reads) or ``l2`` (the plain ℓ2 norm over all N calibration tokens of the
    channel, E-Sparse §3.2's definition: sqrt(nsamples) times larger). Only E-Sparse takes it: every
    other score multiplies the norm (or a power of it) into each weight of its layer, so a constant
    factor never changes its ranking; E-Sparse adds it to α·H, so with a fixed α the two conventions
    rank differently (with ``alpha=auto`` they do not: the factor moves α with it).

    The paper's α = 70 "keeps entropy and norm at the same magnitude"; entropy ≤ ln 100 ≈ 4.6 while
    norms reach hundreds, so the default form scales the entropy (docs/method.md §3.2); ``alpha=70.0``
    is the paper's constant. That balance depends on the norm scale (which grows with sqrt(seqlen)
    under Wanda's convention, and differs per model and layer), so ``alpha="auto"`` (the default, as
    in conf/metric/esparse.yaml) applies the paper's stated intent per layer: α = mean‖X‖/mean H
    (alpha_entropy) or mean H/mean‖X‖ (alpha_norm), making both terms equal on average.
    """
    problems = check_options("esparse", {"alpha": alpha, "form": form, "norm": norm}, complete=False)
    if problems:
        raise ValueError("; ".join(problems))
    h = _channel(stats, "entropy", weight)
    nrm = _channel(stats, "norm", weight)
    if norm == "l2":
        nsamples = getattr(stats, "nsamples", None)
        if not nsamples:
            raise ValueError("metric.norm=l2 needs stats.nsamples (the calibration samples the norm averaged over)")
        nrm = nrm * math.sqrt(nsamples)
    if alpha == "auto":
        num, den = (nrm.mean(), h.mean()) if form == "alpha_entropy" else (h.mean(), nrm.mean())
        alpha = float(num / den) if float(den) > 0 else 1.0
    factor = alpha * h + nrm if form == "alpha_entropy" else h + alpha * nrm
    return _abs(weight) * factor


@register("sparsegpt", needs={"hessian"}, reconstructs=True)
def sparsegpt(weight: torch.Tensor, stats: Any, percdamp: float = DEFAULT_PERCDAMP) -> torch.Tensor:
    """SparseGPT's saliency w² / U_jj², U the upper Cholesky factor of (H + damp·I)⁻¹.

    This is the quantity SparseGPT ranks by, on the unmodified weights (no error feedback); the real
    method, with updates, is :func:`esparse.sparsegpt.sparsegpt_prune` (``reconstructs=True``: the
    pruning loop selects and updates by OBS, this score ranks only for the permutation and the
    retained-score report, with the library ``percdamp``). Dead inputs (H_jj = 0) score 0.
    """
    if stats is None:
        raise ValueError("this score needs stats.hessian, got stats=None")
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D (out, in), got shape {tuple(weight.shape)}")
    hess = torch.as_tensor(stats.hessian).detach().to(weight.device)
    if tuple(hess.shape) != (weight.shape[1], weight.shape[1]):
        raise ValueError(f"stats.hessian has shape {tuple(hess.shape)}, expected {(weight.shape[1],) * 2}")
    upper, dead = inverse_hessian_factor(hess, percdamp, torch.float32)
    w = weight.detach().to(torch.float32)
    score = w.square() / upper.diagonal().square().reshape(1, -1)
    score[:, dead] = 0.0
    return score
