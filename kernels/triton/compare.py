"""Triton providers of `tolerance_stats` and `compare_pairs`: every comparison figure in one pass.

One kernel compares up to `SLOTS` (two) pairs of tensors in one launch: the grid runs
over the blocks of every pair, each program reduces one block of one pair to
partial figures and folds them into that pair's five-float row with atomics
(max of non-negative floats, sums). `tolerance_stats` is a one-pair launch;
`compare_pairs` launches once per two pairs: a shadow-mode compared call of a
norm with residual under inference_mode went from 12 kernel launches (two stats
launches and their zeroed outputs, four launches for each mutation flag) to two
(benchmarks/results/shadow_call_breakdown*.md).
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl
from torch import Tensor

from irshim.ir.ops import compare as _compare  # noqa: F401  (registers the ops)
from irshim.ir.op import get_op

from . import _support as S

OPS = ("tolerance_stats", "compare_pairs")

# Block of 4096 elements with 8 warps: a 16M-element bf16 pair (64 MB read) in
# ~25 µs on an H200, where launches, not bandwidth, bound the typical sizes.
BLOCK = 4096
NUM_WARPS = 8
SLOTS = 2
"""Pairs a launch takes. A launch's host cost grows with its arguments, 0.4-0.9 µs each on
the H100 machine's host (benchmarks/results/triton_launch_cost_h100.md: an empty kernel took
10.2 / 15.5 / 21.5 µs with 1 / 14 / 28 arguments). Two slots (14 arguments) fit the usual
compared call: a norm with residual compares two pairs (its mutated inputs are its
outputs), an activation one; RoPE under inference_mode has four (two launches)."""
FIELDS = len(_compare.PAIR_FIELDS)


@triton.jit
def _bits(x, BITS: tl.constexpr):
    """x's bits as an integer of its width."""
    if BITS == 8:
        return x.to(tl.int8, bitcast=True)
    elif BITS == 16:
        return x.to(tl.int16, bitcast=True)
    elif BITS == 32:
        return x.to(tl.int32, bitcast=True)
    else:
        return x.to(tl.int64, bitcast=True)


@triton.jit
def _pair_block(
    a_ptr, e_ptr, b_ptr, row_ptr, block, n, atol, rtol,
    HAS_BASE: tl.constexpr, BITS: tl.constexpr, BLOCK: tl.constexpr,
):
    """Fold block `block` of one pair into its row: the four tolerance figures, and with
    a baseline whether either side differs from it bit for bit."""
    offs = block.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    a_raw = tl.load(a_ptr + offs, mask=mask, other=0.0)
    e_raw = tl.load(e_ptr + offs, mask=mask, other=0.0)
    a = a_raw.to(tl.float32)
    e = e_raw.to(tl.float32)
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
    tl.atomic_max(row_ptr + 0, tl.max(tl.where(mask, diff, 0.0), axis=0))
    tl.atomic_max(row_ptr + 1, tl.max(tl.where(mask, rel, 0.0), axis=0))
    tl.atomic_add(row_ptr + 2, tl.sum(outside.to(tl.float32), axis=0))
    tl.atomic_max(row_ptr + 3, tl.max(disagree.to(tl.float32), axis=0))
    if HAS_BASE:
        b_raw = tl.load(b_ptr + offs, mask=mask, other=0.0)
        changed = (_bits(a_raw, BITS) != _bits(b_raw, BITS)) | (_bits(e_raw, BITS) != _bits(b_raw, BITS))
        tl.atomic_max(row_ptr + 4, tl.max(changed.to(tl.float32), axis=0))


