"""tolerance_stats and compare_pairs against a float64 reference computed here, every provider."""

from __future__ import annotations

import math

import pytest
import torch

import irshim.ir as ir
from irshim.ir.ops import compare  # noqa: F401  (registers the op)

INF, NAN = math.inf, math.nan
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # (CPU: the Triton provider under the interpreter)


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


def providers(name="tolerance_stats"):
    op = ir.get_op(name)
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


# ------------------------------------------------------------ compare_pairs
def _pair_case(kind: str, n: int, dtype: torch.dtype, seed: int):
    """(actual, expected, baseline, changed): `changed` is what the fifth field must say."""
    g = torch.Generator().manual_seed(seed)
    base = (torch.randn(n, generator=g) if dtype.is_floating_point
            else torch.randint(0, 100, (n,), generator=g)).to(dtype)
    # Perturbations of a few units of the last place: the float32 bounds of the op and the
    # float64 ones of `reference` then agree on every element.
    noise = 0.01 * torch.randn(n, generator=g) if dtype.is_floating_point else torch.randint(-3, 4, (n,), generator=g)
    if n > 3 and dtype.is_floating_point:
        base[1] = NAN
    if kind == "none":       # no baseline: never changed
        return (base.float() + noise).to(dtype), base.clone(), None, 0.0
    if kind == "untouched":  # both sides bit-identical to the baseline, NaN included
        return base.clone(), base.clone(), base, 0.0
    if kind == "expected_last":  # the last element of one side only (a block's masked tail)
        e = base.clone()
        e[-1] = e[-1].float() + 1
        return base.clone(), e, base, 1.0
    if kind == "negative_zero":  # -0.0 over 0.0: equal values, different bits
        base[0] = 0.0
        a = base.clone()
        a[0] = -0.0
        return a, base.clone(), base, 1.0
    if kind == "perturbed":
        perturbed = base.float() + noise
        return (perturbed.clamp(0, 255) if dtype == torch.uint8 else perturbed).to(dtype), base.clone(), base, 1.0
    raise AssertionError(kind)


CASES = [("none", 37, torch.bfloat16), ("untouched", 5000, torch.float32), ("expected_last", 4097, torch.float16),
         ("negative_zero", 1, torch.bfloat16), ("perturbed", 9000, torch.bfloat16), ("untouched", 0, torch.float16),
         ("expected_last", 37, torch.float32), ("expected_last", 300, torch.int64),  # RoPE's positions
         ("untouched", 77, torch.float8_e4m3fn), ("expected_last", 77, torch.float8_e4m3fn),  # FP8 quant outputs
         ("perturbed", 64, torch.uint8), ("negative_zero", 9, torch.float32), ("none", 5, torch.float64)]


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, len(CASES) - 1, len(CASES)])  # a launch takes two pairs
def test_pairs_against_reference(count):
    cases = [_pair_case(kind, n, dtype, seed) for seed, (kind, n, dtype) in enumerate(CASES[:count])]
    atol = [1e-2 * (i + 1) for i in range(count)]
    rtol = [2e-2] * count
    op = ir.get_op("compare_pairs")
    on = [[t.to(DEVICE) if t is not None else None for t in c[:3]] for c in cases]
    args = ([c[0] for c in on], [c[1] for c in on], [c[2] for c in on], atol, rtol)
    for provider in providers("compare_pairs"):
        with op.set_priority([provider]):
            got = op(*args)
            # Every case's dtype but float64's (computed in float64: native) is the provider's own.
            assert op.dispatch(*args).provider == (provider if count < len(CASES) else "native")
        assert got.shape == (count, 5) and got.dtype == torch.float32, provider
        for i, (a, e, _, changed) in enumerate(cases):
            want = reference(a, e, atol[i], rtol[i])
            row = got[i].tolist()
            assert row[2:] == [*want[2:], changed], (provider, CASES[i])
            assert row[0] == pytest.approx(want[0], rel=1e-6, abs=0), (provider, CASES[i])
            assert row[1] == pytest.approx(want[1], rel=1e-5, abs=0), (provider, CASES[i])


def test_pairs_hand_computed():
    a = torch.tensor([1.0, 2.5, 0.0])
    e = torch.tensor([1.0, 2.0, 0.25])
    b = torch.tensor([1.0, 2.5, 0.25])  # a differs from it at index 2, e at index 1
    got = ir.get_op("compare_pairs")([a, e], [e, e], [b, None], [0.1, 0.1], [0.1, 0.1])
    assert got.tolist() == [[0.5, 1.0, 2.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0, 0.0]]


def test_pairs_reject_bad_input():
    x, y = torch.zeros(3), torch.zeros(4)
    op = ir.get_op("compare_pairs")
    with pytest.raises(ValueError, match="lists of different lengths"):
        op([x], [x], [None], [0.1, 0.1], [0.1])
    with pytest.raises(ValueError, match="differ in shape"):
        op([x], [y], [None], [0.1], [0.1])
    assert op([], [], [], [], []).shape == (0, 5)


@pytest.mark.filterwarnings("ignore:Casting complex values")  # the stats of complex128 (real parts)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int64, torch.bool, torch.complex128], ids=str)
def test_pairs_changed_compares_bits(dtype):
    """The fifth field, for every dtype an input of a compared call can have (native)."""
    pristine = (torch.arange(6) % 2).to(dtype)
    if dtype.is_floating_point:
        pristine[0] = NAN  # a NaN left alone is no change

    def changed(actual, expected):
        return ir.ops.compare_pairs.native([actual], [expected], [pristine], [0.1], [0.1])[0, 4].item()

    real, snap = pristine.clone(), pristine.clone()
    assert changed(real, snap) == 0
    real[1] = ~real[1] if dtype == torch.bool else real[1] + 1
    assert changed(real, snap) == 1 and changed(snap, real) == 1
