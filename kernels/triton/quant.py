"""Triton FP8 quantization: static, dynamic per-tensor / per-token / per-group, and
RMS norm fused with static or dynamic per-token quantization.

Kernels first (one per access pattern), then launch configurations, launchers,
the graph-visible ``triton_op`` forms and the IR registrations.

Semantics are the IR's (``ir/ops/quant.py``): float32 arithmetic,
``scale = max(amax / 448, MIN_SCALE)``, ``q = fp8(clamp(x / scale, ±448))``
with IEEE division (see `_to_fp8`) and round-to-nearest-even; the fused kernels
round the norm output to x's dtype before quantizing, as the unfused pair does.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import triton_op, wrap_triton

from irshim.ir.ops import quant as qops

from . import _support as S
from ._support import flat_index  # by name: Inductor copies the JIT helpers a kernel names, not modules
from .layernorm import add_chunk, chunked_rstd  # by name, as flat_index

OPS = tuple(op.name for op in qops.OPS)

FP8_DTYPE = qops.FP8_DTYPE
FP8_MAX: tl.constexpr = tl.constexpr(qops.FP8_MAX)
MIN_SCALE: tl.constexpr = tl.constexpr(qops.MIN_SCALE)


# ---------------------------------------------------------------- kernels


@triton.jit
def _to_fp8(x, scale, Q):
    """x (float32) / scale, saturated to ±448, rounded to nearest even in Q's FP8 type.

    The quotient is IEEE division's without a division per element: with
    inv = RN(1 / scale) (one division per row or program, `scale` being a
    scalar or a [rows, 1] column), y = RN(x * inv) is within an ulp of x / scale,
    and one Newton step with the exact remainder (an FMA) rounds it correctly
    (Markstein's theorem). A full-precision division per element made the kernels
    ALU-bound on wide rows (H200 sweep, 16384 x 14336 per-token quant: 323 µs
    against Inductor's 244 with its approximate division).
    """
    inv = tl.math.div_rn(tl.full(scale.shape, 1.0, tl.float32), scale)
    y = x * inv
    rem = tl.fma(y, -scale, x)  # -scale, not -y: one negation a row, not one an element (PTX)
    # rem = 0: y is exact (and keeps the sign of -0); x = ±inf: rem is NaN and y right.
    y = tl.where(tl.abs(rem) > 0, tl.fma(rem, inv, y), y)
    # No clamp to ±FP8_MAX: the conversion saturates (`cvt.rn.satfinite`, emulated under the
    # interpreter by `interpreter_fp8_rounding`), which rounds as clamping first does and keeps
    # a NaN a NaN, as native's clamp does (min/max made it ±448). Two instructions an element.
    return y.to(Q.dtype.element_ty, fp_downcast_rounding="rtne")


@triton.jit
def _scale_of(amax):
    return tl.maximum(tl.math.div_rn(amax, FP8_MAX), MIN_SCALE)


@triton.jit
def _tile(tile, N_ROWS, N_COLS, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Rows, columns and mask of tile number `tile`, column blocks fastest: consecutive
    programs stream consecutive memory. (A 2-D grid with row blocks fastest was 5% slower
    on H200, static quant 16384 x 14336 in 2048-element tiles: 172.6 against 164.7 µs.)"""
    col_blocks = tl.cdiv(N_COLS, BLOCK_N)
    rows = (tile // col_blocks) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = (tile % col_blocks) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = (rows < N_ROWS)[:, None] & (cols < N_COLS)[None, :]
    return rows.to(tl.int64), cols, mask


@triton.jit
def _peak(X, X_ROW_STRIDE, N_ROWS, N_COLS, first, step, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """max |x| in float32 over tiles first, first + step, ... (see `_tile`)."""
    n_tiles = tl.cdiv(N_ROWS, BLOCK_M) * tl.cdiv(N_COLS, BLOCK_N)
    peak = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for tile in range(first, n_tiles, step):
        rows, cols, mask = _tile(tile, N_ROWS, N_COLS, BLOCK_M, BLOCK_N)
        x = tl.load(X + rows[:, None] * X_ROW_STRIDE + cols[None, :], mask=mask, other=0.0)
        peak = tl.maximum(peak, tl.abs(x.to(tl.float32)))
    return tl.max(tl.max(peak, axis=1), axis=0)


@triton.jit
def _store_scale(SCALE_OUT, scale, pid):
    """The program whose `pid` is 0 writes the per-tensor scale (a 2-vector store: scalar
    masks are not portable)."""
    two = tl.arange(0, 2)
    tl.store(SCALE_OUT + two, scale + tl.zeros([2], tl.float32), mask=(two + pid) == 0)


@triton.jit
def _amax_kernel(
    X, X_ROW_STRIDE,      # input rows
    AMAX,                 # [1] float32, zero-initialised: atomically maxed
    N_ROWS, N_COLS,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Persistent: each program strides over the tiles and makes one atomic at the end.
    (With one atomic per tile, moving from 4096- to 2048-element tiles took the dynamic
    per-tensor path from 315.6 to 370.4 µs at 16384 x 14336 on H200.)"""
    peak = _peak(X, X_ROW_STRIDE, N_ROWS, N_COLS, tl.program_id(0), tl.num_programs(0), BLOCK_M, BLOCK_N)
    tl.atomic_max(AMAX, peak)


@triton.jit
def _static_quant_kernel(
    X, X_ROW_STRIDE, Q, Q_ROW_STRIDE,
    SCALE,                # [1] float32: the scale, or the amax when FROM_AMAX
    SCALE_OUT,            # [1] float32: the scale derived from the amax (FROM_AMAX only)
    N_ROWS, N_COLS,
    FROM_AMAX: tl.constexpr,   # dynamic per-tensor: scale = max(amax / 448, MIN_SCALE)
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    tile = tl.program_id(0)
    if FROM_AMAX:
        # Last tiles first: the amax pass read them last, so they may still be in L2.
        tile = tl.num_programs(0) - 1 - tile
    rows, cols, mask = _tile(tile, N_ROWS, N_COLS, BLOCK_M, BLOCK_N)
    x = tl.load(X + rows[:, None] * X_ROW_STRIDE + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    scale = tl.load(SCALE)  # after x's load: both round trips overlap
    if FROM_AMAX:
        scale = _scale_of(scale)
        _store_scale(SCALE_OUT, scale, tl.program_id(0))
    tl.store(Q + rows[:, None] * Q_ROW_STRIDE + cols[None, :], _to_fp8(x, scale, Q), mask=mask)


@triton.jit
def _static_quant_flat_kernel(
    X, Q, SCALE, N,
    BLOCK: tl.constexpr,
    EVEN: tl.constexpr,   # BLOCK divides N: no mask
    I64: tl.constexpr,    # N does not fit int32 offsets
):
    """Static quant of a contiguous tensor seen flat (the activations' flat indexing: int32
    offsets where they fit, no row/column split, no mask where the blocks tile it). No cache
    hints: in quant17 (results/sweep_session10.txt) their effect changed sign with the size. On
    the H100, evict-first loads alone were ~20% faster than no hints at 4096 x 4096, whose
    tensors fit its L2 (14.2-14.6 against 17.9 µs and more), and over 1% slower from 4096 x 8192
    up, where evict-first loads with streaming stores led by 0.3-1%; on the H200 all were within
    1% but evict-first loads at 4096 x 4096 (3.5% faster). Where the tensors fit L2 the time
    depends on what the benchmark leaves there, so no rule was drawn from that size."""
    idx = flat_index(BLOCK, I64)
    mask = None if EVEN else idx < N
    x = tl.load(X + idx, mask=mask, other=None if EVEN else 0.0).to(tl.float32)
    scale = tl.load(SCALE)
    tl.store(Q + idx, _to_fp8(x, scale, Q), mask=mask)


@triton.jit
def _dynamic_quant_one_program_kernel(
    X, X_ROW_STRIDE, Q, Q_ROW_STRIDE,
    SCALE_OUT,            # [1] float32 out
    N_ROWS, N_COLS,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Dynamic per-tensor quant of a small tensor by one program: an amax pass and a
    quant pass over [BLOCK_M, BLOCK_N] tiles (the second reads from L1/L2), one launch
    instead of a memset, an amax kernel and a quant kernel."""
    scale = _scale_of(_peak(X, X_ROW_STRIDE, N_ROWS, N_COLS, 0, 1, BLOCK_M, BLOCK_N))
    _store_scale(SCALE_OUT, scale, 0)
    for tile in range(0, tl.cdiv(N_ROWS, BLOCK_M) * tl.cdiv(N_COLS, BLOCK_N)):
        rows, cols, mask = _tile(tile, N_ROWS, N_COLS, BLOCK_M, BLOCK_N)
        x = tl.load(X + rows[:, None] * X_ROW_STRIDE + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        tl.store(Q + rows[:, None] * Q_ROW_STRIDE + cols[None, :], _to_fp8(x, scale, Q), mask=mask)


@triton.jit
def _per_token_quant_kernel(
    X, X_ROW_STRIDE, Q, Q_ROW_STRIDE,
    SCALES,               # [rows] float32 out (the [..., 1] scales, contiguous)
    UB,                   # [1] float32 amax cap (HAS_UB only)
    N_ROWS, N_COLS,
    HAS_UB: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    SINGLE_PASS: tl.constexpr,   # whole rows in registers; else an amax pass and a quant pass
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_mask = rows < N_ROWS
    x_rows = X + rows.to(tl.int64)[:, None] * X_ROW_STRIDE
    q_rows = Q + rows.to(tl.int64)[:, None] * Q_ROW_STRIDE
    if SINGLE_PASS:
        cols = tl.arange(0, BLOCK_N)
        mask = row_mask[:, None] & (cols < N_COLS)[None, :]
        # The amax in x's own dtype (exact: abs and max do not round), so that only x's
        # 16-bit copy is live across the row reduction: 4 warps then hold a 14336-wide row
        # without spilling (167 registers against 255 + spills), H200 16384 x 14336:
        # 185.6 µs against 205.0 for float32 at 16 warps (explore_configs.py rows3).
        x = tl.load(x_rows + cols[None, :], mask=mask, other=0.0)
        amax = tl.max(tl.abs(x), axis=1).to(tl.float32)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for start in range(0, N_COLS, BLOCK_N):
            cols = start + tl.arange(0, BLOCK_N)
            mask = row_mask[:, None] & (cols < N_COLS)[None, :]
            x = tl.load(x_rows + cols[None, :], mask=mask, other=0.0, eviction_policy="evict_last")
            acc = tl.maximum(acc, tl.abs(x.to(tl.float32)))
        amax = tl.max(acc, axis=1)
    if HAS_UB:
        amax = tl.minimum(amax, tl.load(UB))
    scale = _scale_of(amax)
    tl.store(SCALES + rows, scale, mask=row_mask)
    if SINGLE_PASS:
        tl.store(q_rows + cols[None, :], _to_fp8(x.to(tl.float32), scale[:, None], Q), mask=mask)
    else:
        for start in range(0, N_COLS, BLOCK_N):
            cols = start + tl.arange(0, BLOCK_N)
            mask = row_mask[:, None] & (cols < N_COLS)[None, :]
            x = tl.load(x_rows + cols[None, :], mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
            tl.store(q_rows + cols[None, :], _to_fp8(x, scale[:, None], Q), mask=mask)


@triton.jit
def _group_quant_kernel(
    X, X_ROW_STRIDE, Q, Q_ROW_STRIDE,
    SCALES, SCALES_ROW_STRIDE,   # [rows, groups_per_row] float32 out
    N_ROWS, N_COLS,              # N_COLS: a multiple of GROUP
    GROUP: tl.constexpr,         # group size (a power of two)
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,       # a multiple of GROUP
):
    """[BLOCK_M, BLOCK_N] tiles as the static kernel (`_tile`), groups reduced on a
    [BLOCK_M, BLOCK_N / GROUP, GROUP] view. H200, 128-wide groups, bf16: 16384 x 14336
    in 1024-element tiles of 2 warps 188.0 µs (88% of copy) against 195.2 for the
    earlier kernel of 16 groups a program (explore_configs.py group3)."""
    rows, cols, mask = _tile(tl.program_id(0), N_ROWS, N_COLS, BLOCK_M, BLOCK_N)
    x = tl.load(X + rows[:, None] * X_ROW_STRIDE + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    x = tl.reshape(x, [BLOCK_M, BLOCK_N // GROUP, GROUP])
    scale = _scale_of(tl.max(tl.abs(x), axis=2))
    # Groups of the tile; a group lies wholly inside or outside the row (N_COLS % GROUP == 0).
    groups = (tl.program_id(0) % tl.cdiv(N_COLS, BLOCK_N)) * (BLOCK_N // GROUP) + tl.arange(0, BLOCK_N // GROUP)
    group_mask = (rows < N_ROWS)[:, None] & (groups < N_COLS // GROUP)[None, :]
    tl.store(SCALES + rows[:, None] * SCALES_ROW_STRIDE + groups[None, :], scale, mask=group_mask)
    q = tl.reshape(_to_fp8(x, scale[:, :, None], Q), [BLOCK_M, BLOCK_N])
    tl.store(Q + rows[:, None] * Q_ROW_STRIDE + cols[None, :], q, mask=mask)


@triton.jit
def _normed_chunk(src_rows, W, W_STRIDE, start, row_mask, rstd, N_COLS,
                  HAS_WEIGHT: tl.constexpr, BLOCK_N: tl.constexpr, OUT_DTYPE: tl.constexpr,
                  EVICT: tl.constexpr):
    """Columns [start, start + BLOCK_N) of the normed rows, rounded to OUT_DTYPE as the
    unfused norm's output is (returned in float32), with their columns and mask.
    EVICT: the rows' L2 policy ("evict_last" when a later pass reads them again)."""
    cols = start + tl.arange(0, BLOCK_N)
    col_mask = cols < N_COLS
    mask = row_mask[:, None] & col_mask[None, :]
    y = tl.load(src_rows + cols[None, :], mask=mask, other=0.0, eviction_policy=EVICT).to(tl.float32)
    y = y * rstd[:, None]
    if HAS_WEIGHT:
        w = tl.load(W + cols * W_STRIDE, mask=col_mask, other=0.0, eviction_policy="evict_last")
        y = y * w.to(tl.float32)[None, :]
    return y.to(OUT_DTYPE).to(tl.float32), cols, mask


@triton.jit
def _rms_norm_quant_kernel(
    # inputs: x and the residual to add (unused unless HAS_RESIDUAL), row strides
    X, X_ROW_STRIDE, R, R_ROW_STRIDE,
    # weight [N_COLS] and its stride (unused unless HAS_WEIGHT)
    W, W_STRIDE,
    # outputs: FP8 rows, the sum x + residual (HAS_RESIDUAL), per-row scales (DYNAMIC)
    Q, Q_ROW_STRIDE, RES_OUT, RES_OUT_ROW_STRIDE, SCALES,
    # the static scale (not DYNAMIC), the amax cap (HAS_UB)
    SCALE, UB,
    N_ROWS, N_COLS, EPS,
    HAS_RESIDUAL: tl.constexpr, HAS_WEIGHT: tl.constexpr,
    DYNAMIC: tl.constexpr,        # per-token scales from the normed rows; else SCALE
    HAS_UB: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    SINGLE_PASS: tl.constexpr,    # whole rows in registers; else 2 (static) or 3 (dynamic) passes
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_mask = rows < N_ROWS
    rows64 = rows.to(tl.int64)
    x_rows = X + rows64[:, None] * X_ROW_STRIDE
    r_rows = R + rows64[:, None] * R_ROW_STRIDE
    q_rows = Q + rows64[:, None] * Q_ROW_STRIDE
    res_rows = RES_OUT + rows64[:, None] * RES_OUT_ROW_STRIDE
    eps = tl.cast(EPS, tl.float32)  # Inductor passes float scalars as fp64: keep the math fp32

    if SINGLE_PASS:
        cols = tl.arange(0, BLOCK_N)
        col_mask = cols < N_COLS
        mask = row_mask[:, None] & col_mask[None, :]
        # Every load is issued before the reduction (one memory round trip at decode sizes).
        x = tl.load(x_rows + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        if HAS_RESIDUAL:
            r = tl.load(r_rows + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        if HAS_WEIGHT:
            w = tl.load(W + cols * W_STRIDE, mask=col_mask, other=0.0).to(tl.float32)
        if not DYNAMIC:
            scale = tl.load(SCALE)
        if HAS_RESIDUAL:
            s = (x + r).to(RES_OUT.dtype.element_ty)  # the residual is rounded to x's dtype
            tl.store(res_rows + cols[None, :], s, mask=mask)
            x = s.to(tl.float32)
        rstd = tl.rsqrt(tl.sum(x * x, axis=1) / N_COLS + eps)
        y = x * rstd[:, None]
        if HAS_WEIGHT:
            y = y * w[None, :]
        y = y.to(X.dtype.element_ty).to(tl.float32)  # the norm output, rounded as the unfused pair
        if DYNAMIC:
            amax = tl.max(tl.abs(y), axis=1)
            if HAS_UB:
                amax = tl.minimum(amax, tl.load(UB))
            row_scale = _scale_of(amax)
            tl.store(SCALES + rows, row_scale, mask=row_mask)
            tl.store(q_rows + cols[None, :], _to_fp8(y, row_scale[:, None], Q), mask=mask)
        else:
            tl.store(q_rows + cols[None, :], _to_fp8(y, scale, Q), mask=mask)
    else:
        # Pass 1: sum of squares (and the residual, written once).
        rstd = chunked_rstd(x_rows, r_rows, res_rows, row_mask, N_COLS, eps, HAS_RESIDUAL, BLOCK_M, BLOCK_N)
        if HAS_RESIDUAL:
            tl.debug_barrier()  # later passes re-read the residual this program wrote
            src_rows = res_rows
        else:
            src_rows = x_rows
        if DYNAMIC:
            # Pass 2: amax of the (rounded) normed rows.
            peak = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            for start in range(0, N_COLS, BLOCK_N):
                y, _, _ = _normed_chunk(src_rows, W, W_STRIDE, start, row_mask, rstd, N_COLS, HAS_WEIGHT,
                                        BLOCK_N, X.dtype.element_ty, "evict_last")
                peak = tl.maximum(peak, tl.abs(y))
            amax = tl.max(peak, axis=1)
            if HAS_UB:
                amax = tl.minimum(amax, tl.load(UB))
            row_scale = _scale_of(amax)
            tl.store(SCALES + rows, row_scale, mask=row_mask)
            scale2 = row_scale[:, None]
        else:
            scale2 = tl.load(SCALE) + tl.zeros((BLOCK_M, 1), dtype=tl.float32)
        # Last pass: normalise again and quantize.
        for start in range(0, N_COLS, BLOCK_N):
            y, cols, mask = _normed_chunk(src_rows, W, W_STRIDE, start, row_mask, rstd, N_COLS, HAS_WEIGHT,
                                          BLOCK_N, X.dtype.element_ty, "evict_first")
            tl.store(q_rows + cols[None, :], _to_fp8(y, scale2, Q), mask=mask)


@triton.jit
def _fused_add_quant_pipelined_kernel(
    X, X_ROW_STRIDE, R, R_ROW_STRIDE, W, W_STRIDE,
    Q, Q_ROW_STRIDE, RES_OUT, RES_OUT_ROW_STRIDE, SCALE,
    N_ROWS, N_COLS, EPS,
    HAS_WEIGHT: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Fused-add RMS norm + static quant of rows too long for registers, pipelined over rows: a
    program takes rows pid, pid + programs, ...; while it streams row k's x and residual (pass 1:
    the sum, written once, and its sum of squares) it normalises and quantizes row k - 1 from the sum
    it wrote (pass 2, read back from L2). Each loop iteration then mixes DRAM streaming with pass 2's
    arithmetic, which the chunked path runs in two phases, every program in step. Rounding as the
    chunked path of `_rms_norm_quant_kernel` (bit-identical results)."""
    pid = tl.program_id(0)
    programs = tl.num_programs(0)
    one = tl.arange(0, 1)
    eps = tl.cast(EPS, tl.float32)
    scale = tl.load(SCALE) + tl.zeros((1, 1), dtype=tl.float32)
    rows = (pid + one).to(tl.int64)
    row_mask = rows < N_ROWS
    rstd = chunked_rstd(X + rows[:, None] * X_ROW_STRIDE, R + rows[:, None] * R_ROW_STRIDE,
                        RES_OUT + rows[:, None] * RES_OUT_ROW_STRIDE, row_mask, N_COLS, eps, True, 1, BLOCK_N)
    prev_rows = rows
    prev_mask = row_mask
    for row in range(pid + programs, N_ROWS, programs):
        tl.debug_barrier()  # pass 2 re-reads the sum this program wrote
        rows = (row + one).to(tl.int64)
        row_mask = rows < N_ROWS
        x_rows = X + rows[:, None] * X_ROW_STRIDE
        r_rows = R + rows[:, None] * R_ROW_STRIDE
        res_rows = RES_OUT + rows[:, None] * RES_OUT_ROW_STRIDE
        prev_res = RES_OUT + prev_rows[:, None] * RES_OUT_ROW_STRIDE
        q_rows = Q + prev_rows[:, None] * Q_ROW_STRIDE
        acc = tl.zeros((1, BLOCK_N), dtype=tl.float32)
        for start in range(0, N_COLS, BLOCK_N):
            # Row k - 1's loads first: all four go out before either store.
            y, y_cols, y_mask = _normed_chunk(prev_res, W, W_STRIDE, start, prev_mask, rstd, N_COLS, HAS_WEIGHT,
                                              BLOCK_N, X.dtype.element_ty, "evict_first")
            cols = start + tl.arange(0, BLOCK_N)
            s = add_chunk(x_rows, r_rows, res_rows, cols, row_mask[:, None] & (cols < N_COLS)[None, :])
            acc += s * s
            tl.store(q_rows + y_cols[None, :], _to_fp8(y, scale, Q), mask=y_mask)
        rstd = tl.rsqrt(tl.sum(acc, axis=1) / N_COLS + eps)
        prev_rows = rows
        prev_mask = row_mask
    tl.debug_barrier()
    prev_res = RES_OUT + prev_rows[:, None] * RES_OUT_ROW_STRIDE
    q_rows = Q + prev_rows[:, None] * Q_ROW_STRIDE
    for start in range(0, N_COLS, BLOCK_N):
        y, cols, mask = _normed_chunk(prev_res, W, W_STRIDE, start, prev_mask, rstd, N_COLS, HAS_WEIGHT, BLOCK_N,
                                      X.dtype.element_ty, "evict_first")
        tl.store(q_rows + cols[None, :], _to_fp8(y, scale, Q), mask=mask)


# ---------------------------------------------------------- launch config


@dataclass(frozen=True)
class RowConfig:
    """Row kernels (per-token, fused norm): rows a program, columns a step, warps."""

    block_m: int
    block_n: int
    num_warps: int
    single_pass: bool


@dataclass(frozen=True)
class TileConfig:
    """Element-wise kernels (static quant, amax): a [block_m, block_n] tile a program."""

    block_m: int
    block_n: int
    num_warps: int


# Row kernels (per-token quant, norm + quant). H100 sweep (benchmarks/bench_quant.py
# --sweep, bf16, CUDA-graph µs, "rows/warps", c<chunk>/warps = multi-pass; * = old rule):
# - Decode (< THROUGHPUT_ROWS rows): one row a program (rows shorter than
#   ROW_GROUP_ELEMENTS grouped), one warp per DECODE_COLS_PER_WARP columns, at most 16.
#     per-token   1 x 8192:  1/16 2.12  1/8 2.17 |  1 x 14336: 1/16 2.77  1/8 2.91
#     norm+dyn    1 x 14336: 1/16 4.00  1/8 4.09 | norm+static 1 x 14336: 1/16 3.36  1/8 3.47
# - Throughput: one row a program, one warp per COLS_PER_WARP columns (32 a thread).
#     per-token   16384 x 4096: 1/4 67.7 (best; 2/16* 72.2) | 16384 x 14336: 1/16 243.2 (1/32* 257.7)
#     norm+dyn    16384 x 8192: 1/8 147.5 (1/16* 186.4)     | 1024 x 14336: 1/16 24.2 (best)
#   except static norm + quant over rows longer than MAX_STATIC_SINGLE_PASS: two passes
#   over CHUNK columns (the second re-reads the row from L2, kept there by evict_last),
#   CHUNK_WARPS warps. H100 (first sweep, no eviction hints; chunks of 4096):
#     norm+static 16384 x 14336: c4096/16 271.8  2/8 314.4  1/16 > 318
#     fused-add   16384 x 14336: c4096/16 564.9  1/16 596.6
#   (dynamic norm + quant needs three passes when chunked: 1/16 301.6 against c2048/16 365.5).
#   With the eviction hints, H200 (H100 at 1024 rows; results/sweep_session3.txt):
#     norm+static 16384 x 14336: c4096/8 243.6  c2048/8 244.2  c4096/16 259.1  2/8 293.5
#                  4096 x 14336: c2048/8 70.5  c4096/8 71.3  c4096/16 73.0 | 1024 x 14336 (H100): c2048/8 23.9  c4096/16 25.7
#     fused-add   16384 x 14336: c4096/16 420.4  c2048/8 422.5  2/8 431.5
# - H200, single pass at >= THROUGHPUT_ROWS rows (explore_configs.py rows3 / fused3,
#   results/sweep_session5_h200.txt), where fewer warps or other row counts won:
#     per-token (amax in x's dtype) 16384 x 14336: 1/4 185.6  (1/16 float32 amax 205.0, Inductor 248.1)
#                 4096 x 14336: 1/4 50.2 (1/16 55.1) | 1024 x 14336: 1/4 16.0 (17.2) | 16384 x 4096: 1/4 50.4 (51.3)
#                16384 x 8192: 1/4 104.2  1/8 102.7 (both float32 amax 104.7; Inductor 136.5): PER_TOKEN_WARPS
#     fused-add static 1024 x 4096: 1/16 9.21  2/8 9.11 (1/4 9.77; pair 12.51, Inductor 10.24)
#                      1024 x 8192: 1/32 17.38 (1/8 18.28; pair 24.02, Inductor 17.83): ADD_NORM_COLS_PER_WARP
#     static norm     16384 x 8192: 2/4 126.2  2/16 131.2  1/8 142.9 (Inductor 137.0)
#                      1024 x 8192: 2/4 11.91  1/8 11.91 (Inductor 11.41)
# - H200, static norm + quant over 8192 columns after the cheaper FP8 conversion (session 8,
#   explore_configs.py quant11 / quant12, results/sweep_session8_h200.txt, four processes): 2/4 (245
#   registers a thread, two programs a multiprocessor) ran fast in some processes and 12-15% slower
#   in others (4096 rows 33.9 or 38.2, 16384 rows 118.3 or 140.0; bench_quant's full run: the slow
#   one); 1/8 and 2/8 never varied by more than 1%:
#     1024 x 8192: 1/8 10.56-10.64  2/4 10.5-10.9  2/8 11.35-11.57 (Inductor 10.96-11.03)
#     4096 x 8192: 1/8 33.76-34.06  2/8 34.62-35.02 (Inductor 36.5-36.9)
#    16384 x 8192: 2/8 117.3-119.0  1/8 122.6-123.8 (Inductor 133.0-134.8): STATIC_NORM_* below
MAX_SINGLE_PASS = 16384
MAX_STATIC_SINGLE_PASS = 8192
CHUNK = 2048
CHUNK_WARPS = 8
THROUGHPUT_ROWS = 256
DECODE_COLS_PER_WARP = 512
COLS_PER_WARP = 1024
WIDE_COLS = 4096
"""From this row width (padded to a power of two) at throughput sizes, the H200 rules below."""
PER_TOKEN_WARPS = 4
ADD_NORM_COLS_PER_WARP = 256
"""Fused-add norm + static quant, single pass."""
STATIC_NORM_WARPS = 8
STATIC_NORM_PAIRED_ROWS = 16384
"""Static norm + quant of MAX_STATIC_SINGLE_PASS-wide rows at throughput sizes: one row a program,
two from this many rows, STATIC_NORM_WARPS warps."""
MAX_WARPS = 16
MAX_ROW_WARPS = 32
ROW_GROUP_ELEMENTS = 2048
"""Rows shorter than this are grouped, several a program (not swept: no model has them)."""
# Element-wise tiles (static / per-tensor quant, amax): enough programs to
# give every SM S.PROGRAMS_PER_SM (as the activation kernels), between MIN_PROGRAM and
# MAX_PROGRAM elements, 4 warps. H100 sweep (benchmarks/explore_configs.py, output in
# results/sweep_session3.txt; bf16, CUDA-graph µs, "rows/cols/warps"; old rule: 4096
# elements, 4 warps; tiles were then on a 2-D grid, see _tile):
#   static   1 x 4096: 1/512/4 1.28 (old 1.41, Inductor 1.27) | 16 x 8192: 1/512/4 1.46 (old 1.65, Ind. 1.44)
#           64 x 14336: 2/512/4 1.90  1/1024/4 1.95 (old 2.11)   | 1024 x 4096: 2/1024/8 5.11 1/2048/8 5.29 (old 5.78)
#        16384 x 8192: 1/2048/8 142.0 (best, old 144.8)        | 16384 x 14336: 1/2048/8 240.7  1/2048/4 242.7
#   H200, 2048-element tiles on a 1-D grid: 4 warps beat 8 (16384 x 14336: 164.7 against 175.6 µs).
# Per-group quant: the same tiles, at most GROUP_MAX_PROGRAM elements (or one group), a
# warp per GROUP_ELEMENTS_PER_WARP. H200 (128-wide groups, results/sweep_session5_h200.txt):
#   16384 x 4096: 1/1024/2 55.1  1/2048/4 56.5  2/1024/4 57.5 (16 groups a program, old kernel: 58.1; Inductor 61.5)
#   16384 x 14336: 1/1024/2 188.0  1/2048/4 188.7 (old 195.2)  | 1024 x 14336: 1/1024/2 13.1 (old 13.8, Ind. 15.0)
#   1/1024/4 and 1/2048/8 (256 elements a warp) were 20-25% slower at every size.
MIN_PROGRAM = 512
MAX_PROGRAM = 2048
TILE_MAX_COLS = 2048
TILE_WARPS = 4
GROUP_MAX_PROGRAM = 1024
GROUP_ELEMENTS_PER_WARP = 512
MAX_GROUP = 4096
# Dynamic per-tensor quant of a small tensor in one program. H200: the two-kernel
# path (memset + amax + quant) took 4.0 / 4.1 µs at 1 x 4096 / 1 x 8192 against
# Inductor's 1.8 / 2.4 (bench_quant.md); one program: 1.7 / 2.3 (bench_quant_dynamic.md).
# At 16 x 4096 (65536 elements, two-kernel path) 4.5 against 4.3.
ONE_PROGRAM_ELEMENTS = 16384
ONE_PROGRAM_TILE = 4096
ONE_PROGRAM_WARPS = 8
# Larger tensors: a persistent amax kernel, AMAX_PROGRAMS_PER_SM programs a SM (not swept).
AMAX_PROGRAMS_PER_SM = 8


# Fused-add norm + static quant of rows chunked in two passes (wider than MAX_STATIC_SINGLE_PASS), from
# PIPELINE_MIN_ROWS rows: `_fused_add_quant_pipelined_kernel` over PIPELINE_PROGRAMS_PER_SM programs a
# multiprocessor (at most half the rows), CHUNK columns, CHUNK_WARPS warps. H200, bf16, CUDA-graph µs
# (explore_configs.py quant13, results/sweep_session8_h200.txt, two rounds; "programs chunk/warps"):
#    1024 x 14336: 512 2048/8 31.8/31.5  528 2048/8 32.0/32.0  256 4096/16 32.8/32.7 (chunked 34.2/34.4,
#                  Inductor 35.9/36.4; the unfused pair 41.4-42.7 in the runs of the day)
#    4096 x 14336: 528 2048/8 111.9/111.6  2048 2048/8 114.1/113.5  1056 2048/8 128.5/128.2 (chunked 114.1/114.6)
#   16384 x 14336: 8192 2048/8 422.5/422.3  528 2048/8 423.4/423.8 (chunked 421.2/422.3)
# More programs keep more rows between a row's two passes: 1056 (8 a multiprocessor) let the sums
# leave L2 before pass 2 read them back. quant14 (production kernel) agrees: 1024 x 14336 528 2048/8
# 31.6/31.6  512 31.7/31.6  342 4096/16 32.5/32.3, 16 warps or 1024-column chunks 33-42.
PIPELINE_MIN_ROWS = 1024
PIPELINE_PROGRAMS_PER_SM = 4
# Single-pass rows from PIPELINE_SINGLE_PASS_COLS columns (padded) run pipelined too while one wave of
# two-row programs holds them (at most 2 x PIPELINE_PROGRAMS_PER_SM rows a multiprocessor), in
# CHUNK-column passes: the row kernel's one 32-warp row a program fits two programs a multiprocessor,
# four waves at 1024 rows. H100 and H200 (explore_configs.py quant15 / quant16, session 9, and quant13,
# results/sweep_session9.txt and sweep_session8_h200.txt; two rounds, "programs chunk/warps", µs):
#   H100 1024 x 8192: 512p 2048/8 20.52/20.57 (20.38/21.46 in a second run)  row kernel 21.81/21.81
#                     (1/32, the rule)  1/8 21.78/21.71  c4096/16 21.25/21.21  Inductor 21.31-23.66
#   H200 1024 x 8192: 512p 2048/8 16.64/16.57  row kernel 16.86/16.94  Inductor 17.72/17.79
#   H100 1280 x 8192: row kernel 27.36/27.35  640p 4096/16 27.82/27.68  512p 2048/8 28.35/28.26 (two waves:
#   the row kernel leads from here, by 6% at 2048-16384 rows)
PIPELINE_SINGLE_PASS_COLS = 8192


CHUNKED = RowConfig(1, CHUNK, CHUNK_WARPS, False)
"""Rows in CHUNK-column passes: the row kernel's over rows too long for one pass, and the
pipelined kernel's."""


ROW_KINDS = ("per_token", "norm_static", "norm_add_static", "norm_dynamic")


@S.cached_config
def row_config(n_rows: int, n_cols: int, kind: str = "per_token") -> RowConfig:
    """Launch configuration of the row kernels (measurements above). `kind`: per-token
    quant, or norm + quant (static, fused-add static, dynamic); static norm + quant
    chunks long rows sooner."""
    if kind not in ROW_KINDS:
        raise ValueError(f"row_config: kind {kind!r} is not one of {ROW_KINDS}")
    block_n = S.next_pow2(n_cols)
    throughput = n_rows >= THROUGHPUT_ROWS
    static_norm = kind in ("norm_static", "norm_add_static")
    if block_n > MAX_SINGLE_PASS or (static_norm and throughput and block_n > MAX_STATIC_SINGLE_PASS):
        return CHUNKED
    if throughput and block_n >= WIDE_COLS:
        if kind == "per_token":
            return RowConfig(1, block_n, PER_TOKEN_WARPS, True)
        if kind == "norm_add_static":
            return RowConfig(1, block_n, min(MAX_ROW_WARPS, block_n // ADD_NORM_COLS_PER_WARP), True)
        if kind == "norm_static" and block_n == MAX_STATIC_SINGLE_PASS:
            return RowConfig(1 if n_rows < STATIC_NORM_PAIRED_ROWS else 2, block_n, STATIC_NORM_WARPS, True)
    block_m = max(1, min(ROW_GROUP_ELEMENTS // block_n, S.next_pow2(max(n_rows, 1))))
    per_warp = COLS_PER_WARP if throughput else DECODE_COLS_PER_WARP
    return RowConfig(block_m, block_n, max(1, min(MAX_WARPS, block_m * block_n // per_warp)), True)


@S.cached_config
def pipeline_programs(n_rows: int, n_cols: int, kind: str, sm_count: int = 132) -> int:
    """Programs of `_fused_add_quant_pipelined_kernel` for this call, 0 where the row kernel runs
    (measurements above `PIPELINE_MIN_ROWS`)."""
    if kind != "norm_add_static" or n_rows < PIPELINE_MIN_ROWS:
        return 0
    slots = PIPELINE_PROGRAMS_PER_SM * sm_count
    if row_config(n_rows, n_cols, kind).single_pass and (
            S.next_pow2(n_cols) < PIPELINE_SINGLE_PASS_COLS or n_rows > 2 * slots):
        return 0
    return min(slots, n_rows // 2)


@S.cached_config
def tile_config(n_rows: int, n_cols: int, sm_count: int = 132) -> TileConfig:
    """Tiles of the element-wise kernels (measurements above)."""
    elements = S.program_elements(n_rows * n_cols, sm_count, MIN_PROGRAM, MAX_PROGRAM)
    block_n = min(S.next_pow2(n_cols), TILE_MAX_COLS, elements)
    block_m = max(1, min(elements // block_n, S.next_pow2(max(n_rows, 1))))
    return TileConfig(block_m, block_n, TILE_WARPS)


FlatConfig = S.FlatConfig


# Static quant over contiguous inputs runs flat (`_static_quant_flat_kernel`). H200, bf16,
# CUDA-graph µs ("elements/warps"; explore_configs.py quant8, results/sweep_session7_h200.txt,
# two rounds, the slower listed; "tiles" the tile kernel under tile_config):
#       1 x 4096: 1024/4 1.16  512/4 1.16  2048/8 1.19 (Inductor 1.00/1.17)
#      16 x 4096: 1024/4 1.25  2048/8 1.26  512/4 1.32 (Inductor 1.32)
#      16 x 8192: 2048/8 1.30  512/4 1.35  1024/4 1.38 (Inductor 1.35)
#     128 x 4096: 2048/8 1.53  1024/4 1.55 (Inductor 1.62) | 16 x 14336: 2048/8 1.40 (Inductor 1.43)
#    1024 x 4096: 1024/4 4.46  2048/8 4.47  2048/4 4.57  tiles 4.79
#   1024 x 14336: 2048/4 11.54  1024/4 11.54  2048/8 11.62  tiles 11.83 (Inductor 13.03)
#  16384 x 14336: 2048/4 165.8  1024/4 171.6  2048/8 174.7  tiles 165.5 (Inductor 188.9)
# Below FLAT_STATIC_SMALL elements 1024/4; to FLAT_STATIC_LARGE 8 elements a thread, 2048/8;
# from there 16 a thread, 2048/4, on GPUs of the H200's DRAM bandwidth a multiprocessor (HBM3e,
# 36.5 GB/s an SM); the H100 (HBM3, 25.4 GB/s an SM) keeps 2048/8 (explore_configs.py quant17,
# results/sweep_session10.txt: three H100 runs and one H200 run, the slower of two rounds each):
#   H100  4096 x 8192: 2048/8 35.16-35.39  2048/4 35.88 (Inductor 35.16-35.32)
#        4096 x 14336: 2048/8 59.43-60.10  2048/4 60.50-60.55 (Inductor 59.54-60.31)
#       16384 x 14336: 2048/8 231.27-232.00  2048/4 234.74 (Inductor 230.83-231.80)
#   H200 16384 x 14336: 2048/4 165.50  2048/8 172.02 | 16384 x 8192: 96.54  > 99.4 | 16384 x 4096: 49.06  50.25
# Both GPUs have 132 SMs and 50-60 MB of L2: DRAM bandwidth is what sets them apart. A GPU whose
# properties lack it, a ROCm GPU (not measured) and the interpreter take 2048/4.
FLAT_STATIC_SMALL = 16384
FLAT_STATIC_LARGE = 1 << 24


@S.cached_config
def flat_static_config(n_elements: int, gbs_per_sm: float | None = None) -> FlatConfig:
    """The flat static quant kernel's elements a program and warps (measurements above);
    `gbs_per_sm`: `S.memory_gbs_per_sm` of the GPU (read for large tensors only)."""
    if n_elements < FLAT_STATIC_SMALL:
        return FlatConfig(1024, 4)
    if n_elements < FLAT_STATIC_LARGE or S.narrow_dram(gbs_per_sm):
        return FlatConfig(2048, 8)
    return FlatConfig(2048, 4)


@S.cached_config
def group_config(n_rows: int, n_cols: int, group: int, sm_count: int = 132) -> TileConfig:
    """Tiles of the per-group kernel: whole groups, at most GROUP_MAX_PROGRAM elements
    unless a group is wider (measurements above)."""
    elements = max(group, S.program_elements(n_rows * n_cols, sm_count, MIN_PROGRAM, GROUP_MAX_PROGRAM))
    block_n = max(group, min(S.next_pow2(n_cols), elements))
    block_m = max(1, min(elements // block_n, S.next_pow2(max(n_rows, 1))))
    return TileConfig(block_m, block_n, max(1, block_m * block_n // GROUP_ELEMENTS_PER_WARP))


# ------------------------------------------------------------- predicates


def _scalar_ok(t: Tensor | None, x: Tensor) -> bool:
    return t is None or (t.numel() == 1 and t.dtype == torch.float32 and S.same_device(t, x))


_x_ok = S.input_ok


def _static_args(x, scale):
    return _x_ok(x) and scale is not None and _scalar_ok(scale, x)


def _dynamic_args(x):
    return _x_ok(x)


def _per_token_args(x, scale_ub=None):
    return _x_ok(x) and _scalar_ok(scale_ub, x)


def _group_args(x, group_size):
    # The kernel loads a group as one power-of-two block of columns.
    return (_x_ok(x) and 0 < group_size <= MAX_GROUP and group_size & (group_size - 1) == 0
            and x.shape[-1] % group_size == 0)


def _norm_static_args(x, weight, epsilon, scale):
    return _x_ok(x) and S.weight_ok(weight, x) and scale is not None and _scalar_ok(scale, x)


def _fused_add_static_args(x, x_residual, weight, epsilon, scale):
    return _norm_static_args(x, weight, epsilon, scale) and S.residual_ok(x_residual, x)


def _norm_dynamic_args(x, weight, epsilon, scale_ub=None):
    return _x_ok(x) and S.weight_ok(weight, x) and _scalar_ok(scale_ub, x)


# --------------------------------------------------------------- launchers
# `kernel(...)` arguments are the jitted kernels (eager) or wrap_triton(...) of
# them (inside the triton_ops). Outputs are fresh and contiguous.


def _fp8_like(x: Tensor) -> Tensor:
    return S.empty_like_rows(x, FP8_DTYPE)


def static_quant(x: Tensor, scale: Tensor, kernel=_static_quant_kernel, config: TileConfig | FlatConfig | None = None,
                 flat_kernel=_static_quant_flat_kernel) -> Tensor:
    """Static quant: flat over a contiguous x (or given a FlatConfig), else by tiles."""
    q = _fp8_like(x)
    n = x.numel()
    if isinstance(config, FlatConfig) or (config is None and x.is_contiguous()):
        if n:
            cfg = config or flat_static_config(n, S.memory_gbs_per_sm(x) if n >= FLAT_STATIC_LARGE else None)
            with S.on_device(x):
                flat_kernel[(S.cdiv(n, cfg.block),)](x, q, scale, n, BLOCK=cfg.block, EVEN=n % cfg.block == 0,
                                                     I64=n + cfg.block > S.INT32_MAX, num_warps=cfg.num_warps)
        return q
    if n:
        x2, q2 = S.as_rows(x), S.as_rows(q)
        n_rows, n_cols = x2.shape
        cfg = config or tile_config(n_rows, n_cols, S.sm_count(x))
        grid = (S.cdiv(n_rows, cfg.block_m) * S.cdiv(n_cols, cfg.block_n),)
        with S.on_device(x):
            kernel[grid](x2, S.row_stride(x2, n_rows), q2, S.row_stride(q2, n_rows), scale, scale, n_rows, n_cols,
                         FROM_AMAX=False, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, num_warps=cfg.num_warps)
    return q


def dynamic_quant(x: Tensor, amax_kernel=_amax_kernel, quant_kernel=_static_quant_kernel,
                  config: TileConfig | None = None, one_program_kernel=_dynamic_quant_one_program_kernel,
                  one_program: bool | None = None) -> tuple[Tensor, Tensor]:
    """Per-tensor dynamic quant: one program for tensors of at most ONE_PROGRAM_ELEMENTS
    (unless `one_program` or `config` says otherwise), else an amax kernel and a quant kernel."""
    q = _fp8_like(x)
    if not x.numel():
        return q, torch.full((1,), qops.MIN_SCALE, dtype=torch.float32, device=x.device)
    scale = torch.empty(1, dtype=torch.float32, device=x.device)
    x2, q2 = S.as_rows(x), S.as_rows(q)
    n_rows, n_cols = x2.shape
    if one_program is None:
        one_program = config is None and x.numel() <= ONE_PROGRAM_ELEMENTS
    if one_program:
        block_n = min(S.next_pow2(n_cols), ONE_PROGRAM_TILE)
        block_m = max(1, min(ONE_PROGRAM_TILE // block_n, S.next_pow2(n_rows)))
        with S.on_device(x):
            one_program_kernel[(1,)](x2, S.row_stride(x2, n_rows), q2, S.row_stride(q2, n_rows), scale, n_rows, n_cols,
                                     BLOCK_M=block_m, BLOCK_N=block_n, num_warps=ONE_PROGRAM_WARPS)
        return q, scale
    amax = torch.zeros(1, dtype=torch.float32, device=x.device)
    cfg = config or tile_config(n_rows, n_cols, S.sm_count(x))
    grid = (S.cdiv(n_rows, cfg.block_m) * S.cdiv(n_cols, cfg.block_n),)
    with S.on_device(x):
        amax_programs = max(1, min(grid[0], AMAX_PROGRAMS_PER_SM * S.sm_count(x)))
        amax_kernel[(amax_programs,)](x2, S.row_stride(x2, n_rows), amax, n_rows, n_cols,
                          BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, num_warps=cfg.num_warps)
        quant_kernel[grid](x2, S.row_stride(x2, n_rows), q2, S.row_stride(q2, n_rows), amax, scale, n_rows, n_cols,
                           FROM_AMAX=True, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, num_warps=cfg.num_warps)
    return q, scale


def per_token_quant(x: Tensor, scale_ub: Tensor | None, kernel=_per_token_quant_kernel,
                    config: RowConfig | None = None) -> tuple[Tensor, Tensor]:
    q = _fp8_like(x)
    scales = torch.empty((*x.shape[:-1], 1), dtype=torch.float32, device=x.device)
    if x.numel():
        x2, q2 = S.as_rows(x), S.as_rows(q)
        n_rows, n_cols = x2.shape
        cfg = config or row_config(n_rows, n_cols)
        with S.on_device(x):
            kernel[(S.cdiv(n_rows, cfg.block_m),)](
                x2, S.row_stride(x2, n_rows), q2, S.row_stride(q2, n_rows), scales, scale_ub if scale_ub is not None else scales,
                n_rows, n_cols, HAS_UB=scale_ub is not None,
                BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, SINGLE_PASS=cfg.single_pass, num_warps=cfg.num_warps)
    return q, scales


def group_quant(x: Tensor, group_size: int, kernel=_group_quant_kernel,
                config: TileConfig | None = None) -> tuple[Tensor, Tensor]:
    """Per-group quant; `config.block_n` must be a multiple of `group_size`."""
    q = _fp8_like(x)
    scales = torch.empty((*x.shape[:-1], x.shape[-1] // group_size), dtype=torch.float32, device=x.device)
    if x.numel():
        x2, q2, s2 = S.as_rows(x), S.as_rows(q), S.as_rows(scales)
        n_rows, n_cols = x2.shape
        cfg = config or group_config(n_rows, n_cols, group_size, S.sm_count(x))
        if cfg.block_n % group_size:
            raise ValueError(f"group_quant: a tile of {cfg.block_n} columns splits groups of {group_size}")
        grid = (S.cdiv(n_rows, cfg.block_m) * S.cdiv(n_cols, cfg.block_n),)
        with S.on_device(x):
            kernel[grid](x2, S.row_stride(x2, n_rows), q2, S.row_stride(q2, n_rows), s2, s2.stride(0), n_rows, n_cols,
                         GROUP=group_size, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, num_warps=cfg.num_warps)
    return q, scales


def rms_norm_quant(x: Tensor, x_residual: Tensor | None, weight: Tensor | None, epsilon: float,
                   scale: Tensor | None, scale_ub: Tensor | None, kernel=_rms_norm_quant_kernel,
                   config: RowConfig | None = None, pipelined_kernel=_fused_add_quant_pipelined_kernel,
                   programs: int | None = None) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """(q, residual or None, per-token scales or None): static when `scale` is given, else dynamic.

    The fused add with a static scale runs `pipelined_kernel` over `programs` programs where
    `pipeline_programs` says so (not when given a `config`); `programs` > 0 forces it (with the
    chunk and warps of `config`, else CHUNKED's)."""
    dynamic = scale is None
    q = _fp8_like(x)
    residual = S.empty_like_rows(x) if x_residual is not None else None
    scales = torch.empty((*x.shape[:-1], 1), dtype=torch.float32, device=x.device) if dynamic else None
    if x.numel():
        x2, q2 = S.as_rows(x), S.as_rows(q)
        n_rows, n_cols = x2.shape
        r2 = S.as_rows(x_residual) if x_residual is not None else x2
        res2 = S.as_rows(residual) if residual is not None else x2
        # Both kernels' first arguments: the rows (x, residual, weight, q, sum) and their strides.
        rows = (x2, S.row_stride(x2, n_rows), r2, S.row_stride(r2, n_rows),
                weight if weight is not None else x2, weight.stride(0) if weight is not None else 0,
                q2, S.row_stride(q2, n_rows), res2, S.row_stride(res2, n_rows))
        kind = "norm_dynamic" if dynamic else "norm_add_static" if x_residual is not None else "norm_static"
        if programs is None:
            programs = 0 if config is not None else pipeline_programs(n_rows, n_cols, kind, S.sm_count(x))
        if programs:
            if kind != "norm_add_static":
                raise ValueError(f"the pipelined kernel is the fused add with a static scale, not {kind}")
            cfg = config or CHUNKED
            with S.on_device(x):
                pipelined_kernel[(min(programs, n_rows),)](
                    *rows, scale, n_rows, n_cols, epsilon,
                    HAS_WEIGHT=weight is not None, BLOCK_N=cfg.block_n, num_warps=cfg.num_warps)
            return q, residual, scales
        cfg = config or row_config(n_rows, n_cols, kind)
        with S.on_device(x):
            kernel[(S.cdiv(n_rows, cfg.block_m),)](
                *rows, scales if dynamic else q2,
                scale if not dynamic else x2, scale_ub if scale_ub is not None else x2,
                n_rows, n_cols, epsilon,
                HAS_RESIDUAL=x_residual is not None, HAS_WEIGHT=weight is not None,
                DYNAMIC=dynamic, HAS_UB=scale_ub is not None,
                BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, SINGLE_PASS=cfg.single_pass,
                num_warps=cfg.num_warps)
    return q, residual, scales


# ------------------------------------------------ graph-visible triton_ops
# torch.ops.irshim_triton.<op>: what torch.compile / make_fx / export record.
# wrap_triton is called on every trace, never cached: outside functionalization it
# returns the raw kernel, and a cached raw kernel broke the next compile on the GPU
# ("Cannot access data pointer of Tensor").


@triton_op(f"{S.NAMESPACE}::static_scaled_fp8_quant", mutates_args=())
def static_scaled_fp8_quant_op(x: Tensor, scale: Tensor) -> Tensor:
    return static_quant(x, scale, kernel=wrap_triton(_static_quant_kernel),
                        flat_kernel=wrap_triton(_static_quant_flat_kernel))


@triton_op(f"{S.NAMESPACE}::dynamic_scaled_fp8_quant", mutates_args=())
def dynamic_scaled_fp8_quant_op(x: Tensor) -> tuple[Tensor, Tensor]:
    return dynamic_quant(x, wrap_triton(_amax_kernel), wrap_triton(_static_quant_kernel),
                         one_program_kernel=wrap_triton(_dynamic_quant_one_program_kernel))


@triton_op(f"{S.NAMESPACE}::dynamic_per_token_scaled_fp8_quant", mutates_args=())
def dynamic_per_token_scaled_fp8_quant_op(x: Tensor, scale_ub: Tensor | None = None) -> tuple[Tensor, Tensor]:
    return per_token_quant(x, scale_ub, kernel=wrap_triton(_per_token_quant_kernel))


@triton_op(f"{S.NAMESPACE}::per_token_group_fp8_quant", mutates_args=())
def per_token_group_fp8_quant_op(x: Tensor, group_size: int) -> tuple[Tensor, Tensor]:
    return group_quant(x, group_size, kernel=wrap_triton(_group_quant_kernel))


@triton_op(f"{S.NAMESPACE}::rms_norm_static_fp8_quant", mutates_args=())
def rms_norm_static_fp8_quant_op(x: Tensor, weight: Tensor | None, epsilon: float, scale: Tensor) -> Tensor:
    return rms_norm_quant(x, None, weight, epsilon, scale, None, kernel=wrap_triton(_rms_norm_quant_kernel))[0]


@triton_op(f"{S.NAMESPACE}::fused_add_rms_norm_static_fp8_quant", mutates_args=())
def fused_add_rms_norm_static_fp8_quant_op(x: Tensor, x_residual: Tensor, weight: Tensor | None, epsilon: float,
                                           scale: Tensor) -> tuple[Tensor, Tensor]:
    q, residual, _ = rms_norm_quant(x, x_residual, weight, epsilon, scale, None,
                                    kernel=wrap_triton(_rms_norm_quant_kernel),
                                    pipelined_kernel=wrap_triton(_fused_add_quant_pipelined_kernel))
    return q, residual


@triton_op(f"{S.NAMESPACE}::rms_norm_dynamic_per_token_fp8_quant", mutates_args=())
def rms_norm_dynamic_per_token_fp8_quant_op(x: Tensor, weight: Tensor | None, epsilon: float,
                                            scale_ub: Tensor | None = None) -> tuple[Tensor, Tensor]:
    q, _, scales = rms_norm_quant(x, None, weight, epsilon, None, scale_ub, kernel=wrap_triton(_rms_norm_quant_kernel))
    return q, scales


# ------------------------------------------------- interpreter (CPU) fix
@contextlib.contextmanager
def interpreter_fp8_rounding():
    """Inside the block, Triton's interpreter converts float32 -> float8e4nv as GPUs do.

    Triton 3.9's interpreter converts with a bit-level routine that rounds ties away
    from zero and lets a mantissa carry corrupt the exponent (-124 -> -64, -46.9 ->
    -23.4), while GPUs convert with ``cvt.rn.satfinite``: nearest even, as torch does,
    and saturating (beyond ±448, infinities included, to ±448; NaN stays NaN), where
    torch's conversion makes NaN of out-of-range values. CPU tests and the smoke
    benchmark run the kernels under this block so that they test the kernels, not the
    emulator; on a GPU it changes nothing.
    """
    if not S.INTERPRET:
        yield
        return
    import numpy as np
    from triton.runtime import interpreter

    original = interpreter.InterpreterBuilder.create_fp_to_fp

    def create_fp_to_fp(self, src, dst_type, rounding_mode):
        if src.dtype.scalar == tl.float32 and dst_type.scalar == tl.float8e4nv:
            values = torch.from_numpy(np.ascontiguousarray(src.data, dtype=np.float32))
            values = values.clamp(-qops.FP8_MAX, qops.FP8_MAX)  # satfinite: rounds as saturating after
            return interpreter.TensorHandle(values.to(FP8_DTYPE).view(torch.uint8).numpy(), dst_type.scalar)
        return original(self, src, dst_type, rounding_mode)

    interpreter.InterpreterBuilder.create_fp_to_fp = create_fp_to_fp
    try:
        yield
    finally:
        interpreter.InterpreterBuilder.create_fp_to_fp = original


# ------------------------------------------------------ IR registrations
# Eager: launch directly. Traced: the triton_op above (see _support.py).


@qops.static_scaled_fp8_quant.register_impl("triton", supported=S.platform_supported, supports_args=_static_args)
def static_scaled_fp8_quant(x: Tensor, scale: Tensor) -> Tensor:
    if S.tracing():
        return static_scaled_fp8_quant_op(x, scale)
    return static_quant(x, scale)


@qops.dynamic_scaled_fp8_quant.register_impl("triton", supported=S.platform_supported, supports_args=_dynamic_args)
def dynamic_scaled_fp8_quant(x: Tensor) -> tuple[Tensor, Tensor]:
    if S.tracing():
        return dynamic_scaled_fp8_quant_op(x)
    return dynamic_quant(x)


@qops.dynamic_per_token_scaled_fp8_quant.register_impl("triton", supported=S.platform_supported,
                                                       supports_args=_per_token_args)
def dynamic_per_token_scaled_fp8_quant(x: Tensor, scale_ub: Tensor | None = None) -> tuple[Tensor, Tensor]:
    if S.tracing():
        return dynamic_per_token_scaled_fp8_quant_op(x, scale_ub)
    return per_token_quant(x, scale_ub)


@qops.per_token_group_fp8_quant.register_impl("triton", supported=S.platform_supported, supports_args=_group_args)
def per_token_group_fp8_quant(x: Tensor, group_size: int) -> tuple[Tensor, Tensor]:
    if S.tracing():
        return per_token_group_fp8_quant_op(x, group_size)
    return group_quant(x, group_size)


@qops.rms_norm_static_fp8_quant.register_impl("triton", supported=S.platform_supported,
                                              supports_args=_norm_static_args)
def rms_norm_static_fp8_quant(x: Tensor, weight: Tensor | None, epsilon: float, scale: Tensor) -> Tensor:
    if S.tracing():
        return rms_norm_static_fp8_quant_op(x, weight, epsilon, scale)
    return rms_norm_quant(x, None, weight, epsilon, scale, None)[0]


@qops.fused_add_rms_norm_static_fp8_quant.register_impl("triton", supported=S.platform_supported,
                                                        supports_args=_fused_add_static_args)
def fused_add_rms_norm_static_fp8_quant(x: Tensor, x_residual: Tensor, weight: Tensor | None, epsilon: float,
                                        scale: Tensor) -> tuple[Tensor, Tensor]:
    if S.tracing():
        return fused_add_rms_norm_static_fp8_quant_op(x, x_residual, weight, epsilon, scale)
    q, residual, _ = rms_norm_quant(x, x_residual, weight, epsilon, scale, None)
    return q, residual


@qops.rms_norm_dynamic_per_token_fp8_quant.register_impl("triton", supported=S.platform_supported,
                                                         supports_args=_norm_dynamic_args)
def rms_norm_dynamic_per_token_fp8_quant(x: Tensor, weight: Tensor | None, epsilon: float,
                                         scale_ub: Tensor | None = None) -> tuple[Tensor, Tensor]:
    if S.tracing():
        return rms_norm_dynamic_per_token_fp8_quant_op(x, weight, epsilon, scale_ub)
    q, _, scales = rms_norm_quant(x, None, weight, epsilon, None, scale_ub)
    return q, scales
