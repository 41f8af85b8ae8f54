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


@tolerance_stats.register_input_generator
def _inputs(num_tokens, hidden_size, dtype, device="cpu"):
    g = torch.Generator().manual_seed(0)
    expected = torch.randn(num_tokens, hidden_size, generator=g)
    actual = expected + 1e-3 * torch.randn(num_tokens, hidden_size, generator=g)
    return actual.to(device=device, dtype=dtype), expected.to(device=device, dtype=dtype), 1e-3, 1e-3


tolerance_stats.override_tolerance(
    torch.float32, atol=0.0, rtol=1e-6,
    reason="maxima and counts are exact; the float32 division of the relative error may differ by an ulp")
