"""tolerance_stats against a float64 reference computed here, every provider."""

from __future__ import annotations

import math

import pytest
import torch

import irshim.ir as ir
from irshim.ir.ops import compare  # noqa: F401  (registers the op)

INF, NAN = math.inf, math.nan


def reference(a, e, atol, rtol):
    a, e = a.double().flatten().tolist(), e.double().flatten().tolist()
    max_abs = max_rel = 0.0
    outside = 0
    disagree = 0.0
    for x, y in zip(a, e):
        fx, fy = math.isfinite(x), math.isfinite(y)
        if fx and fy:
            d = abs(x - y)
            max_abs = max(max_abs, d)
            max_rel = max(max_rel, d / max(abs(y), atol, 1.1754943508222875e-38))
            ok = d <= atol + rtol * abs(y)
        else:
            ok = (math.isnan(x) and math.isnan(y)) or (math.isinf(x) and x == y)
        outside += not ok
        disagree = max(disagree, float(fx != fy))
    return [max_abs, max_rel, float(outside), disagree]


def providers():
    op = ir.get_op("tolerance_stats")
    return [p for p, impl in op.impls.items() if impl.supported]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("n", [0, 1, 37, 5000])
def test_against_reference(dtype, n):
    g = torch.Generator().manual_seed(n)
    e = torch.randn(n, generator=g).to(dtype)
    a = (e.float() + 0.02 * torch.randn(n, generator=g)).to(dtype)
    if n >= 37:
        a[3], e[3] = NAN, NAN       # matches
        a[5], e[5] = INF, INF       # matches
        a[7], e[7] = -INF, INF      # outside, both non-finite
        a[9], e[9] = NAN, 1.0       # outside, finite disagreement
        e[11] = 0.0                 # relative error against |e| clamped to atol
    op = ir.get_op("tolerance_stats")
    want = reference(a, e, 1e-2, 1e-2)
    for provider in providers():
        with op.set_priority([provider]):
            got = op(a, e, 1e-2, 1e-2).tolist()
        assert got[2:] == want[2:], provider
        assert got[0] == pytest.approx(want[0], rel=1e-6, abs=0), provider
        assert got[1] == pytest.approx(want[1], rel=1e-5, abs=0), provider


def test_hand_computed():
    a = torch.tensor([1.0, 2.5, 0.0])
    e = torch.tensor([1.0, 2.0, 0.25])
    # |diff| = 0, 0.5, 0.25; bounds 0.1 + 0.1|e| = 0.2, 0.3, 0.125 -> two outside.
    assert ir.get_op("tolerance_stats")(a, e, 0.1, 0.1).tolist() == [0.5, 1.0, 2.0, 0.0]
    # Expected values under atol: the relative error divides by atol, not by |e| (or 0).
    a = torch.tensor([0.05, 1e-30, 3.0])
    e = torch.tensor([0.0, 0.0, 4.0])
    # |diff| = 0.05, 1e-30, 1.0; rel = 0.05/0.1, 1e-29, 1.0/4.0; bounds 0.1, 0.1, 0.5 -> one outside.
    assert ir.get_op("tolerance_stats")(a, e, 0.1, 0.1).tolist() == pytest.approx([1.0, 0.5, 1.0, 0.0], rel=1e-6)
