"""Triton rotary embedding: ``rotary_embedding`` (vLLM's RotaryEmbedding.forward).

One kernel: a program takes BLOCK_T tokens, loads their cos/sin rows once and
rotates every query head, then every key head, of those tokens; NeoX (split
halves) or GPT-J (interleaved pairs) by a constexpr. Then the launch
configuration, the launcher, the graph-visible ``triton_op`` forms and the
IR registrations.

Two providers, as for fused_add_rms_norm: ``triton`` (functional: fresh
outputs, the pass-through features copied) and ``triton_inplace`` (rotates
query and key where they lie, like vLLM's kernel; the pass-through features
are neither read nor written). Semantics are the IR's (``ir/ops/rotary.py``):
float32 arithmetic, one rounding to the input's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import triton_op, wrap_triton

import irshim.ir.ops.rotary  # noqa: F401  (registers the op)
from irshim.ir import ops

from . import _support as S

OPS = ("rotary_embedding",)


# ---------------------------------------------------------------- kernel


@triton.jit
def _load_pairs(
    X, X_T_STRIDE, X_H_STRIDE, tokens, token_mask, h0, N_HEADS,
    HALF: tl.constexpr, BLOCK_HALF: tl.constexpr, NEOX: tl.constexpr, BLOCK_H: tl.constexpr, EVEN: tl.constexpr,
):
    """The rotated pairs (a, b) of heads [h0, h0 + BLOCK_H) of `tokens`, in float32:
    NeoX pairs features (i, i + HALF), GPT-J (2i, 2i + 1). GPT-J's pairs are loaded
    as one contiguous run and split in registers: two stride-2 loads made the H100
    run 11x slower than NeoX (4096 tokens, Llama-3-8B heads: 336 against 31 µs)."""
    heads = h0 + tl.arange(0, BLOCK_H)
    x_heads = X + tokens[:, None, None] * X_T_STRIDE + heads[None, :, None] * X_H_STRIDE
    if NEOX:
        half = tl.arange(0, BLOCK_HALF)
        mask = None if EVEN else (
            token_mask[:, None, None] & (heads < N_HEADS)[None, :, None] & (half < HALF)[None, None, :])
        a = tl.load(x_heads + half[None, None, :], mask=mask, other=None if EVEN else 0.0).to(tl.float32)
        b = tl.load(x_heads + HALF + half[None, None, :], mask=mask, other=None if EVEN else 0.0).to(tl.float32)
    else:
        rot = tl.arange(0, 2 * BLOCK_HALF)
        mask = None if EVEN else (
            token_mask[:, None, None] & (heads < N_HEADS)[None, :, None] & (rot < 2 * HALF)[None, None, :])
        x = tl.load(x_heads + rot[None, None, :], mask=mask, other=None if EVEN else 0.0).to(tl.float32)
        a, b = tl.split(tl.reshape(x, [x.shape[0], BLOCK_H, BLOCK_HALF, 2]))
    return a, b


@triton.jit
def _store_rotated(
    a, b, cos, sin,
    X, X_T_STRIDE, X_H_STRIDE, OUT, OUT_T_STRIDE, OUT_H_STRIDE, tokens, token_mask, h0, N_HEADS,
    HALF: tl.constexpr, BLOCK_HALF: tl.constexpr, N_PASS: tl.constexpr, BLOCK_PASS: tl.constexpr,
    NEOX: tl.constexpr, COPY_PASS: tl.constexpr, BLOCK_H: tl.constexpr, EVEN: tl.constexpr,
):
    """Rotate the pairs loaded by `_load_pairs` and store them (and, functional with
    partial rotary, copy the pass-through features) into OUT."""
    heads = h0 + tl.arange(0, BLOCK_H)
    out_heads = OUT + tokens[:, None, None] * OUT_T_STRIDE + heads[None, :, None] * OUT_H_STRIDE
    ra = (a * cos - b * sin).to(OUT.dtype.element_ty)
    rb = (b * cos + a * sin).to(OUT.dtype.element_ty)
    if NEOX:
        half = tl.arange(0, BLOCK_HALF)
        mask = None if EVEN else (
            token_mask[:, None, None] & (heads < N_HEADS)[None, :, None] & (half < HALF)[None, None, :])
        tl.store(out_heads + half[None, None, :], ra, mask=mask)
        tl.store(out_heads + HALF + half[None, None, :], rb, mask=mask)
    else:
        rot = tl.arange(0, 2 * BLOCK_HALF)
        mask = None if EVEN else (
            token_mask[:, None, None] & (heads < N_HEADS)[None, :, None] & (rot < 2 * HALF)[None, None, :])
        tl.store(out_heads + rot[None, None, :], tl.reshape(tl.join(ra, rb), [ra.shape[0], BLOCK_H, 2 * BLOCK_HALF]),
                 mask=mask)
    if COPY_PASS:  # features [2 * HALF, head_size) pass through
        rest = tl.arange(0, BLOCK_PASS)
        pmask = None if EVEN else (
            token_mask[:, None, None] & (heads < N_HEADS)[None, :, None] & (rest < N_PASS)[None, None, :])
        x_heads = X + tokens[:, None, None] * X_T_STRIDE + heads[None, :, None] * X_H_STRIDE
        p = tl.load(x_heads + 2 * HALF + rest[None, None, :], mask=pmask, other=None if EVEN else 0.0)
        tl.store(out_heads + 2 * HALF + rest[None, None, :], p, mask=pmask)


@triton.jit
def _rotate_heads(
    cos, sin, X, X_T_STRIDE, X_H_STRIDE, OUT, OUT_T_STRIDE, OUT_H_STRIDE, tokens, token_mask, N_HEADS,
    HALF: tl.constexpr, BLOCK_HALF: tl.constexpr, N_PASS: tl.constexpr, BLOCK_PASS: tl.constexpr,
    NEOX: tl.constexpr, COPY_PASS: tl.constexpr, BLOCK_H: tl.constexpr, EVEN: tl.constexpr,
):
    """Rotate heads [0, N_HEADS) of `tokens` from X into OUT, BLOCK_H heads a step."""
    for h0 in range(0, N_HEADS, BLOCK_H):
        a, b = _load_pairs(X, X_T_STRIDE, X_H_STRIDE, tokens, token_mask, h0, N_HEADS,
                           HALF, BLOCK_HALF, NEOX, BLOCK_H, EVEN)
        _store_rotated(a, b, cos, sin, X, X_T_STRIDE, X_H_STRIDE, OUT, OUT_T_STRIDE, OUT_H_STRIDE,
                       tokens, token_mask, h0, N_HEADS, HALF, BLOCK_HALF, N_PASS, BLOCK_PASS, NEOX,
                       COPY_PASS, BLOCK_H, EVEN)


@triton.jit
def _rope_kernel(
    # positions [T] and the cache [max_position, 2 * HALF] (cos half, then sin half)
    POS, POS_STRIDE, CACHE, CACHE_ROW_STRIDE,
    # query in and out: [T, heads, head_size] with unit stride along the head
    Q, Q_T_STRIDE, Q_H_STRIDE, Q_OUT, Q_OUT_T_STRIDE, Q_OUT_H_STRIDE,
    # key in and out (unused unless HAS_KEY)
    K, K_T_STRIDE, K_H_STRIDE, K_OUT, K_OUT_T_STRIDE, K_OUT_H_STRIDE,
    # sizes
    N_TOKENS, N_Q_HEADS, N_K_HEADS,
    HALF: tl.constexpr,          # rotary_dim / 2
    BLOCK_HALF: tl.constexpr,    # next power of two >= HALF
    N_PASS: tl.constexpr,        # head_size - rotary_dim
    BLOCK_PASS: tl.constexpr,
    NEOX: tl.constexpr,
    HAS_KEY: tl.constexpr,
    COPY_PASS: tl.constexpr,     # functional form with N_PASS > 0
    BLOCK_T: tl.constexpr,       # tokens per program
    BLOCK_HQ: tl.constexpr,      # query heads per step
    BLOCK_HK: tl.constexpr,      # key heads per step
    ONE_STEP: tl.constexpr,      # all heads in one step: query and key loaded first
    EVEN: tl.constexpr,          # the blocks tile tokens, heads and features exactly: no masks
):
    tokens = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    token_mask = tokens < N_TOKENS
    tokens = tokens.to(tl.int64)
    if ONE_STEP:
        # Query and key loads go out before the position -> cache row chain (two
        # dependent loads), so a decode-sized launch waits for two round trips, not three.
        qa, qb = _load_pairs(Q, Q_T_STRIDE, Q_H_STRIDE, tokens, token_mask, 0, N_Q_HEADS,
                             HALF, BLOCK_HALF, NEOX, BLOCK_HQ, EVEN)
        if HAS_KEY:
            ka, kb = _load_pairs(K, K_T_STRIDE, K_H_STRIDE, tokens, token_mask, 0, N_K_HEADS,
                                 HALF, BLOCK_HALF, NEOX, BLOCK_HK, EVEN)
    pos = tl.load(POS + tokens * POS_STRIDE, mask=None if EVEN else token_mask,
                  other=None if EVEN else 0).to(tl.int64)
    half = tl.arange(0, BLOCK_HALF)
    cs_mask = None if EVEN else token_mask[:, None, None] & (half < HALF)[None, None, :]
    cs_rows = CACHE + pos[:, None, None] * CACHE_ROW_STRIDE + half[None, None, :]
    # [BLOCK_T, 1, BLOCK_HALF]: broadcast over heads; loaded once for query and key. The
    # cache is a small table that every token and layer reads: kept in L2 (evict_last).
    # H200, Llama-3 heads, 1024-16384 tokens: 0-1% faster, never slower beyond the 0.5%
    # spread of repeated timings (explore_configs.py rope4, results/sweep_session6_h200.txt).
    cos = tl.load(cs_rows, mask=cs_mask, other=None if EVEN else 0.0, eviction_policy="evict_last").to(tl.float32)
    sin = tl.load(cs_rows + HALF, mask=cs_mask, other=None if EVEN else 0.0,
                  eviction_policy="evict_last").to(tl.float32)
    if ONE_STEP:
        _store_rotated(qa, qb, cos, sin, Q, Q_T_STRIDE, Q_H_STRIDE, Q_OUT, Q_OUT_T_STRIDE, Q_OUT_H_STRIDE,
                       tokens, token_mask, 0, N_Q_HEADS, HALF, BLOCK_HALF, N_PASS, BLOCK_PASS, NEOX, COPY_PASS,
                       BLOCK_HQ, EVEN)
        if HAS_KEY:
            _store_rotated(ka, kb, cos, sin, K, K_T_STRIDE, K_H_STRIDE, K_OUT, K_OUT_T_STRIDE, K_OUT_H_STRIDE,
                           tokens, token_mask, 0, N_K_HEADS, HALF, BLOCK_HALF, N_PASS, BLOCK_PASS, NEOX,
                           COPY_PASS, BLOCK_HK, EVEN)
    else:
        _rotate_heads(cos, sin, Q, Q_T_STRIDE, Q_H_STRIDE, Q_OUT, Q_OUT_T_STRIDE, Q_OUT_H_STRIDE, tokens,
                      token_mask, N_Q_HEADS, HALF, BLOCK_HALF, N_PASS, BLOCK_PASS, NEOX, COPY_PASS, BLOCK_HQ, EVEN)
        if HAS_KEY:
            _rotate_heads(cos, sin, K, K_T_STRIDE, K_H_STRIDE, K_OUT, K_OUT_T_STRIDE, K_OUT_H_STRIDE, tokens,
                          token_mask, N_K_HEADS, HALF, BLOCK_HALF, N_PASS, BLOCK_PASS, NEOX, COPY_PASS, BLOCK_HK,
                          EVEN)


# ---------------------------------------------------------- launch config


@dataclass(frozen=True)
class RopeConfig:
    block_t: int
    block_hq: int
    block_hk: int
    num_warps: int


# A program takes BLOCK_T tokens x all query heads x the rotated pairs, heads
# stepped through BLOCK_H at a time so that a step holds at most MAX_STEP_PAIRS
# pairs (when all heads fit, they are all loaded before the cache row: ONE_STEP).
# The rule: one token a program at every size, one warp per PAIRS_PER_WARP pairs of
# the token, between MIN_WARPS and MAX_WARPS (Llama-3-8B = 32 q heads x 64 pairs =
# 2048 pairs a token: 8 warps; 70B at TP8 = 512 pairs: 4 warps).
# H200, bf16 NeoX, functional, CUDA-graph µs, "tokens/warps" (explore_configs.py rope3,
# results/sweep_session6_h200.txt; earlier sweeps: `bench_rope.py --sweep`, sweep_rope_h*.txt):
#   8B  1: 1/4 1.56  1/8 1.57 | 1024: 1/4 6.45  2/8 6.53 (unmasked, rope4: 1/8 6.60  1/4 6.81)
#       4096: 1/8 23.48  1/4 23.69 | 16384: 1/8 84.78  1/4 86.12
#   70B 1: 1/4 1.36  2/4 1.81 | 128: 1/4 1.50  4/1 1.92 | 1024: 1/4 2.19  4/8 2.49 | 16384: 1/4 22.73  4/2 23.83
#   H100 (older kernel): 8B 4096 1/8 31.09  1/4 31.79 | 16384 1/8 117.2  1/4 119.1 | 70B 16384 1/4 29.08  4/1 29.49
# Up to 2026-11-27 throughput sizes packed 2048 pairs a program (70B: 4 tokens a program,
# 1 warp), which rope3 measured 4-28% slower on the 70B heads than one token and 4 warps.
PAIRS_PER_WARP = 256
MIN_WARPS = 4
MAX_WARPS = 8
MAX_STEP_PAIRS = 4096


@S.cached_config
def rope_config(n_tokens: int, n_q_heads: int, n_k_heads: int, half: int) -> RopeConfig:
    """Launch configuration (measurements above): the same for every token count."""
    block_half = S.next_pow2(half)
    pairs_per_token = S.next_pow2(max(n_q_heads, 1)) * block_half
    block_t = 1
    num_warps = max(MIN_WARPS, min(MAX_WARPS, pairs_per_token // PAIRS_PER_WARP))
    max_heads = max(1, MAX_STEP_PAIRS // (block_t * block_half))
    block_hq = min(S.next_pow2(max(n_q_heads, 1)), max_heads)
    block_hk = min(S.next_pow2(max(n_k_heads, 1)), max_heads)
    return RopeConfig(block_t, block_hq, block_hk, num_warps)


# --------------------------------------------------------------- launcher


def _heads(x: Tensor, head_size: int) -> tuple[int, int, int]:
    """(heads, token stride, head stride) of x as [T, heads, head_size]."""
    if x.dim() == 2:
        return x.shape[1] // head_size, x.stride(0), head_size
    return x.shape[1], x.stride(0), x.stride(1)


def _launch(kernel, positions: Tensor, query: Tensor, key: Tensor | None, head_size: int, rotary_dim: int,
            cos_sin_cache: Tensor, is_neox_style: bool, q_out: Tensor, k_out: Tensor | None,
            config: RopeConfig | None = None) -> None:
    """Rotate query (and key) into q_out (and k_out): the same tensors for the in-place form.

    `kernel` is the jitted kernel (eager) or ``wrap_triton(kernel)`` (traced).
    """
    n_tokens = query.shape[0]
    if n_tokens == 0:
        return
    half, n_pass = rotary_dim // 2, head_size - rotary_dim
    hq, q_ts, q_hs = _heads(query, head_size)
    qo_hq, qo_ts, qo_hs = _heads(q_out, head_size)
    has_key = key is not None
    if has_key:
        hk, k_ts, k_hs = _heads(key, head_size)
        _, ko_ts, ko_hs = _heads(k_out, head_size)
    else:
        key, k_out, hk, k_ts, k_hs, ko_ts, ko_hs = query, q_out, 0, 0, 0, 0, 0
    cfg = config or rope_config(n_tokens, hq, hk, half)
    copy_pass = n_pass > 0 and q_out.data_ptr() != query.data_ptr()
    block_half, block_pass = S.next_pow2(half), S.next_pow2(max(n_pass, 1))
    # Masks dropped where the blocks tile everything exactly (explore_configs.py rope3, H200,
    # results/sweep_session6_h200.txt): 70B/TP8 heads 1 token 1.34 -> 1.27 µs, 128 tokens 1.56 -> 1.43.
    even = (n_tokens % cfg.block_t == 0 and hq % cfg.block_hq == 0 and hk % cfg.block_hk == 0
            and half == block_half and (not copy_pass or n_pass == block_pass))
    grid = (S.cdiv(n_tokens, cfg.block_t),)
    kernel[grid](
        positions, positions.stride(0), cos_sin_cache, cos_sin_cache.stride(0),
        query, q_ts, q_hs, q_out, qo_ts, qo_hs,
        key, k_ts, k_hs, k_out, ko_ts, ko_hs,
        n_tokens, hq, hk,
        HALF=half, BLOCK_HALF=block_half, N_PASS=n_pass, BLOCK_PASS=block_pass,
        NEOX=is_neox_style, HAS_KEY=has_key, COPY_PASS=copy_pass,
        BLOCK_T=cfg.block_t, BLOCK_HQ=cfg.block_hq, BLOCK_HK=cfg.block_hk,
        ONE_STEP=cfg.block_hq >= hq and cfg.block_hk >= hk, EVEN=even, num_warps=cfg.num_warps,
    )


def rotary_embedding_into(positions, query, key, head_size, rotary_dim, cos_sin_cache, is_neox_style,
                          config=None, kernel=_rope_kernel) -> tuple[Tensor, Tensor]:
    """Functional form: fresh contiguous outputs shaped like the inputs (key None: an empty tensor)."""
    q_out = S.empty_like_rows(query)
    k_out = (S.empty_like_rows(key) if key is not None
             else torch.empty(0, dtype=query.dtype, device=query.device))
    _launch(kernel, positions, query, key, head_size, rotary_dim, cos_sin_cache, is_neox_style,
            q_out, k_out if key is not None else None, config)
    return q_out, k_out


def rotary_embedding_inplace_(positions, query, key, head_size, rotary_dim, cos_sin_cache, is_neox_style,
                              config=None, kernel=_rope_kernel) -> None:
    """In-place form: query and key rotated where they lie."""
    _launch(kernel, positions, query, key, head_size, rotary_dim, cos_sin_cache, is_neox_style,
            query, key, config)


# ------------------------------------------------------------ predicates


_POSITION_DTYPES = frozenset((torch.int64, torch.int32))

# The predicates run on every eager call: each tensor's shape and strides are read once
# (a metadata read is a call into torch, 0.2-0.6 µs on the dev VM; `x.stride(1)` costs
# twice `x.stride()`), and devices are compared once for all tensors (`S.same_devices`).
# Dev VM, Llama-3-8B heads, CPU tensors under the interpreter: the functional check
# 12.6 -> 8.1 µs; the in-place one 18.7 -> 6.0 µs on slices of a qkv buffer (vLLM's layout).


def _heads_ok(x: Tensor, shape, tokens: int, head_size: int) -> bool:
    """x (of this shape) is [T, H * head_size] or [T, H, head_size] in a kernel dtype,
    with unit stride along a head's features and heads that do not overlap."""
    if x.dtype not in S.DTYPES:
        return False
    if len(shape) == 2:
        return shape[0] == tokens and shape[1] % head_size == 0 and (shape[1] <= 1 or x.stride()[1] == 1)
    if len(shape) == 3:
        if shape[0] != tokens or shape[2] != head_size:
            return False
        if x.is_contiguous():
            return True
        stride = x.stride()
        return (stride[2] == 1 or head_size == 1) and (shape[1] <= 1 or stride[1] >= head_size)
    return False


