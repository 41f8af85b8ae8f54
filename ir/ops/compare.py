"""Comparison statistics of two tensors under a tolerance: what shadow mode records.

One op so that a provider can compute every figure in one pass: on a GPU the
plain-torch form costs ~20 kernel launches per compared output, which at a 1%
shadow sample still cost a decoder loop +16% on an H200
(benchmarks/results/shadow_overhead_gpu.md).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..op import register_op

STATS = ("max_abs", "max_rel", "n_outside", "nonfinite_mismatch")
"""The fields of `tolerance_stats`' result, in order."""
PAIR_FIELDS = (*STATS, "changed")
"""The fields of a `compare_pairs` row, in order."""


@register_op
def tolerance_stats(actual: Tensor, expected: Tensor, atol: float, rtol: float) -> Tensor:
    """float32 [max |a-e|, max |a-e|/max(|e|, atol), #outside atol + rtol|e|, any finite/non-finite disagreement].

    The maxima run over elements finite on both sides (0 when there are none);
    an element is outside unless |a-e| <= atol + rtol|e|, both are NaN or both
    are the same infinity; the last field is 1 where one side is finite and the
    other is not. Computed in float32 (float64 for float64 inputs). The relative
    error divides by |e| no smaller than atol (nor than the smallest normal
    float32): below atol the tolerance is absolute, and an expected value near
    zero (a rotated pair, an activation's zero crossing) would otherwise turn a
    rounding difference into a relative error of 1e35.
    """
    dtype = torch.float64 if torch.float64 in (actual.dtype, expected.dtype) else torch.float32
    a, e = actual.to(dtype), expected.to(dtype)
    fin_a, fin_e = a.isfinite(), e.isfinite()
    both = fin_a & fin_e
    diff = torch.where(both, (a - e).abs(), 0.0)
    rel = torch.where(both, diff / e.abs().clamp_min(max(atol, torch.finfo(torch.float32).tiny)), 0.0)
    close = both & (diff <= atol + rtol * e.abs())
    matched = close | (a.isnan() & e.isnan()) | (a.isinf() & (a == e))
    zero = torch.zeros((), dtype=dtype, device=a.device)
    stats = torch.stack([
        diff.max() if diff.numel() else zero,
        rel.max() if rel.numel() else zero,
        (~matched).sum().to(dtype),
        (fin_a != fin_e).any().to(dtype),
    ])
    return stats.to(torch.float32)


def _bits_differ(x: Tensor, base: Tensor) -> Tensor:
    """0-d bool: x differs from `base` bit for bit (values, NaN-aware, when their dtypes differ)."""
    if x.shape != base.shape:
        return torch.ones((), dtype=torch.bool, device=x.device)
    bits = _BITS.get(x.element_size()) if x.dtype == base.dtype else None
    if bits is None:  # complex128 (no integer view), or dtypes that differ
        same = torch.eq(x, base)
        if x.is_floating_point() or x.is_complex():
            same = same | (x.isnan() & base.isnan())
        return ~same.all()
    return torch.ne(x.view(bits), base.view(bits)).any()


_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
"""Element size -> the integer dtype a tensor's bits are compared as."""


@register_op
def compare_pairs(actual: list[Tensor], expected: list[Tensor], baseline: list[Tensor | None],
                  atol: list[float], rtol: list[float]) -> Tensor:
    """float32 [n, 5]: row i is `tolerance_stats(actual[i], expected[i], atol[i], rtol[i])`
    and a fifth field, 1 where baseline[i] is given and actual[i] or expected[i] differs
    from it bit for bit (a NaN left alone is unchanged, -0.0 written over 0.0 is changed).

    Every figure of one shadow-mode compared call at once: a provider can compute them
    all in one kernel launch (the fifth field is how shadow mode tells, without a device
    synchronisation, whether either side mutated an input that has no version counter).
    """
    n = len(actual)
    if not (len(expected) == len(baseline) == len(atol) == len(rtol) == n):
        raise ValueError(f"compare_pairs: lists of different lengths ({n}, {len(expected)}, {len(baseline)}, "
                         f"{len(atol)}, {len(rtol)})")
    rows = []
    for a, e, base, at, rt in zip(actual, expected, baseline, atol, rtol):
        if a.shape != e.shape:
            raise ValueError(f"compare_pairs: actual {list(a.shape)} and expected {list(e.shape)} differ in shape")
        if base is None:
            changed = torch.zeros(1, device=e.device)
        else:
            differ = _bits_differ(a, base) | _bits_differ(e, base)
            if a.is_cpu and not differ:
                # Both sides hold the baseline's bits, so they are equal and every figure is 0.
                # Decided on the CPU only, where reading the flag costs no device synchronisation:
                # the CPU shadow mode's inputs nobody mutated (half its comparisons of a norm).
                rows.append(torch.zeros(len(PAIR_FIELDS)))
                continue
            changed = differ.to(torch.float32).reshape(1)
        rows.append(torch.cat([tolerance_stats.native(a, e, at, rt), changed]))
    return torch.stack(rows) if rows else torch.zeros(0, len(PAIR_FIELDS))


@compare_pairs.register_fake
def _compare_pairs_fake(actual: list[Tensor], expected: list[Tensor], baseline: list[Tensor | None],
                        atol: list[float], rtol: list[float]) -> Tensor:
    """Shape and device only: the native function decides a data-dependent shortcut on the CPU,
    which fake tensors (torch.compile, opcheck) cannot evaluate."""
    device = expected[0].device if expected else torch.device("cpu")
    return torch.empty(len(actual), len(PAIR_FIELDS), dtype=torch.float32, device=device)


@tolerance_stats.register_input_generator
def _inputs(num_tokens, hidden_size, dtype, device="cpu"):
    g = torch.Generator().manual_seed(0)
    expected = torch.randn(num_tokens, hidden_size, generator=g)
    actual = expected + 1e-3 * torch.randn(num_tokens, hidden_size, generator=g)
    return actual.to(device=device, dtype=dtype), expected.to(device=device, dtype=dtype), 1e-3, 1e-3


tolerance_stats.override_tolerance(
    torch.float32, atol=0.0, rtol=1e-6,
    reason="maxima and counts are exact; the float32 division of the relative error may differ by an ulp")


@compare_pairs.register_input_generator
def _pair_inputs(num_tokens, hidden_size, dtype, device="cpu"):
    actual, expected, atol, rtol = _inputs(num_tokens, hidden_size, dtype, device)
    return [actual, expected], [expected, actual], [None, expected.clone()], [atol, atol], [rtol, rtol]


compare_pairs.override_tolerance(torch.float32, atol=0.0, rtol=1e-6, reason="as tolerance_stats")