# Sizes and block offsets are not specialised on (n % 16, n == 1): every new size would
# otherwise compile a variant, ~0.1-0.3 s inside a sampled call of a running model.
@triton.jit(do_not_specialize=["n0", "n1", "start1"])
def _pairs_kernel(
    out_ptr,                      # float32 [SLOTS, FIELDS], zeroed (rows of 5)
    a0, e0, b0, n0, atol0, rtol0,
    a1, e1, b1, n1, atol1, rtol1,
    start1,                       # first block of pair 1 (unused: the grid's size)
    BASE0: tl.constexpr, BASE1: tl.constexpr, BITS0: tl.constexpr, BITS1: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    if pid < start1:
        _pair_block(a0, e0, b0, out_ptr, pid, n0, atol0, rtol0, BASE0, BITS0, BLOCK)
    else:
        _pair_block(a1, e1, b1, out_ptr + 5, pid - start1, n1, atol1, rtol1, BASE1, BITS1, BLOCK)


def _launch(out: Tensor, actual, expected, baseline, atol, rtol) -> None:
    """Rows of up to SLOTS pairs into `out` (zeroed, [len(actual), FIELDS]), one launch."""
    slots, starts, flags = [], [], []
    blocks = 0
    for a, e, b, at, rt in zip(actual, expected, baseline, atol, rtol):
        n = a.numel()
        starts.append(blocks)
        blocks += S.cdiv(n, BLOCK)
        slots += (a, e, b if b is not None else a, n, float(at), float(rt))
        flags.append((b is not None, 8 * a.element_size()))
    if blocks == 0:
        return
    if len(flags) < SLOTS:  # the unused slot is never reached (its first block is the grid's size)
        slots += slots[:6]
        starts.append(blocks)
        flags.append((False, 32))
    _pairs_kernel[(blocks,)](
        out, *slots, starts[1],
        BASE0=flags[0][0], BASE1=flags[1][0], BITS0=flags[0][1], BITS1=flags[1][1],
        BLOCK=BLOCK, num_warps=NUM_WARPS,
    )


_LOADED = frozenset((*S.DTYPES, torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8))
"""What the kernel loads and compares in float32 as the native op does (a compared call's inputs
include integer tensors: RoPE's positions); float64 (computed in float64), bool and complex go native."""
_FP8 = frozenset((torch.float8_e4m3fn, torch.float8_e5m2))


@functools.cache
def _loaded() -> frozenset[torch.dtype]:
    """`_LOADED`, and the FP8 dtypes (the quant layers' outputs) where Triton converts them:
    its interpreter, and GPUs of compute capability 8.9 or more."""
    fp8 = S.INTERPRET or (torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 9))
    return _LOADED | _FP8 if fp8 else _LOADED


def _pair_ok(a: Tensor, e: Tensor, b: Tensor | None) -> bool:
    """A pair (and its baseline) the kernel reads: one shape, dtypes it loads, contiguous,
    on a device the kernels run on and the same one; a baseline of the pair's own dtype."""
    loaded = _loaded()
    return (a.shape == e.shape and a.dtype in loaded and e.dtype in loaded
            and S.device_ok(a) and S.same_devices(a, e, b)
            and a.is_contiguous() and e.is_contiguous() and a.numel() < 2**31
            and (b is None or (b.dtype == a.dtype == e.dtype and b.shape == a.shape and b.is_contiguous())))


def _supports(actual: Tensor, expected: Tensor, atol: float, rtol: float) -> bool:
    return _pair_ok(actual, expected, None)


def _pairs_supported(actual: list[Tensor], expected: list[Tensor], baseline: list[Tensor | None],
                     atol: list[float], rtol: list[float]) -> bool:
    n = len(actual)
    return (n > 0 and len(expected) == len(baseline) == len(atol) == len(rtol) == n
            and all(map(_pair_ok, actual, expected, baseline))
            and S.same_devices(*actual))


@get_op("tolerance_stats").register_impl("triton", supported=S.platform_supported, supports_args=_supports)
def tolerance_stats_triton(actual: Tensor, expected: Tensor, atol: float, rtol: float) -> Tensor:
    out = torch.zeros(1, FIELDS, dtype=torch.float32, device=actual.device)
    with S.on_device(actual):
        _launch(out, (actual,), (expected,), (None,), (atol,), (rtol,))
    return out[0, :4]


@get_op("compare_pairs").register_impl("triton", supported=S.platform_supported, supports_args=_pairs_supported)
def compare_pairs_triton(actual: list[Tensor], expected: list[Tensor], baseline: list[Tensor | None],
                         atol: list[float], rtol: list[float]) -> Tensor:
    n = len(actual)
    out = torch.zeros(n, FIELDS, dtype=torch.float32, device=actual[0].device)
    with S.on_device(actual[0]):
        for i in range(0, n, SLOTS):
            j = min(i + SLOTS, n)
            _launch(out[i:j] if (i, j) != (0, n) else out, actual[i:j], expected[i:j], baseline[i:j],
                    atol[i:j], rtol[i:j])
    return out