def _span(shape, stride) -> int:
    """Elements one token's row covers, from its first ([T, H*D] or [T, H, D], checked by `_heads_ok`)."""
    return shape[1] if len(shape) == 2 else (shape[1] - 1) * stride[1] + shape[2]


def _tokens_apart(x: Tensor, shape, stride) -> bool:
    """Tokens do not share memory (an in-place write of one cannot clobber another)."""
    return shape[0] <= 1 or stride[0] >= _span(shape, stride)


def qk_apart(query: Tensor, key: Tensor, q_layout=None, k_layout=None) -> bool:
    """query and key share no element. Exact for vLLM's case (column slices of one
    qkv buffer: same token stride, disjoint column ranges), else by memory extents.
    `*_layout`: (shape, stride) when the caller has read them."""
    q_shape, q_stride = q_layout or (query.shape, query.stride())
    k_shape, k_stride = k_layout or (key.shape, key.stride())
    size = query.element_size()
    if query.dtype == key.dtype and q_shape[0] > 1 and q_stride[0] == k_stride[0]:
        stride = q_stride[0]
        offset = key.data_ptr() - query.data_ptr()
        if offset % size == 0:
            offset //= size
            if offset % stride >= _span(q_shape, q_stride) and (-offset) % stride >= _span(k_shape, k_stride):
                return True
    return S.disjoint(query, key)


