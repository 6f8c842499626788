"""The registry of permutation methods by config name (``shuffle=<name>``), and its guard.

``get(name)(score, n, m, **kw)`` returns a LongTensor permutation of ``range(c)``, never worse than
the identity: the stored callable validates the inputs, checks the result is a bijection and falls
back to the identity when a method would lose retained score (see ``register``);
``get_checked(name)`` returns ``(perm, fell_back)`` so that a caller can count those fallbacks.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from esparse.permutation.objective import _check, _check_perm, _retained_many, retained_score, upper_bound

PermFn = Callable[..., Tensor]
#: ``fn(score, n, m, **kw) -> (perm, fell_back)``: the guarded method, saying whether the guard fired
CheckedFn = Callable[..., tuple[Tensor, bool]]
_REGISTRY: dict[str, PermFn] = {}
_CHECKED: dict[str, CheckedFn] = {}


def register(name: str) -> Callable[[PermFn], PermFn]:
    """Register ``fn(score, n, m, **kw) -> perm`` under ``name``.

    The stored callable validates the inputs (ValueError naming the bad value), checks that ``fn``
    returned a bijection, and falls back to the identity when ``fn``'s permutation retains less than
    the identity: a permutation can only be worth deploying if it does not hurt, so no registered
    method ever returns a permutation worse than ``none``.
    """

    def deco(fn: PermFn) -> PermFn:
        if name in _REGISTRY:
            raise ValueError(f"permutation method {name!r} is already registered")

        def checked(score: Tensor, n: int, m: int, **kw: Any) -> tuple[Tensor, bool]:
            _check(score, n, m)
            c = score.shape[1]
            perm = _check_perm(fn(score, n, m, **kw), c).to(score.device)
            identity = torch.arange(c, device=score.device)
            if not torch.equal(perm, identity):
                after, before = _retained_many(score, n, m, [perm, None])
                if after < before:
                    return identity, True
            return perm, False

        @functools.wraps(fn)
        def guarded(score: Tensor, n: int, m: int, **kw: Any) -> Tensor:
            return checked(score, n, m, **kw)[0]

        _REGISTRY[name], _CHECKED[name] = guarded, checked
        return guarded

    return deco


def get(name: str) -> PermFn:
    """The permutation method registered as ``name``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown permutation method {name!r}; known: {', '.join(names())}")
    return _REGISTRY[name]


def get_checked(name: str) -> CheckedFn:
    """The method registered as ``name``, returning ``(perm, fell_back)``: ``fell_back`` is True when
    the guard replaced the method's permutation by the identity (a run counts these; a silent
    fallback would pass a method's failure off as "the permutation bought nothing")."""
    get(name)  # the unknown-name error
    return _CHECKED[name]


def names() -> list[str]:
    return sorted(_REGISTRY)


@register("none")
def _none(score: Tensor, n: int, m: int) -> Tensor:
    """The identity: N:M groups are the original consecutive input channels."""
    return torch.arange(score.shape[1], device=score.device)


def permute_and_report(name: str, score: Tensor, n: int, m: int, **kw: Any) -> dict[str, Any]:
    """Run method ``name`` and report what it bought: perm, whether it fell back to the identity,
    retained before/after, bound, seconds."""
    fn = get_checked(name)
    t0 = time.perf_counter()
    perm, fell_back = fn(score, n, m, **kw)
    seconds = time.perf_counter() - t0
    return {
        "perm": perm,
        "fell_back": fell_back,
        "retained_before": retained_score(score, n, m),
        "retained_after": retained_score(score, n, m, perm),
        "upper_bound": upper_bound(score, n, m),
        "seconds": seconds,
    }
