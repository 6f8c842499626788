"""Input-channel permutations for N:M sparsity (docs/method.md §5; RIA §4 and app. F; E-Sparse §3.3).

N:M zeroes n of every m consecutive input columns in each row, so *which* columns share a group decides
what survives. A permutation ``perm`` reorders the columns (the permuted score is ``score[:, perm]``);
its quality is the retained score: over rows and groups of m consecutive permuted columns, the sum of
the (m - n) largest entries. Every method here returns a ``perm`` that maximises it heuristically.

One idea per module:

- ``objective``: the retained score, the unstructured upper bound, input validation;
- ``registry``: ``register`` / ``get`` / ``get_checked`` / ``names``, the never-worse-than-identity guard, ``none``;
- ``swaps``: dealing channels over groups, the relu-gain identity, the greedy swap search;
- ``shuffle``: E-Sparse's global naive shuffle (``esparse_global``) and global + local (``esparse``);
- ``ria``: RIA's channel allocation (``ria_cp``) and its linear sum assignment (``ria_cp_lsa``);
- ``greedy``: Pool & Yu's greedy swaps with random escapes (``greedy``).
- ``relabel``: ours, RIA's LSA with the in-group positions relabelled between passes (``lsa_relabel``).

Methods are registered by config name (``shuffle=<name>``); ``get(name)(score, n, m, **kw)`` returns
a LongTensor permutation of ``range(c)``, never worse than the identity (see ``register``).
"""

from __future__ import annotations

# the method modules register their methods on import
from esparse.permutation import greedy, relabel, ria, shuffle  # noqa: F401
from esparse.permutation.objective import _sorted_desc, retained_score, upper_bound
from esparse.permutation.registry import CheckedFn, PermFn, get, get_checked, names, permute_and_report, register
from esparse.permutation.ria import OFFICIAL_COMMUNITIES, official_communities
from esparse.permutation.swaps import _effective_block

__all__ = [
    "OFFICIAL_COMMUNITIES",
    "CheckedFn",
    "PermFn",
    "_effective_block",
    "_sorted_desc",
    "get",
    "get_checked",
    "names",
    "official_communities",
    "permute_and_report",
    "register",
    "retained_score",
    "upper_bound",
]