def _args_ok(positions, query, key, head_size, rotary_dim, cos_sin_cache) -> bool:
    if head_size <= 0 or rotary_dim <= 0 or rotary_dim > head_size or rotary_dim % 2:
        return False
    q_shape = query.shape
    tokens = q_shape[0] if q_shape else -1
    p_shape = positions.shape
    if not (len(p_shape) == 1 and p_shape[0] == tokens and positions.dtype in _POSITION_DTYPES):
        return False
    c_shape = cos_sin_cache.shape
    if not (len(c_shape) == 2 and c_shape[1] == rotary_dim and cos_sin_cache.dtype in S.DTYPES
            and (rotary_dim == 1 or cos_sin_cache.stride()[1] == 1)):
        return False
    if not (_heads_ok(query, q_shape, tokens, head_size)
            and (key is None or _heads_ok(key, key.shape, tokens, head_size))):
        return False
    return S.device_ok(query) and S.same_devices(query, positions, cos_sin_cache, key)


def _functional_args(positions, query, key, head_size, rotary_dim, cos_sin_cache, is_neox_style):
    return _args_ok(positions, query, key, head_size, rotary_dim, cos_sin_cache)


def _writable(positions, query, key, head_size, rotary_dim, cos_sin_cache, is_neox_style):
    # Writing in place needs, beyond `_functional_args`: tokens that do not share
    # memory, and query and key apart. A contiguous tensor's tokens never overlap, and
    # two contiguous tensors are apart exactly when their extents are (no layout read).
    q_layout = None if query.is_contiguous() else (query.shape, query.stride())
    if q_layout is not None and not _tokens_apart(query, *q_layout):
        return False
    if key is None:
        return True
    k_layout = None if key.is_contiguous() else (key.shape, key.stride())
    if k_layout is not None and not _tokens_apart(key, *k_layout):
        return False
    if q_layout is None and k_layout is None:
        return S.disjoint(query, key)
    return qk_apart(query, key, q_layout, k_layout)


