"""Triton RMS norms: rms_norm, fused_add_rms_norm and their Gemma variants.

One kernel serves all four ops (constexpr switches for the residual add, the
weight and Gemma's ``1 + weight``); then the launch configuration, the
launcher, the graph-visible ``triton_op`` forms, and the IR registrations.

Semantics are the IR's (``ir/ops/layernorm.py``): float32 arithmetic, one
rounding to x's dtype at the end, and for the fused add the residual rounded
to x's dtype before it is normalised.
"""

from __future__ import annotations

from dataclasses import dataclass

import triton
import triton.language as tl
from torch import Tensor
from torch.library import triton_op, wrap_triton

from irshim.ir import ops

from . import _support as S

OPS = ("rms_norm", "fused_add_rms_norm", "gemma_rms_norm", "gemma_fused_add_rms_norm")


# ---------------------------------------------------------------- kernel


@triton.jit
def add_chunk(x_rows, r_rows, res_rows, cols, mask):
    """Columns `cols` of x + the residual, rounded to the residual output's dtype and written
    there; returned in float32. Both inputs are read once here: evict_first."""
    x = tl.load(x_rows + cols[None, :], mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
    r = tl.load(r_rows + cols[None, :], mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
    s = (x + r).to(res_rows.dtype.element_ty)
    tl.store(res_rows + cols[None, :], s, mask=mask)
    return s.to(tl.float32)


@triton.jit
def chunked_rstd(x_rows, r_rows, res_rows, row_mask, N_COLS, eps,
                 HAS_RESIDUAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """First pass of a row too long for registers: 1 / rms over column chunks of
    ``x_rows`` (+ ``r_rows``: the sum, rounded to the residual's dtype, is written to
    ``res_rows`` once and normalised). Shared by the norm + quant kernels (quant.py).
    Later passes read x again (kept in L2: evict_last), or else the written sum."""
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for start in range(0, N_COLS, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        mask = row_mask[:, None] & (cols < N_COLS)[None, :]
        if HAS_RESIDUAL:
            x = add_chunk(x_rows, r_rows, res_rows, cols, mask)
        else:
            x = tl.load(x_rows + cols[None, :], mask=mask, other=0.0, eviction_policy="evict_last").to(tl.float32)
        acc += x * x
    return tl.rsqrt(tl.sum(acc, axis=1) / N_COLS + eps)


@triton.jit
def _rms_norm_kernel(
    # inputs: x and the residual to add (unused unless HAS_RESIDUAL), row strides
    X, X_ROW_STRIDE, R, R_ROW_STRIDE,
    # weight [N_COLS] and its stride (unused unless HAS_WEIGHT)
    W, W_STRIDE,
    # outputs: normalised rows, and the sum x + residual (unused unless HAS_RESIDUAL)
    OUT, OUT_ROW_STRIDE, RES_OUT, RES_OUT_ROW_STRIDE,
    # sizes and scalars
    N_ROWS, N_COLS, EPS,
    HAS_RESIDUAL: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
    GEMMA: tl.constexpr,          # weight used as (1 + weight), in float32
    BLOCK_M: tl.constexpr,        # rows per program
    BLOCK_N: tl.constexpr,        # columns per step; covers the row when SINGLE_PASS
    SINGLE_PASS: tl.constexpr,    # whole rows in registers; else two passes over column chunks
    EVEN: tl.constexpr,           # no masks: single pass with BLOCK_N == N_COLS and BLOCK_M dividing N_ROWS,
                                  # or two passes over one row a program, no residual, BLOCK_N dividing N_COLS
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_mask = rows < N_ROWS
    rows = rows.to(tl.int64)
    x_rows = X + rows[:, None] * X_ROW_STRIDE
    r_rows = R + rows[:, None] * R_ROW_STRIDE
    out_rows = OUT + rows[:, None] * OUT_ROW_STRIDE
    res_rows = RES_OUT + rows[:, None] * RES_OUT_ROW_STRIDE
    eps = tl.cast(EPS, tl.float32)  # Inductor passes float scalars as fp64: keep the math fp32

    if SINGLE_PASS and BLOCK_M == 1:
        # One row per program (hidden >= TILE): 1-D blocks. Every load is issued
        # before the reduction, the weight included, so that at decode sizes the
        # program waits for one memory round trip, not two.
        row = tl.program_id(0).to(tl.int64)
        cols = tl.arange(0, BLOCK_N)
        mask = None if EVEN else cols < N_COLS
        other = None if EVEN else 0.0
        x = tl.load(X + row * X_ROW_STRIDE + cols, mask=mask, other=other).to(tl.float32)
        if HAS_RESIDUAL:
            r = tl.load(R + row * R_ROW_STRIDE + cols, mask=mask, other=other).to(tl.float32)
        if HAS_WEIGHT:
            w = tl.load(W + cols * W_STRIDE, mask=mask, other=other).to(tl.float32)
        if HAS_RESIDUAL:
            s = (x + r).to(RES_OUT.dtype.element_ty)  # the residual is rounded to x's dtype
            tl.store(RES_OUT + row * RES_OUT_ROW_STRIDE + cols, s, mask=mask)
            x = s.to(tl.float32)
        rstd = tl.rsqrt(tl.sum(x * x, axis=0) / N_COLS + eps)
        y = x * rstd
        if HAS_WEIGHT:
            if GEMMA:
                w = w + 1.0
            y = y * w
        tl.store(OUT + row * OUT_ROW_STRIDE + cols, y.to(OUT.dtype.element_ty), mask=mask)
    elif SINGLE_PASS:
        # Several short rows per program: 2-D blocks [BLOCK_M, BLOCK_N].
        cols = tl.arange(0, BLOCK_N)
        col_mask = None if EVEN else cols < N_COLS
        mask = None if EVEN else row_mask[:, None] & col_mask[None, :]
        other = None if EVEN else 0.0
        x = tl.load(x_rows + cols[None, :], mask=mask, other=other).to(tl.float32)
        if HAS_RESIDUAL:
            r = tl.load(r_rows + cols[None, :], mask=mask, other=other).to(tl.float32)
        if HAS_WEIGHT:
            w = tl.load(W + cols * W_STRIDE, mask=col_mask, other=other).to(tl.float32)
        if HAS_RESIDUAL:
            s = (x + r).to(RES_OUT.dtype.element_ty)
            tl.store(res_rows + cols[None, :], s, mask=mask)
            x = s.to(tl.float32)
        rstd = tl.rsqrt(tl.sum(x * x, axis=1) / N_COLS + eps)
        y = x * rstd[:, None]
        if HAS_WEIGHT:
            if GEMMA:
                w = w + 1.0
            y = y * w[None, :]
        tl.store(out_rows + cols[None, :], y.to(OUT.dtype.element_ty), mask=mask)
    elif EVEN:
        # Two passes over one row a program without a residual, whole BLOCK_N chunks: 1-D blocks
        # without masks (the launcher's `even`), the shape of Inductor's looped reduction. Pass 1
        # keeps the row in L2 (evict_last) for pass 2, its last read (evict_first). Timed at 8192
        # columns (LOOPED_ROWS_PER_SM on the H200, the plain `FUSED_CHUNK` rule on the H100); rows
        # past MAX_SINGLE_PASS in whole CHUNKs take it untimed.
        row = tl.program_id(0).to(tl.int64)
        x_row = X + row * X_ROW_STRIDE
        acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
        for start in range(0, N_COLS, BLOCK_N):
            x = tl.load(x_row + start + tl.arange(0, BLOCK_N), eviction_policy="evict_last").to(tl.float32)
            acc += x * x
        rstd = tl.rsqrt(tl.sum(acc, axis=0) / N_COLS + eps)
        for start in range(0, N_COLS, BLOCK_N):
            cols = start + tl.arange(0, BLOCK_N)
            y = tl.load(x_row + cols, eviction_policy="evict_first").to(tl.float32) * rstd
            if HAS_WEIGHT:
                w = tl.load(W + cols * W_STRIDE, eviction_policy="evict_last").to(tl.float32)
                if GEMMA:
                    w = w + 1.0
                y = y * w
            tl.store(OUT + row * OUT_ROW_STRIDE + cols, y.to(OUT.dtype.element_ty))
    else:
        # Pass 1: sum of squares (and the residual, written once).
        rstd = chunked_rstd(x_rows, r_rows, res_rows, row_mask, N_COLS, eps, HAS_RESIDUAL, BLOCK_M, BLOCK_N)
        if HAS_RESIDUAL:
            tl.debug_barrier()  # pass 2 re-reads the residual this program wrote
        # Pass 2: re-read (the residual when there is one: in place, X is the output).
        for start in range(0, N_COLS, BLOCK_N):
            cols = start + tl.arange(0, BLOCK_N)
            col_mask = cols < N_COLS
            mask = row_mask[:, None] & col_mask[None, :]
            # Last read of these lines: evict them first (pass 1 kept them in L2).
            if HAS_RESIDUAL:
                x = tl.load(res_rows + cols[None, :], mask=mask, other=0.0, eviction_policy="evict_first")
            else:
                x = tl.load(x_rows + cols[None, :], mask=mask, other=0.0, eviction_policy="evict_first")
            y = x.to(tl.float32) * rstd[:, None]
            if HAS_WEIGHT:
                w = tl.load(W + cols * W_STRIDE, mask=col_mask, other=0.0, eviction_policy="evict_last").to(tl.float32)
                if GEMMA:
                    w = w + 1.0
                y = y * w[None, :]
            tl.store(out_rows + cols[None, :], y.to(OUT.dtype.element_ty), mask=mask)


# ---------------------------------------------------------- launch config


@dataclass(frozen=True)
class NormConfig:
    block_m: int
    block_n: int
    num_warps: int
    single_pass: bool


# Rows up to this many elements stay in registers (fp32: 64 KiB per row over
# 16 warps is 32 registers a thread); longer rows take two passes.
MAX_SINGLE_PASS = 16384
# Two-pass chunk: 4096 columns, 8 warps (16 fp32 a thread per chunk).
CHUNK = 4096
# Two regimes (H200, bf16, CUDA-graph µs; run 2 of the sweep in benchmarks/bench_norms.py,
# "rows/warps", all loads issued before the reduction):
# - Decode, fewer rows than THROUGHPUT_ROWS_PER_SM x SMs (264 on H100/H200): one row a
#   program, at most 8 warps.
#     rms_norm       1 x 4096: 1/8 1.41  1/16 1.44  1/32 1.76 | 1 x 8192: 1/8 1.90  1/16 1.92  1/32 2.05
#                   64 x 4096: 1/8 1.73  1/16 1.78            | 64 x 8192: 1/8 2.16  1/16 2.21
#     fused_add      1 x 8192: 1/8 2.10  1/32 2.26            | 64 x 8192: 1/8 2.44  1/32 2.54
#   Rows shorter than TILE are grouped until a program holds ~TILE elements.
# - Throughput: PROGRAM_ELEMENTS a program (2 rows of 4096, 1 of 8192), 16 elements a thread.
#     rms_norm    1024 x 4096: 2/16 4.31  1/8 5.15 | 16384 x 4096: 2/16 67.8  1/8 67.7  1/16 73.5
#     fused_add   1024 x 4096: 2/16 8.70  1/8 9.29 | 16384 x 4096: 2/16 133.4 1/8 133.0
#     rms_norm    1024 x 8192: 1/16 9.95  1/4 9.85 | 16384 x 8192: 1/16 133.6 2/8 130.8
#     fused_add   1024 x 8192: 1/16 18.7  1/4 18.4 | 16384 x 8192: 1/16 266.9 1/32 260.8
TILE = 2048
THROUGHPUT_ROWS_PER_SM = 2
PROGRAM_ELEMENTS = 8192
ELEMENTS_PER_THREAD = 16
DECODE_MAX_WARPS = 8
MAX_WARPS = 32


# Fused add over rows of 8192 or more, from THROUGHPUT_ROWS_PER_SM rows a multiprocessor to
# one wave of 8-warp programs (FUSED_CHUNK_ROWS_PER_SM): two passes over FUSED_CHUNK columns.
#   Whole rows of x and the residual in registers need 16 warps a row (32 fp32 a thread),
#   so only 4 rows fit a multiprocessor at a time and 1024 rows take two waves; Inductor's
#   looped reduction takes one. H200 (explore_configs.py norm9, results/sweep_session7_h200.txt,
#   two rounds, the slower listed):
#     fused_add 1024 x 8192: c2048/8 17.44  c2048/4 17.60  c4096/8 18.11  1/4 18.21  1/16 18.43 (Inductor 17.68)
#               4096 x 8192: 1/32 67.22  1/16 67.78  c2048/8 71.30 (Inductor 70.20)
#     (rms_norm 1024 x 8192, no residual: 1/16 9.76  c4096/8 9.81  c2048/8 9.96)
#   The plain norms take the same launch there on GPUs of the H100's DRAM bandwidth a multiprocessor,
#   unmasked (EVEN: rows of 6144 or 8192 columns, whole 2048-column chunks; 6144 was not timed). H100,
#   1024 x 8192, two processes
#   (explore_configs.py norm17, results/sweep_session17_h100.txt), µs:
#     rms_norm  c2048/8 11.84 11.84  c4096/8 11.99 12.03  1/16 12.12 12.13 (Inductor 12.14 12.18, Liger 12.26 12.27)
#     gemma     c2048/8 12.06 11.91  c4096/8 12.14 11.99  1/16 12.27 12.13 (Inductor 12.40 12.27; 11.7 in a third)
#   On the H200 the masked form lost to 1/16 (rms_norm 9.96 against 9.76, above) and the unmasked
#   one was not timed there: the H200 and GPUs of unknown bandwidth keep 1/16.
#   The fused adds over 4096 columns take it on those GPUs too (EVEN: two whole chunks). H100,
#   1024 x 4096, Inductor / ours round by round, two processes (explore_configs.py norm18,
#   results/sweep_session18_h100.txt), µs:
#     fused_add c2048/8 10.24 10.22 (1.012 1.011)  c1024/4 10.31 10.30  2/16 (the rule) 10.62 10.61 (0.975 0.974)
#               1/16 10.53 10.53  1/8 11.08 11.07  (Inductor 10.35 10.35, Liger 11.19 11.18)
#     gemma     c2048/8 10.22 10.23 (1.013 1.015)  2/16 10.58 10.59 (0.982 0.980)  (Inductor 10.40 10.38)
#   On the H200 2/16 is 7.6-8.2% ahead of Inductor there (rematch_norms_h200): it keeps it.
FUSED_CHUNK = 2048
FUSED_CHUNK_WARPS = 8
FUSED_CHUNK_MIN_COLS = 8192
FUSED_CHUNK_ROWS_PER_SM = 8
# Many rows (LARGE_ROWS_*_PER_SM a multiprocessor and more): rows of 8192 spread over 32 warps (the
# fused add one row a program, 8 elements a thread; the plain norm two, 16), rows of 4096 one a
# program over 8 warps (16 a thread). The sweep above and norm10 (results/sweep_session7_h200.txt,
# two rounds) agree:
#     rms_norm  16384 x 8192: 2/32 128.8/130.4  2/8 129.2/131.4  1/16 131.0/132.5 (Inductor 130.0, Liger 130.8)
#     fused_add 16384 x 8192: 1/32 262.9/264.1  2/16 263.0/265.2  1/16 266.0/265.9 (Liger 266.8)
#     rms_norm  16384 x 4096: 1/8 66.5/66.4  2/16 66.8/66.5 (Liger 66.1/66.6) | gemma: 1/8 66.1/66.4  2/16 67.3/67.1
#     and at 4096 rows (norm9): rms_norm x 8192 2/32 34.9/35.0  1/16 35.3/34.8 | fused_add 1/32 67.2  1/16 67.8
#   Re-timed round by round beside Inductor (norm11, results/sweep_session15_h200.txt; Inductor / ours):
#     rms_norm 16384 x 8192: 2/32 0.998 (best; 1/16 0.981, 2/16 0.974) | gemma 16384 x 8192: 2/32 0.985 (best)
#     gemma 4096 x 8192: 2/32 0.988, 1/16 0.996 | gemma 1024 x 8192 (1/16, the rule below): 1.017
#   Inductor's gemma kernel there is a looped two-pass reduction (evict_last, then evict_first).
LARGE_ROWS_WIDE = 8192
LARGE_ROWS_WIDE_PER_SM = 31
LARGE_ROWS_WIDE_WARPS = 32
# From LOOPED_ROWS_PER_SM rows a multiprocessor the plain norms over 8192 columns (a multiple of
# LOOPED_CHUNK) take the two-pass path unmasked (EVEN): one row a program, 4096-column chunks, 16
# warps, the shape of Inductor's loop. H200, Inductor / ours round by round, one figure a process
# (explore_configs.py norm13-15, results/sweep_session16_h200.txt; "c4096" this path, 2/32 the rule above):
#     gemma    16384 x 8192: c4096 0.993 0.995 (norm13's copy 1.000)  2/32 0.984 0.985
#              12288 x 8192: c4096 0.989 0.994  2/32 0.988 0.989 |  8192 x 8192: c4096 0.996 0.999  2/32 0.992 0.996
#     rms_norm 16384 x 8192: c4096 0.999 0.997 (norm13's copy 1.004)  2/32 0.994 0.994
#               8192 x 8192: c4096 0.996 0.996  2/32 0.996 0.995
#   At 4096 rows the loop lost (gemma 0.984 against 0.990); masked, it lost everywhere (norm14: 0.97-0.99).
#   Only on GPUs of the H200's DRAM bandwidth a multiprocessor (`S.WIDE_DRAM_GBS_PER_SM`): not measured on
#   an H100, where Inductor (on the H200 that loop; its H100 kernel was not dumped) was 1.8-3.0% slower
#   than the single pass at 16384 x 8192 (bench_norms_h100: 182.4 against 179.2 µs, gemma 184.9 against
#   179.5), so the H100 and GPUs of unknown bandwidth keep the single pass.
LOOPED_ROWS_PER_SM = 62
LOOPED_CHUNK = 4096
LOOPED_WARPS = 16
# The plain norms keep one row a program over 16 warps (the rule below LARGE_ROWS_WIDE_PER_SM) up to
# PLAIN_WIDE_PER_SM rows a multiprocessor: 2/32 lost to it at 4096 and 6144 rows, round by round
# beside Inductor, two processes each (explore_configs.py norm16 on an H100, results/sweep_session17_h100.txt;
# norm12 on the H200, results/sweep_session16_h200.txt), µs:
#   H100 gemma    4096 x 8192: 1/16 45.71 45.63  2/32 46.20 46.21  Liger 45.96 46.00  Inductor 47.63 47.62
#                 6144 x 8192: 1/16 67.72 67.78  2/32 68.36 68.43  Liger 68.01 68.05
#        rms_norm 4096 x 8192: 1/16 45.71 45.80  2/32 45.98 46.17  Liger 45.99 46.03
#                 6144 x 8192: 1/16 67.92 67.85  2/32 68.26 68.27  Liger 68.17 68.17
#   H200 gemma    4096 x 8192: 1/16 35.53 35.14  2/32 35.73 35.50  (1/8 35.45 35.03; Inductor 35.71 35.56)
# From there the H200 takes the two-pass loop (the same threshold) and the H100 2/32.
PLAIN_WIDE_PER_SM = LOOPED_ROWS_PER_SM
LARGE_ROWS_NARROW = 4096
LARGE_ROWS_NARROW_PER_SM = 124


@S.cached_config
def norm_config(n_rows: int, n_cols: int, element_size: int, sm_count: int = 132,
                residual: bool = False, gbs_per_sm: float | None = None) -> NormConfig:
    """Launch configuration for ``n_rows x n_cols`` (measurements above); `residual`: the fused add;
    `gbs_per_sm`: `S.memory_gbs_per_sm` of the GPU (None: unknown), which the two-pass rules need
    (H100-class at 264-1056 rows: the plain norms over 6144 or 8192 columns, the fused adds over
    4096; H200-class: the plain norms from 62 rows a multiprocessor)."""
    block_n = S.next_pow2(n_cols)
    if block_n > MAX_SINGLE_PASS:
        return NormConfig(1, CHUNK, 8, False)
    if THROUGHPUT_ROWS_PER_SM * sm_count <= n_rows <= FUSED_CHUNK_ROWS_PER_SM * sm_count:
        wide_fused = residual and block_n >= FUSED_CHUNK_MIN_COLS  # every GPU
        # H100-class GPUs: one width down for the fused adds, and the plain norms at 8192; whole chunks only.
        narrow_dram_chunked = (block_n == (LARGE_ROWS_NARROW if residual else LARGE_ROWS_WIDE)
                               and n_cols % FUSED_CHUNK == 0 and S.narrow_dram(gbs_per_sm))
        if wide_fused or narrow_dram_chunked:
            return NormConfig(1, FUSED_CHUNK, FUSED_CHUNK_WARPS, False)
    if (not residual and block_n == LARGE_ROWS_WIDE and n_cols % LOOPED_CHUNK == 0
            and n_rows >= LOOPED_ROWS_PER_SM * sm_count and S.wide_dram(gbs_per_sm)):
        return NormConfig(1, LOOPED_CHUNK, LOOPED_WARPS, False)
    if block_n == LARGE_ROWS_WIDE and n_rows >= (LARGE_ROWS_WIDE_PER_SM if residual else PLAIN_WIDE_PER_SM) * sm_count:
        return NormConfig(1 if residual else 2, block_n, LARGE_ROWS_WIDE_WARPS, True)
    if block_n == LARGE_ROWS_NARROW and n_rows >= LARGE_ROWS_NARROW_PER_SM * sm_count:
        return NormConfig(1, block_n, block_n // (ELEMENTS_PER_THREAD * 32), True)
    rows_pow2 = S.next_pow2(max(n_rows, 1))
    if n_rows < THROUGHPUT_ROWS_PER_SM * sm_count:
        block_m = max(1, min(TILE // block_n, rows_pow2))
        max_warps = DECODE_MAX_WARPS
    else:
        block_m = max(1, min(PROGRAM_ELEMENTS // block_n, rows_pow2))
        max_warps = MAX_WARPS
    num_warps = max(1, min(max_warps, block_m * block_n // (ELEMENTS_PER_THREAD * 32)))
    return NormConfig(block_m, block_n, num_warps, True)


# --------------------------------------------------------------- launcher


def _launch(kernel, x: Tensor, x_residual: Tensor | None, weight: Tensor | None, epsilon: float,
            gemma: bool, out: Tensor, residual_out: Tensor | None,
            config: NormConfig | None = None) -> None:
    """Normalise `x` (+ `x_residual`) into `out` (and the sum into `residual_out`).

    `kernel` is the jitted kernel (eager) or ``wrap_triton(kernel)`` (traced).
    All tensors are viewed as [rows, hidden] without copies.
    """
    n_cols = x.shape[-1]
    x2 = S.as_rows(x)
    n_rows = x2.shape[0]
    if n_rows == 0 or n_cols == 0:
        return
    out2 = S.as_rows(out)
    has_residual = x_residual is not None
    r2 = S.as_rows(x_residual) if has_residual else x2
    res2 = S.as_rows(residual_out) if has_residual else out2
    if config is None:
        sm_count = S.sm_count(x)
        # The bandwidth only splits rules from THROUGHPUT_ROWS_PER_SM rows: decode launches skip its two calls.
        gbs = S.memory_gbs_per_sm(x) if n_rows >= THROUGHPUT_ROWS_PER_SM * sm_count else None
        config = norm_config(n_rows, n_cols, x.element_size(), sm_count, has_residual, gbs)
    grid = (S.cdiv(n_rows, config.block_m),)
    with S.on_device(x):
        _call(kernel, grid, config, x2, r2, res2, out2, weight, n_rows, n_cols, epsilon, has_residual, gemma)


def _call(kernel, grid, cfg, x2, r2, res2, out2, weight, n_rows, n_cols, epsilon, has_residual, gemma,
          even: bool | None = None):
    if even is None:
        if cfg.single_pass:
            even = n_cols == cfg.block_n and n_rows % cfg.block_m == 0
        else:
            even = cfg.block_m == 1 and not has_residual and n_cols % cfg.block_n == 0
    kernel[grid](
        x2, S.row_stride(x2, n_rows), r2, S.row_stride(r2, n_rows),
        weight if weight is not None else x2, weight.stride(0) if weight is not None else 0,
        out2, S.row_stride(out2, n_rows), res2, S.row_stride(res2, n_rows),
        n_rows, n_cols, epsilon,
        HAS_RESIDUAL=has_residual, HAS_WEIGHT=weight is not None, GEMMA=gemma,
        BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, SINGLE_PASS=cfg.single_pass, EVEN=even,
        num_warps=cfg.num_warps,
    )


def rms_norm_into(x, weight, epsilon, gemma=False, config=None, kernel=_rms_norm_kernel) -> Tensor:
    out = S.empty_like_rows(x)
    _launch(kernel, x, None, weight, epsilon, gemma, out, None, config)
    return out


def fused_add_rms_norm_into(x, x_residual, weight, epsilon, gemma=False, config=None,
                            kernel=_rms_norm_kernel) -> tuple[Tensor, Tensor]:
    out, residual = S.empty_like_rows(x), S.empty_like_rows(x)
    _launch(kernel, x, x_residual, weight, epsilon, gemma, out, residual, config)
    return out, residual


# ------------------------------------------------ graph-visible triton_ops
# torch.ops.irshim_triton.<op>: what torch.compile / make_fx / export record.
# Outputs never alias inputs, so the in-place forms mutate and return nothing.


@triton_op(f"{S.NAMESPACE}::rms_norm", mutates_args=())
def rms_norm_op(x: Tensor, weight: Tensor | None, epsilon: float) -> Tensor:
    return rms_norm_into(x, weight, epsilon, False, kernel=wrap_triton(_rms_norm_kernel))


@triton_op(f"{S.NAMESPACE}::gemma_rms_norm", mutates_args=())
def gemma_rms_norm_op(x: Tensor, weight: Tensor, epsilon: float) -> Tensor:
    return rms_norm_into(x, weight, epsilon, True, kernel=wrap_triton(_rms_norm_kernel))


@triton_op(f"{S.NAMESPACE}::fused_add_rms_norm", mutates_args=())
def fused_add_rms_norm_op(x: Tensor, x_residual: Tensor, weight: Tensor | None,
                          epsilon: float) -> tuple[Tensor, Tensor]:
    return fused_add_rms_norm_into(x, x_residual, weight, epsilon, False,
                                   kernel=wrap_triton(_rms_norm_kernel))


@triton_op(f"{S.NAMESPACE}::gemma_fused_add_rms_norm", mutates_args=())
def gemma_fused_add_rms_norm_op(x: Tensor, x_residual: Tensor, weight: Tensor,
                                epsilon: float) -> tuple[Tensor, Tensor]:
    return fused_add_rms_norm_into(x, x_residual, weight, epsilon, True,
                                   kernel=wrap_triton(_rms_norm_kernel))


@triton_op(f"{S.NAMESPACE}::fused_add_rms_norm_inplace", mutates_args=("x", "x_residual"))
def fused_add_rms_norm_inplace_op(x: Tensor, x_residual: Tensor, weight: Tensor | None,
                                  epsilon: float) -> None:
    _launch(wrap_triton(_rms_norm_kernel), x, x_residual, weight, epsilon, False, x, x_residual)


@triton_op(f"{S.NAMESPACE}::gemma_fused_add_rms_norm_inplace", mutates_args=("x", "x_residual"))
def gemma_fused_add_rms_norm_inplace_op(x: Tensor, x_residual: Tensor, weight: Tensor,
                                        epsilon: float) -> None:
    _launch(wrap_triton(_rms_norm_kernel), x, x_residual, weight, epsilon, True, x, x_residual)


# ------------------------------------------------------ IR registrations
# Eager: launch directly. Traced: the triton_op above (see _support.py).
# fused_add has two providers: `triton` (functional: fresh out/residual, no
# copy of the inputs, first in the CUDA default so the default overload never
# pays the clones an in-place impl would need) and `triton_inplace` (writes out
# into x and the residual into x_residual, like vLLM's fused_add_rms_norm; the
# `maybe_inplace` overload runs it whenever `triton` is chosen). Both move the same bytes.


def _norm_args(x, weight, epsilon):
    return S.input_ok(x) and S.weight_ok(weight, x)


def _fused_args(x, x_residual, weight, epsilon):
    return S.input_ok(x) and S.weight_ok(weight, x) and S.residual_ok(x_residual, x)


def _writable(x, x_residual, weight, epsilon):
    # Writing in place needs, beyond `_fused_args`: the residual in x's dtype (it is
    # stored there), rows that do not share memory, and x and x_residual apart.
    if x_residual.dtype != x.dtype:
        return False
    if x.is_contiguous() and x_residual.is_contiguous():
        # The usual case, read once: contiguous rows never overlap, and two tensors of one
        # shape and dtype span the same bytes from their starts (`S.disjoint` inlined).
        a, b, size = x.data_ptr(), x_residual.data_ptr(), x.nbytes
        return size == 0 or a + size <= b or b + size <= a
    return S.rows_apart(x) and S.rows_apart(x_residual) and S.disjoint(x, x_residual)


def _fused_inplace_args(x, x_residual, weight, epsilon):
    return _fused_args(x, x_residual, weight, epsilon) and _writable(x, x_residual, weight, epsilon)


@ops.rms_norm.register_impl("triton", supported=S.platform_supported, supports_args=_norm_args)
def rms_norm(x: Tensor, weight: Tensor | None, epsilon: float) -> Tensor:
    if S.tracing():
        return rms_norm_op(x, weight, epsilon)
    return rms_norm_into(x, weight, epsilon, False)


@ops.gemma_rms_norm.register_impl("triton", supported=S.platform_supported, supports_args=_norm_args)
def gemma_rms_norm(x: Tensor, weight: Tensor, epsilon: float) -> Tensor:
    if S.tracing():
        return gemma_rms_norm_op(x, weight, epsilon)
    return rms_norm_into(x, weight, epsilon, True)


@ops.fused_add_rms_norm.register_impl("triton", supported=S.platform_supported, supports_args=_fused_args)
def fused_add_rms_norm(x: Tensor, x_residual: Tensor, weight: Tensor | None,
                       epsilon: float) -> tuple[Tensor, Tensor]:
    if S.tracing():
        return fused_add_rms_norm_op(x, x_residual, weight, epsilon)
    return fused_add_rms_norm_into(x, x_residual, weight, epsilon, False)


@ops.gemma_fused_add_rms_norm.register_impl("triton", supported=S.platform_supported,
                                            supports_args=_fused_args)
def gemma_fused_add_rms_norm(x: Tensor, x_residual: Tensor, weight: Tensor,
                             epsilon: float) -> tuple[Tensor, Tensor]:
    if S.tracing():
        return gemma_fused_add_rms_norm_op(x, x_residual, weight, epsilon)
    return fused_add_rms_norm_into(x, x_residual, weight, epsilon, True)


@ops.fused_add_rms_norm.register_impl("triton_inplace", supported=S.platform_supported,
                                      supports_args=_fused_inplace_args, inplace=True, inplace_args=_writable)
def fused_add_rms_norm_inplace(x: Tensor, x_residual: Tensor, weight: Tensor | None,
                               epsilon: float) -> tuple[Tensor, Tensor]:
    if S.tracing():
        fused_add_rms_norm_inplace_op(x, x_residual, weight, epsilon)
    else:
        _launch(_rms_norm_kernel, x, x_residual, weight, epsilon, False, x, x_residual)
    return x, x_residual


@ops.gemma_fused_add_rms_norm.register_impl("triton_inplace", supported=S.platform_supported,
                                            supports_args=_fused_inplace_args, inplace=True, inplace_args=_writable)
def gemma_fused_add_rms_norm_inplace(x: Tensor, x_residual: Tensor, weight: Tensor,
                                     epsilon: float) -> tuple[Tensor, Tensor]:
    if S.tracing():
        gemma_fused_add_rms_norm_inplace_op(x, x_residual, weight, epsilon)
    else:
        _launch(_rms_norm_kernel, x, x_residual, weight, epsilon, True, x, x_residual)
    return x, x_residual
