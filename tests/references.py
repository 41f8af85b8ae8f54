"""Float64 references shared by tests in several folders (importable: pytest's
``pythonpath`` holds ``tests``). Each is written from the op's definition, not from
irshim's code."""

from __future__ import annotations

import math


def rope_float64(positions, x, head_size, rotary_dim, cache, neox):
    """Rotary embedding in float64, pair by pair: every head of token t rotated by
    cache[positions[t]] (cos half, then sin half); NeoX pairs (i, i + half), GPT-J
    (2i, 2i + 1); features past rotary_dim unchanged. Returns x's shape."""
    tokens = positions.numel()
    if not tokens:
        return x.double()
    x64 = x.double().reshape(tokens, math.prod(x.shape[1:]) // head_size, head_size)
    rows = cache.double()[positions.reshape(-1).long()]
    out, half = x64.clone(), rotary_dim // 2
    for i in range(half):
        ia, ib = (i, i + half) if neox else (2 * i, 2 * i + 1)
        cos, sin = rows[:, i, None], rows[:, half + i, None]
        a, b = x64[:, :, ia], x64[:, :, ib]
        out[:, :, ia] = a * cos - b * sin
        out[:, :, ib] = b * cos + a * sin
    return out.reshape(x.shape)