def _inplace_args(positions, query, key, head_size, rotary_dim, cos_sin_cache, is_neox_style):
    return (_args_ok(positions, query, key, head_size, rotary_dim, cos_sin_cache)
            and _writable(positions, query, key, head_size, rotary_dim, cos_sin_cache, is_neox_style))


# ------------------------------------------------ graph-visible triton_ops
# torch.ops.irshim_triton.<op>: what torch.compile / make_fx / export record.


@triton_op(f"{S.NAMESPACE}::rotary_embedding", mutates_args=())
def rotary_embedding_op(positions: Tensor, query: Tensor, key: Tensor | None, head_size: int, rotary_dim: int,
                        cos_sin_cache: Tensor, is_neox_style: bool) -> tuple[Tensor, Tensor]:
    return rotary_embedding_into(positions, query, key, head_size, rotary_dim, cos_sin_cache, is_neox_style,
                                 kernel=wrap_triton(_rope_kernel))


@triton_op(f"{S.NAMESPACE}::rotary_embedding_inplace", mutates_args=("query", "key"))
def rotary_embedding_inplace_op(positions: Tensor, query: Tensor, key: Tensor | None, head_size: int,
                                rotary_dim: int, cos_sin_cache: Tensor, is_neox_style: bool) -> None:
    rotary_embedding_inplace_(positions, query, key, head_size, rotary_dim, cos_sin_cache, is_neox_style,
                              kernel=wrap_triton(_rope_kernel))


