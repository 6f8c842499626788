"""``all_finite`` answers as ``isfinite(t).all()`` does, including where its fast sum overflows."""

from __future__ import annotations

import pytest
import torch

from esparse.finite import all_finite


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1.0, -2.0, 3.0], True),
        ([1.0, float("nan"), 3.0], False),
        ([1.0, float("inf")], False),
        ([float("-inf"), 1.0], False),
        ([float("inf"), float("-inf")], False),  # the sum is NaN: still caught
        ([3e38, 3e38, -1.0], True),  # finite entries whose float32 sum overflows: the full scan decides
        ([], True),
    ],
)
def test_all_finite_matches_isfinite_all(values, expected):
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        t = torch.tensor(values, dtype=dtype)
        assert bool(torch.isfinite(t).all()) is expected
        assert all_finite(t) is expected


def test_all_finite_on_a_matrix_with_one_bad_entry():
    w = torch.randn(64, 128)
    assert all_finite(w)
    w[17, 99] = float("nan")
    assert not all_finite(w)
