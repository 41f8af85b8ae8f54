"""Rotary position embedding (vLLM's ``RotaryEmbedding.forward``): semantics, inputs, tolerances.

``rotary_embedding(positions, query, key, head_size, rotary_dim, cos_sin_cache, is_neox_style)``
rotates the first `rotary_dim` features of every head of `query` and `key`
by the angles of row ``positions[t]`` of `cos_sin_cache`; the remaining
``head_size - rotary_dim`` features pass through unchanged.

- positions: ``[T]`` integers in ``[0, max_position)`` (any shape with T
  elements is flattened, as vLLM does).
- query: ``[T, Hq * head_size]`` or ``[T, Hq, head_size]``; key likewise with
  its own head count (GQA), or None.
- cos_sin_cache: ``[max_position, rotary_dim]``, cos in the first half of a
  row, sin in the second (vLLM's layout), any float dtype.
- is_neox_style: rotated pairs are ``(i, i + rotary_dim/2)`` (NeoX, split
  halves) or ``(2i, 2i + 1)`` (GPT-J, interleaved).

Every pair ``(a, b)`` with angle index ``i`` becomes ``(a cos_i - b sin_i,
b cos_i + a sin_i)``, computed in float32 and rounded once to the input's
dtype. Outputs have the inputs' shapes.

**key None.** A torch schema cannot return None, so the op always returns
two tensors: with ``key=None`` the second is an empty tensor (shape ``[0]``,
query's dtype and device) that callers drop. One op rather than a key-less
twin keeps one priority list, one set of providers and one kernel launch
for both cases; `irshim.compat`'s port turns the empty tensor back into
vLLM's ``None``.

**In place.** vLLM's fused kernel rotates query and key in place; the
``maybe_inplace`` overload lets providers do the same (the activations are
``query`` and ``key``). The default overload never mutates its inputs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..op import register_op


def _check(positions: Tensor, query: Tensor, key: Tensor | None, head_size: int, rotary_dim: int,
           cos_sin_cache: Tensor) -> int:
    """Validate the arguments; return the number of tokens."""
    if head_size <= 0 or rotary_dim <= 0 or rotary_dim > head_size or rotary_dim % 2:
        raise ValueError(f"rotary_dim must be even and in [2, head_size]; got rotary_dim={rotary_dim}, "
                         f"head_size={head_size}")
    if cos_sin_cache.dim() != 2 or cos_sin_cache.shape[1] != rotary_dim:
        raise ValueError(f"cos_sin_cache must be [max_position, rotary_dim={rotary_dim}] (cos half, then sin "
                         f"half); got shape {tuple(cos_sin_cache.shape)}")
    if positions.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"positions must be int64 or int32, got {positions.dtype}")
    tokens = positions.numel()
    for name, t in (("query", query), ("key", key)):
        if t is None:
            continue
        if t.dim() < 2 or t.shape[0] != tokens or math.prod(t.shape[1:]) % head_size:
            raise ValueError(f"{name} must be [T, H * head_size] or [T, H, head_size] with T={tokens} "
                             f"(positions) and head_size={head_size}; got shape {tuple(t.shape)}")
    return tokens


def _rotate(x: Tensor, cos: Tensor, sin: Tensor, tokens: int, head_size: int, rotary_dim: int,
            is_neox_style: bool) -> Tensor:
    """x ``[T, ...]`` -> rotated copy in x's dtype; cos, sin ``[T, 1, rotary_dim / 2]`` float32."""
    heads = x.reshape(tokens, math.prod(x.shape[1:]) // head_size, head_size)
    rot = heads[..., :rotary_dim].float()
    if is_neox_style:
        a, b = rot.chunk(2, dim=-1)
    else:
        a, b = rot[..., 0::2], rot[..., 1::2]
    # a cos - b sin, b cos + a sin (addcmul: two kernels fewer per tensor on the CPU, where
    # each costs ~9 us at decode sizes and shadow mode times this against the legacy path)
    ra, rb = torch.addcmul(a * cos, b, sin, value=-1.0), torch.addcmul(b * cos, a, sin)
    rot = torch.cat((ra, rb), dim=-1) if is_neox_style else torch.stack((ra, rb), dim=-1).flatten(-2)
    rot = rot.to(x.dtype)
    if rotary_dim < head_size:  # the pass-through features are copied, never converted
        rot = torch.cat((rot, heads[..., rotary_dim:]), dim=-1)
    return rot.reshape(x.shape)


@register_op(activations=["query", "key"], allow_inplace=True)
def rotary_embedding(positions: Tensor, query: Tensor, key: Tensor | None, head_size: int, rotary_dim: int,
                     cos_sin_cache: Tensor, is_neox_style: bool) -> tuple[Tensor, Tensor]:
    """Rotate query and key by cos_sin_cache[positions] (NeoX or GPT-J pairs); returns (query, key or empty)."""
    tokens = _check(positions, query, key, head_size, rotary_dim, cos_sin_cache)
    cos, sin = cos_sin_cache.index_select(0, positions.reshape(-1)).float().unsqueeze(1).chunk(2, dim=-1)
    q = _rotate(query, cos, sin, tokens, head_size, rotary_dim, is_neox_style)
    if key is None:
        return q, query.new_empty(0)
    return q, _rotate(key, cos, sin, tokens, head_size, rotary_dim, is_neox_style)


# ----------------------------------------------------------------- inputs


def cos_sin_cache(max_position: int, rotary_dim: int, base: float = 10000.0,
                  dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> Tensor:
    """vLLM's cache: ``[max_position, rotary_dim]``, cos(t f_i) then sin(t f_i), f_i = base^(-2i/rotary_dim).

    Computed in float32 on the CPU (as vLLM does before moving it), then cast.
    """
    inv_freq = 1.0 / (base ** (torch.arange(0, rotary_dim, 2, dtype=torch.float32) / rotary_dim))
    freqs = torch.arange(max_position, dtype=torch.float32)[:, None] * inv_freq[None, :]
    return torch.cat((freqs.cos(), freqs.sin()), dim=-1).to(device=device, dtype=dtype)


Q_HEADS, KV_HEADS = 4, 2
"""Heads of the generated inputs: grouped-query attention, as in Llama."""


@rotary_embedding.register_input_generator
def _rotary_inputs(num_tokens, hidden_size, dtype, device="cpu"):
    """`hidden_size` is the head size (odd sizes rotate all but the last feature);
    4 query and 2 key heads, flattened, NeoX style, positions spread over 4096."""
    generator = torch.Generator(device="cpu").manual_seed(0)
    head_size, rotary_dim = hidden_size, hidden_size - hidden_size % 2
    max_position = 4096
    positions = torch.randint(0, max_position, (num_tokens,), generator=generator)
    query = torch.randn(num_tokens, Q_HEADS * head_size, generator=generator)
    key = torch.randn(num_tokens, KV_HEADS * head_size, generator=generator)
    cache = cos_sin_cache(max_position, rotary_dim, dtype=dtype, device=device)
    return (positions.to(device), query.to(device=device, dtype=dtype), key.to(device=device, dtype=dtype),
            head_size, rotary_dim, cache, True)


# -------------------------------------------------------------- tolerances
# vLLM's forward_native and its CUDA kernel compute in the input dtype: each
# product a*cos, b*sin and their sum is rounded, so where the two products
# cancel the legacy result is off by ~2 units in the last place of the pair's
# magnitude |(a, b)|, not of the (small) output. The IR rounds once. For unit
# normal inputs (|(a, b)| up to ~5) that is 2 * 2^-8 * 5 = 0.04 in bfloat16 and
# 2 * 2^-11 * 5 = 0.005 in float16: the absolute tolerances below. Providers
# that round once agree with native to one ulp of the output (the defaults).
_PER_OP_ROUNDING = ("legacy kernels round each product in the input dtype: ~2 ulps of the rotated pair's "
                    "magnitude apart from the IR's single rounding where the products cancel")
rotary_embedding.override_tolerance(torch.bfloat16, atol=4e-2, rtol=1.6e-2, reason=_PER_OP_ROUNDING)
rotary_embedding.override_tolerance(torch.float16, atol=5e-3, rtol=2e-3, reason=_PER_OP_ROUNDING)
rotary_embedding.override_tolerance(
    torch.float32, atol=1e-5, rtol=1e-5,
    reason="float32 products and sums in another order (FMA contraction) by each provider")
