"""Triton provider of `tolerance_stats`: every comparison figure in one pass.

Each program reduces one block of elements to partial figures and folds them
into the four-float result with atomics (max of non-negative floats, sums), so
a compared output costs one launch instead of ~20 (ir/ops/compare.py).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from irshim.ir.ops import compare as _compare  # noqa: F401  (registers the op)
from irshim.ir.op import get_op

from . import _support as S

# Block of 4096 elements with 8 warps: a 16M-element bf16 pair (64 MB read) in
# ~25 µs on an H200, where launches, not bandwidth, bound the typical sizes.
BLOCK = 4096
NUM_WARPS = 8


@triton.jit
def _stats_kernel(
    a_ptr, e_ptr, out_ptr,      # inputs (any float dtype), float32[4] output (zeroed)
    n, atol, rtol,              # element count, tolerance
    BLOCK: tl.constexpr,
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    a = tl.load(a_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    e = tl.load(e_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    inf = float("inf")
    fin_a = tl.abs(a) < inf           # False for NaN and infinities
    fin_e = tl.abs(e) < inf
    both = fin_a & fin_e
    diff = tl.where(both, tl.abs(a - e), 0.0)
    rel = tl.where(both, diff / tl.maximum(tl.abs(e), tl.maximum(atol, 1.1754943508222875e-38)), 0.0)
    close = both & (diff <= atol + rtol * tl.abs(e))
    nan_both = (a != a) & (e != e)
    same_inf = (tl.abs(a) == inf) & (a == e)
    outside = mask & ~(close | nan_both | same_inf)
    disagree = mask & (fin_a != fin_e)
    tl.atomic_max(out_ptr + 0, tl.max(tl.where(mask, diff, 0.0), axis=0))
    tl.atomic_max(out_ptr + 1, tl.max(tl.where(mask, rel, 0.0), axis=0))
    tl.atomic_add(out_ptr + 2, tl.sum(outside.to(tl.float32), axis=0))
    tl.atomic_max(out_ptr + 3, tl.max(disagree.to(tl.float32), axis=0))


def _supports(actual: Tensor, expected: Tensor, atol: float, rtol: float) -> bool:
    return (actual.shape == expected.shape and actual.dtype in S.DTYPES and expected.dtype in S.DTYPES
            and S.device_ok(actual) and S.same_device(actual, expected)
            and actual.is_contiguous() and expected.is_contiguous() and actual.numel() < 2**31)


@get_op("tolerance_stats").register_impl("triton", supported=S.platform_supported, supports_args=_supports)
def tolerance_stats_triton(actual: Tensor, expected: Tensor, atol: float, rtol: float) -> Tensor:
    out = torch.zeros(4, dtype=torch.float32, device=actual.device)
    n = actual.numel()
    if n:
        with S.on_device(actual):
            _stats_kernel[(S.cdiv(n, BLOCK),)](actual, expected, out, n, atol, rtol,
                                               BLOCK=BLOCK, num_warps=NUM_WARPS)
    return out
