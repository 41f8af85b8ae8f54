"""Triton activations: the gated ones (silu_and_mul, mul_and_silu, gelu_and_mul,
fatrelu_and_mul) and the plain ones (gelu_new, gelu_fast, quick_gelu, relu2).

Four kernels (gated: two halves of each input row -> one output row; plain:
one row -> one row; each also flat, like Inductor's, for contiguous tensors) share
one constexpr-selected activation; then the launch
configuration, the launcher, the graph-visible ``triton_op`` forms and the IR
registrations. Float32 arithmetic, one rounding to x's dtype, as the IR's
semantics (``ir/ops/activation.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import triton_op, wrap_triton

from irshim.ir import ops

from . import _support as S
from ._support import flat_index  # by name: Inductor copies the JIT helpers a kernel names, not modules

OPS = ("silu_and_mul", "mul_and_silu", "gelu_and_mul", "fatrelu_and_mul",
       "gelu_new", "gelu_fast", "quick_gelu", "relu2")

_GELU_APPROXIMATIONS = ("none", "tanh")


# --------------------------------------------------------------- kernels


@triton.jit
def _gelu_erf(x):
    """GELU(x) = x Phi(x) = 0.5 x erfc(-x / sqrt 2), erfc by the Chebyshev fit of
    Numerical Recipes' `erfcc` (fractional error < 1.2e-7 for every argument): one
    exp, one approximate reciprocal, nine FMAs and no branch. Why not 1 + tl.erf(..):
    libdevice's erff evaluates two polynomials (a branch on |x| that every warp takes
    both ways), which made gelu_and_mul ALU-bound on the H200 (16384 x 14336: 380 µs,
    86% of copy bandwidth, behind Inductor's 379); and 1 + erf loses all precision
    where erf is near -1. H200, float32 GELU over [-12, 12] and 3 N(0, 1) against
    float64: max abs error 3.8e-7 (libdevice erf: 4.5e-7), median relative 4.3e-8 (3.9e-8);
    bf16 gelu_and_mul 16384 x 14336 353 µs against Inductor's 379 (explore_configs.py act3)."""
    z = tl.abs(x) * 0.7071067811865476
    t = tl.fdiv(1.0, 1.0 + 0.5 * z, ieee_rounding=False)
    p = tl.fma(t, 0.17087277, -0.82215223)
    p = tl.fma(t, p, 1.48851587)
    p = tl.fma(t, p, -1.13520398)
    p = tl.fma(t, p, 0.27886807)
    p = tl.fma(t, p, -0.18628806)
    p = tl.fma(t, p, 0.09678418)
    p = tl.fma(t, p, 0.37409196)
    p = tl.fma(t, p, 1.00002368)
    p = tl.fma(t, p, -1.26551223)
    erfc_z = t * tl.exp(p - z * z)  # erfc(|x| / sqrt 2)
    return 0.5 * x * tl.where(x >= 0, 2.0 - erfc_z, erfc_z)


@triton.jit
def _activation(x, PARAM, ACT: tl.constexpr):
    """ACT(x) in float32. tanh-based GELUs use 1 + tanh(u) = 2 sigmoid(2u), which
    has no cancellation for large negative u (one exp, one division)."""
    if ACT == "silu":
        y = x / (1.0 + tl.exp(-x))
    elif ACT == "gelu":
        y = _gelu_erf(x)
    elif ACT == "gelu_tanh":  # == gelu_new: sqrt(2/pi) (x + 0.044715 x^3)
        u = 0.7978845608028654 * (x + 0.044715 * x * x * x)
        y = x / (1.0 + tl.exp(-2.0 * u))
    elif ACT == "gelu_fast":
        u = x * 0.7978845608 * (1.0 + 0.044715 * x * x)
        y = x / (1.0 + tl.exp(-2.0 * u))
    elif ACT == "quick_gelu":
        y = x / (1.0 + tl.exp(-1.702 * x))
    elif ACT == "relu2":
        r = tl.maximum(x, 0.0)
        y = r * r
    else:  # "fatrelu"
        y = tl.where(x > PARAM, x, 0.0)
    return y


@triton.jit
def _gated_kernel(
    # input rows [.., 2 * D] (first half a, second half b) and output rows [.., D]
    X, X_ROW_STRIDE, OUT, OUT_ROW_STRIDE,
    # sizes and the activation's scalar (fatrelu's threshold)
    N_ROWS, D, PARAM,
    ACT: tl.constexpr,
    ACT_ON_SECOND: tl.constexpr,  # a * act(b) (mul_and_silu) instead of act(a) * b
    BLOCK_M: tl.constexpr,        # rows per program
    BLOCK_N: tl.constexpr,        # output columns per program
    EVEN: tl.constexpr,           # the blocks tile the output exactly: no mask
):
    # 1-D grid, column blocks fastest: consecutive programs stream consecutive
    # memory (a row-major 2-D grid was 4% slower at 16384 x 14336 on H200).
    pid = tl.program_id(0)
    col_blocks = tl.cdiv(D, BLOCK_N)
    rows = (pid // col_blocks) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = (pid % col_blocks) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = None if EVEN else (rows < N_ROWS)[:, None] & (cols < D)[None, :]
    rows = rows.to(tl.int64)
    x_ptrs = X + rows[:, None] * X_ROW_STRIDE + cols[None, :]
    a = tl.load(x_ptrs, mask=mask, other=None if EVEN else 0.0).to(tl.float32)
    b = tl.load(x_ptrs + D, mask=mask, other=None if EVEN else 0.0).to(tl.float32)
    param = tl.cast(PARAM, tl.float32)  # Inductor passes float scalars as fp64
    if ACT_ON_SECOND:
        y = a * _activation(b, param, ACT)
    else:
        y = _activation(a, param, ACT) * b
    tl.store(OUT + rows[:, None] * OUT_ROW_STRIDE + cols[None, :], y.to(OUT.dtype.element_ty), mask=mask)


@triton.jit
def _gated_flat_kernel(
    X, OUT, N, PARAM,
    D: tl.constexpr,              # output width: a compile per width, as Inductor's static shapes
    ACT: tl.constexpr,
    ACT_ON_SECOND: tl.constexpr,
    BLOCK: tl.constexpr,
    EVEN: tl.constexpr,           # BLOCK divides N: no mask
    I64: tl.constexpr,            # the input offsets (below 2 (N + BLOCK) + D, masked lanes too) do not fit int32
):
    """The gated activations over a contiguous [.., 2 D] input seen flat: output element i
    reads row i // D, column i % D of each half, divisions by a constant (a multiply and a
    shift), as Inductor's static-shape code indexes, instead of row x column tiles with
    int64 row offsets."""
    idx = flat_index(BLOCK, I64)
    src = X + (idx // D) * (2 * D) + idx % D
    mask = None if EVEN else idx < N
    a = tl.load(src, mask=mask, other=None if EVEN else 0.0).to(tl.float32)
    b = tl.load(src + D, mask=mask, other=None if EVEN else 0.0).to(tl.float32)
    param = tl.cast(PARAM, tl.float32)
    if ACT_ON_SECOND:
        y = a * _activation(b, param, ACT)
    else:
        y = _activation(a, param, ACT) * b
    tl.store(OUT + idx, y.to(OUT.dtype.element_ty), mask=mask)


@triton.jit
def _plain_kernel(
    X, X_ROW_STRIDE, OUT, OUT_ROW_STRIDE,
    N_ROWS, N_COLS,
    ACT: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    EVEN: tl.constexpr,
):
    pid = tl.program_id(0)
    col_blocks = tl.cdiv(N_COLS, BLOCK_N)
    rows = (pid // col_blocks) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = (pid % col_blocks) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = None if EVEN else (rows < N_ROWS)[:, None] & (cols < N_COLS)[None, :]
    rows = rows.to(tl.int64)
    x = tl.load(X + rows[:, None] * X_ROW_STRIDE + cols[None, :], mask=mask,
                other=None if EVEN else 0.0).to(tl.float32)
    y = _activation(x, 0.0, ACT)
    tl.store(OUT + rows[:, None] * OUT_ROW_STRIDE + cols[None, :], y.to(OUT.dtype.element_ty), mask=mask)


@triton.jit
def _plain_flat_kernel(
    X, OUT, N,
    ACT: tl.constexpr,
    BLOCK: tl.constexpr,
    EVEN: tl.constexpr,   # BLOCK divides N: no mask
    I64: tl.constexpr,    # N does not fit int32 offsets
):
    """The single-input activations over contiguous tensors seen flat (Inductor's indexing:
    one offset an element, int32 when it fits, no row/column split)."""
    idx = flat_index(BLOCK, I64)
    mask = None if EVEN else idx < N
    x = tl.load(X + idx, mask=mask, other=None if EVEN else 0.0).to(tl.float32)
    tl.store(OUT + idx, _activation(x, 0.0, ACT).to(OUT.dtype.element_ty), mask=mask)


# ---------------------------------------------------------- launch config


@dataclass(frozen=True)
class ActConfig:
    block_m: int
    block_n: int
    num_warps: int


# Output elements per program: enough programs to give every SM four at decode
# sizes, between MIN_BLOCK and DECODE_MAX_BLOCK; from THROUGHPUT_ELEMENTS outputs
# (the smallest shape where the gain was measured, 1024 x 14336) THROUGHPUT_BLOCK,
# 16 elements a thread; always 4 warps. H200, bf16, CUDA-graph µs, "cols/warps" (one row
# a program; `bench_activations.py --sweep` and explore_configs.py act2, whose output
# is in benchmarks/results/sweep_session3.txt):
#   silu_and_mul   1 x 14336: 256/4 1.12  512/4 1.30 | 16 x 14336: 512/4 1.54  2048/8 1.59
#                 64 x 14336: 1024/4 2.09  2048/8 2.15 | 64 x 28672: 1024/2 2.94  1024/4 3.04
#   Throughput: 16 elements a thread keep enough loads in flight on the H200 (at 8,
#   the single-input activations stayed at 86-93% of copy bandwidth):
#     quick_gelu 16384 x 14336: 2048/4 226.7  1024/2 228.3  1024/4 239.2 (Inductor 226.0)
#     gelu_new   16384 x 14336: 1024/2 227.7  2048/4 229.6  1024/4 255.3 (Inductor 278.2)
#     gelu_and_mul 16384 x 14336: 1024/2 383.5  2048/4 384.7  1024/4 402.3 (Inductor 378.0)
#   On an H100 the same shapes are within 1% across 1024-2048 elements and 2-8 warps.
#   The exact GELU (erfc form, `_gelu_erf`) gated, without masks (`_call`'s EVEN):
#     gelu_and_mul 16384 x 14336: 1024/2 345.2  2048/4 345.6  1024/4 369.3 | 1024 x 14336: 2048/4 25.2  1024/2 25.2
MIN_BLOCK = 256
DECODE_MAX_BLOCK = 1024
THROUGHPUT_BLOCK = 2048
THROUGHPUT_ELEMENTS = 1024 * 14336
WARPS = 4


@S.cached_config
def act_config(n_rows: int, n_cols: int, element_size: int, sm_count: int = 132) -> ActConfig:
    """Launch configuration for ``n_rows x n_cols`` outputs (measurements above)."""
    if n_rows * n_cols >= THROUGHPUT_ELEMENTS:
        block = THROUGHPUT_BLOCK
    else:
        block = S.program_elements(n_rows * n_cols, sm_count, MIN_BLOCK, DECODE_MAX_BLOCK)
    block_n = min(block, S.next_pow2(n_cols))
    block_m = max(1, min(block // block_n, S.next_pow2(max(n_rows, 1))))
    return ActConfig(block_m, block_n, WARPS)


FlatConfig = S.FlatConfig


# Contiguous single-input activations run flat (`_plain_flat_kernel`). H200, bf16, CUDA-graph µs
# ("elements/warps"; explore_configs.py act6, results/sweep_session6_h200.txt, two rounds each):
#   quick_gelu 1024 x 14336: 2048/4 15.06  1024/4 15.34 | 1024 x 28672: 1024/4 30.21  2048/4 30.47
#              4096 x 14336: 1024/4 57.66  2048/4 58.15 | 16384 x 14336: 1024/4 221.3  2048/4 225.1
#              (Inductor 14.87 / 29.96 / 57.60 / 220.8; the tile kernel, 2048/4: 15.46 / 30.81 / 58.29 / 223.6)
#   gelu_new   1024 x 14336: 2048/4 14.87  1024/4 15.63 | 16384 x 14336: 1024/4 224.0  2048/4 223.6 (tile 231.7)
# Below FLAT_SMALL_ELEMENTS, 16 elements a thread; from there, 8; decode sizes as the tile kernel.
FLAT_SMALL_ELEMENTS = 1 << 24
FLAT_LARGE_BLOCK = 1024


@S.cached_config
def flat_config(n_elements: int, sm_count: int = 132) -> FlatConfig:
    """Launch configuration of the flat kernel over `n_elements` (measurements above)."""
    if n_elements >= FLAT_SMALL_ELEMENTS:
        return FlatConfig(FLAT_LARGE_BLOCK, WARPS)
    if n_elements >= THROUGHPUT_ELEMENTS:
        return FlatConfig(THROUGHPUT_BLOCK, WARPS)
    return FlatConfig(S.program_elements(n_elements, sm_count, MIN_BLOCK, DECODE_MAX_BLOCK), WARPS)


# The gated activations over contiguous inputs run flat too (`_gated_flat_kernel`). H200, bf16,
# CUDA-graph µs ("elements/warps"; explore_configs.py act8, results/sweep_session7_h200.txt, two rounds
# each, the slower listed; "tiles" the row-tile kernel under act_config):
#   silu_and_mul  1024 x 14336: 1024/4 21.97  2048/8 22.10  2048/4 22.47  tiles 22.52 (Inductor 22.03)
#                16384 x 14336: 1024/4 324.9  2048/8 324.5  tiles 326.1 (Inductor 324.4)
#                    1 x 28672: 512/4 1.26  256/4 1.29  tiles 1.37 (Inductor 1.29)
#   fatrelu_and_mul 1024 x 14336: 1024/4 22.12  tiles 22.47 (Inductor 21.93)
#   gelu_and_mul, tanh, 1024 x 14336: 1024/4 21.95  tiles 22.53 (Inductor 22.99)
#   gelu_and_mul, exact (ALU-bound: the flat index's division costs more than it saves):
#                 1024 x 14336: 1024/4 24.27  tiles 24.63 | 4096 x 14336: 1024/4 90.14  tiles 88.27
#                16384 x 14336: 1024/4 350.6  tiles 338.7 (Inductor 374.7)
#                    1 x 28672: 512/4 1.26  256/4 1.29  tiles 1.38 (Inductor 1.24)
# On the H100, with less DRAM bandwidth a multiprocessor (`S.memory_gbs_per_sm`, 25.4 GB/s
# against the H200's 36.5), memory time hides the flat index's cost and the flat kernel at 2048/8
# leads (explore_configs.py act10, results/sweep_session10.txt, slower of two rounds;
# "tiles": the rule before):
#   H100 gelu_and_mul  4096 x 14336: flat 2048/8 119.08  1024/4 119.70  tiles 121.42 (Inductor 120.53)
#                     16384 x 28672: flat 2048/8 929.94  1024/4 931.91  tiles 942.77 (Inductor 930.83)
# From THROUGHPUT_ELEMENTS outputs: 8 elements a thread (the exact GELU from 4096 x 14336:
# the tiles, or flat 2048/8 under `S.WIDE_DRAM_GBS_PER_SM`). Decode sizes: four programs a
# multiprocessor, 512 to 1024 elements a program (at 1 x 14336, 256 and 512 tie).
GATED_FLAT_BLOCK = 1024
GATED_FLAT_MIN_BLOCK = 512
EXACT_GELU_TILES_ELEMENTS = 4096 * 14336


@S.cached_config
def gated_flat_config(n_outputs: int, act: str, sm_count: int = 132,
                      gbs_per_sm: float | None = None) -> FlatConfig | None:
    """Launch configuration of the flat gated kernel over `n_outputs`, None where the row tiles
    are faster (measurements above); `gbs_per_sm`: `S.memory_gbs_per_sm` of the GPU (read for
    the large exact GELU only)."""
    if act == "gelu" and n_outputs >= EXACT_GELU_TILES_ELEMENTS:
        if S.narrow_dram(gbs_per_sm):
            return FlatConfig(2048, 8)
        return None
    if n_outputs >= THROUGHPUT_ELEMENTS:
        return FlatConfig(GATED_FLAT_BLOCK, WARPS)
    return FlatConfig(S.program_elements(n_outputs, sm_count, GATED_FLAT_MIN_BLOCK, DECODE_MAX_BLOCK), WARPS)


# --------------------------------------------------------------- launcher


def _launch_into(kernel, x: Tensor, out: Tensor, act: str, gated: bool, act_on_second: bool = False,
                 param: float = 0.0, config: ActConfig | None = None) -> None:
    x2 = S.as_rows(x)
    out2 = S.as_rows(out)
    n_rows, n_cols = out2.shape
    if n_rows == 0 or n_cols == 0:
        return
    cfg = config or act_config(n_rows, n_cols, x.element_size(), S.sm_count(x))
    grid = (S.cdiv(n_rows, cfg.block_m) * S.cdiv(n_cols, cfg.block_n),)
    with S.on_device(x):
        _call(kernel, grid, cfg, x2, out2, n_rows, n_cols, act, gated, act_on_second, param)


def _call(kernel, grid, cfg, x2, out2, n_rows, n_cols, act, gated, act_on_second, param):
    # Masks dropped where the blocks tile the output exactly (as Inductor drops xmask):
    # H200, the exact GELU gated at 16384 x 14336, 2048/4: 345.6 against 366.7 µs with
    # the masks; no change for silu (explore_configs.py act4, results/sweep_session5_h200.txt).
    even = n_cols % cfg.block_n == 0 and n_rows % cfg.block_m == 0
    if gated:
        kernel[grid](x2, S.row_stride(x2, n_rows), out2, S.row_stride(out2, n_rows), n_rows, n_cols, param,
                     ACT=act, ACT_ON_SECOND=act_on_second, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n,
                     EVEN=even, num_warps=cfg.num_warps)
    else:
        kernel[grid](x2, S.row_stride(x2, n_rows), out2, S.row_stride(out2, n_rows), n_rows, n_cols,
                     ACT=act, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, EVEN=even, num_warps=cfg.num_warps)


def gated(x: Tensor, act: str, act_on_second: bool = False, param: float = 0.0,
          config: ActConfig | FlatConfig | None = None, kernel=_gated_kernel,
          flat_kernel=_gated_flat_kernel) -> Tensor:
    """``act(a) * b`` (or ``a * act(b)``) over the halves of x's last dimension: flat over a
    contiguous x where `gated_flat_config` says so (or given a FlatConfig), else by row tiles."""
    width = x.shape[-1] // 2
    out = torch.empty((*x.shape[:-1], width), dtype=x.dtype, device=x.device)
    n = out.numel()
    # The flat kernel compiles the width in; a symbolic width (dynamic-shape tracing) takes the tiles.
    if config is None and x.is_contiguous() and type(width) is int:
        gbs = S.memory_gbs_per_sm(x) if act == "gelu" and n >= EXACT_GELU_TILES_ELEMENTS else None
        config = gated_flat_config(n, act, S.sm_count(x), gbs)
    if not isinstance(config, FlatConfig):
        _launch_into(kernel, x, out, act, True, act_on_second, param, config)
    elif n:
        with S.on_device(x):
            flat_kernel[(S.cdiv(n, config.block),)](
                x, out, n, param, D=width, ACT=act, ACT_ON_SECOND=act_on_second, BLOCK=config.block,
                EVEN=n % config.block == 0, I64=2 * (n + config.block) + width > S.INT32_MAX,
                num_warps=config.num_warps)
    return out


def plain(x: Tensor, act: str, config: ActConfig | FlatConfig | None = None, kernel=_plain_kernel,
          flat_kernel=_plain_flat_kernel) -> Tensor:
    """``act(x)``: flat over a contiguous x (or given a FlatConfig), else by row tiles."""
    out = S.empty_like_rows(x)
    if isinstance(config, FlatConfig) or (config is None and x.is_contiguous()):
        n = x.numel()
        if n:
            cfg = config or flat_config(n, S.sm_count(x))
            with S.on_device(x):
                flat_kernel[(S.cdiv(n, cfg.block),)](x, out, n, ACT=act, BLOCK=cfg.block, EVEN=n % cfg.block == 0,
                                                     I64=n + cfg.block > S.INT32_MAX, num_warps=cfg.num_warps)
        return out
    _launch_into(kernel, x, out, act, False, config=config)
    return out


# ------------------------------------------------ graph-visible triton_ops
# wrap_triton on every trace, never cached at import (as quant.py's triton_ops: outside
# functionalization it returns the raw kernel, which a later compile cannot trace).


def _gated_kernels() -> dict:
    return {"kernel": wrap_triton(_gated_kernel), "flat_kernel": wrap_triton(_gated_flat_kernel)}


def _plain_kernels() -> dict:
    return {"kernel": wrap_triton(_plain_kernel), "flat_kernel": wrap_triton(_plain_flat_kernel)}


@triton_op(f"{S.NAMESPACE}::silu_and_mul", mutates_args=())
def silu_and_mul_op(x: Tensor) -> Tensor:
    return gated(x, "silu", **_gated_kernels())


@triton_op(f"{S.NAMESPACE}::mul_and_silu", mutates_args=())
def mul_and_silu_op(x: Tensor) -> Tensor:
    return gated(x, "silu", act_on_second=True, **_gated_kernels())


@triton_op(f"{S.NAMESPACE}::gelu_and_mul", mutates_args=())
def gelu_and_mul_op(x: Tensor, approximate: str = "none") -> Tensor:
    act = "gelu_tanh" if approximate == "tanh" else "gelu"
    return gated(x, act, **_gated_kernels())


@triton_op(f"{S.NAMESPACE}::fatrelu_and_mul", mutates_args=())
def fatrelu_and_mul_op(x: Tensor, threshold: float) -> Tensor:
    return gated(x, "fatrelu", param=threshold, **_gated_kernels())


@triton_op(f"{S.NAMESPACE}::gelu_new", mutates_args=())
def gelu_new_op(x: Tensor) -> Tensor:
    return plain(x, "gelu_tanh", **_plain_kernels())


@triton_op(f"{S.NAMESPACE}::gelu_fast", mutates_args=())
def gelu_fast_op(x: Tensor) -> Tensor:
    return plain(x, "gelu_fast", **_plain_kernels())


@triton_op(f"{S.NAMESPACE}::quick_gelu", mutates_args=())
def quick_gelu_op(x: Tensor) -> Tensor:
    return plain(x, "quick_gelu", **_plain_kernels())


@triton_op(f"{S.NAMESPACE}::relu2", mutates_args=())
def relu2_op(x: Tensor) -> Tensor:
    return plain(x, "relu2", **_plain_kernels())


# ------------------------------------------------------ IR registrations
# Eager: launch directly. Traced: the triton_op above (see _support.py).


def _gated_args(x):
    return S.input_ok(x) and x.shape[-1] % 2 == 0


def _plain_args(x):
    return S.input_ok(x)


def _gelu_and_mul_args(x, approximate="none"):
    return approximate in _GELU_APPROXIMATIONS and _gated_args(x)


def _fatrelu_args(x, threshold):
    return _gated_args(x)


_REG = dict(supported=S.platform_supported)


@ops.silu_and_mul.register_impl("triton", supports_args=_gated_args, **_REG)
def silu_and_mul(x: Tensor) -> Tensor:
    if S.tracing():
        return silu_and_mul_op(x)
    return gated(x, "silu")


@ops.mul_and_silu.register_impl("triton", supports_args=_gated_args, **_REG)
def mul_and_silu(x: Tensor) -> Tensor:
    if S.tracing():
        return mul_and_silu_op(x)
    return gated(x, "silu", act_on_second=True)


@ops.gelu_and_mul.register_impl("triton", supports_args=_gelu_and_mul_args, **_REG)
def gelu_and_mul(x: Tensor, approximate: str = "none") -> Tensor:
    if S.tracing():
        return gelu_and_mul_op(x, approximate)
    return gated(x, "gelu_tanh" if approximate == "tanh" else "gelu")


@ops.fatrelu_and_mul.register_impl("triton", supports_args=_fatrelu_args, **_REG)
def fatrelu_and_mul(x: Tensor, threshold: float) -> Tensor:
    if S.tracing():
        return fatrelu_and_mul_op(x, threshold)
    return gated(x, "fatrelu", param=threshold)


@ops.gelu_new.register_impl("triton", supports_args=_plain_args, **_REG)
def gelu_new(x: Tensor) -> Tensor:
    if S.tracing():
        return gelu_new_op(x)
    return plain(x, "gelu_tanh")


@ops.gelu_fast.register_impl("triton", supports_args=_plain_args, **_REG)
def gelu_fast(x: Tensor) -> Tensor:
    if S.tracing():
        return gelu_fast_op(x)
    return plain(x, "gelu_fast")


@ops.quick_gelu.register_impl("triton", supports_args=_plain_args, **_REG)
def quick_gelu(x: Tensor) -> Tensor:
    if S.tracing():
        return quick_gelu_op(x)
    return plain(x, "quick_gelu")


@ops.relu2.register_impl("triton", supports_args=_plain_args, **_REG)
def relu2(x: Tensor) -> Tensor:
    if S.tracing():
        return relu2_op(x)
    return plain(x, "relu2")