# ------------------------------------------------------ IR registrations
# Eager: launch directly. Traced: the triton_op above (see _support.py).
# `triton` is the functional provider (first in the CUDA default, so that the
# default overload never pays the clones an in-place impl would need);
# `triton_inplace` writes into query and key like vLLM's kernel and moves
# fewer bytes under partial rotary (the pass-through features stay put); the
# `maybe_inplace` overload runs it whenever `triton` is chosen (ir/op.py).


@ops.rotary_embedding.register_impl("triton", supported=S.platform_supported, supports_args=_functional_args)
def rotary_embedding(positions: Tensor, query: Tensor, key: Tensor | None, head_size: int, rotary_dim: int,
                     cos_sin_cache: Tensor, is_neox_style: bool) -> tuple[Tensor, Tensor]:
    if S.tracing():
        return rotary_embedding_op(positions, query, key, head_size, rotary_dim, cos_sin_cache, is_neox_style)
    return rotary_embedding_into(positions, query, key, head_size, rotary_dim, cos_sin_cache, is_neox_style)


@ops.rotary_embedding.register_impl("triton_inplace", supported=S.platform_supported,
                                    supports_args=_inplace_args, inplace=True, inplace_args=_writable)
def rotary_embedding_inplace(positions: Tensor, query: Tensor, key: Tensor | None, head_size: int,
                             rotary_dim: int, cos_sin_cache: Tensor, is_neox_style: bool) -> tuple[Tensor, Tensor]:
    if S.tracing():
        rotary_embedding_inplace_op(positions, query, key, head_size, rotary_dim, cos_sin_cache, is_neox_style)
    else:
        rotary_embedding_inplace_(positions, query, key, head_size, rotary_dim, cos_sin_cache, is_neox_style)
    return query, key if key is not None else query.new_empty(0)
