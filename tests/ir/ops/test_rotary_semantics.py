"""rotary_embedding's native semantics against a float64 reference written from the formula.

The reference rotates pair by pair with explicit feature indices (NeoX: i and
i + rotary_dim/2; GPT-J: 2i and 2i + 1), reading cos and sin from the cache
row of each token's position. Cases: both styles, partial rotary, GQA head
counts, flattened and 3-D layouts, a strided query (a slice of a qkv buffer),
0 and 1 tokens, int32 positions, key None, fp32/fp16/bf16.
"""

from __future__ import annotations

import math

import pytest
import torch

import irshim.ir as ir
import irshim.ir.ops.rotary  # noqa: F401  (registers the op)
from irshim.ir.ops.rotary import cos_sin_cache
from irshim.ir.tolerances import Tolerance, assert_close

from references import rope_float64 as ref_rope  # tests/references.py

op = ir.ops.rotary_embedding
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def _randn(shape, dtype, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


CASES = {  # id -> (tokens, q heads, k heads, head_size, rotary_dim)
    "llama-gqa": (7, 4, 2, 64, 64),
    "partial": (5, 3, 1, 40, 16),
    "odd-head": (3, 2, 2, 123, 122),
    "mqa-1tok": (1, 8, 1, 32, 32),
    "0tok": (0, 4, 2, 32, 32),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("neox", [True, False], ids=["neox", "gptj"])
@pytest.mark.parametrize("layout", ["flat", "3d", "qkv-slice"])
def test_matches_float64_reference(dtype, case, neox, layout):
    tokens, hq, hk, head_size, rotary_dim = CASES[case]
    cache = cos_sin_cache(300, rotary_dim, dtype=dtype)
    positions = torch.randint(0, 300, (tokens,), generator=torch.Generator().manual_seed(3))
    if layout == "qkv-slice":  # vLLM: q, k, v = qkv.split(...): rows strided by the qkv width
        qkv = _randn((tokens, (hq + 2 * hk) * head_size), dtype, 0)
        query, key, _ = qkv.split([hq * head_size, hk * head_size, hk * head_size], dim=-1)
    else:
        query, key = _randn((tokens, hq * head_size), dtype, 0), _randn((tokens, hk * head_size), dtype, 1)
        if layout == "3d":
            query, key = query.view(tokens, hq, head_size), key.view(tokens, hk, head_size)
    before = (query.clone(), key.clone())
    q, k = op(positions, query, key, head_size, rotary_dim, cache, neox)
    tol = op.tolerance(dtype)
    assert q.shape == query.shape and k.shape == key.shape and q.dtype == k.dtype == dtype
    assert_close(q, ref_rope(positions, query, head_size, rotary_dim, cache, neox), tol, what="query")
    assert_close(k, ref_rope(positions, key, head_size, rotary_dim, cache, neox), tol, what="key")
    # Pass-through features are copied exactly; the default overload never mutates.
    rest = (slice(None), slice(None), slice(rotary_dim, None))
    assert torch.equal(q.reshape(tokens, hq, head_size)[rest], query.reshape(tokens, hq, head_size)[rest])
    assert torch.equal(query, before[0]) and torch.equal(key, before[1])


def test_rounds_once_from_float32():
    """The float32 result rounded once to the dtype: exactly native(fp32 inputs).to(dtype)."""
    positions, query, key, head_size, rotary_dim, cache, neox = op.generate_inputs(9, 64, torch.bfloat16)
    q, k = op(positions, query, key, head_size, rotary_dim, cache, neox)
    q32, k32 = op(positions, query.float(), key.float(), head_size, rotary_dim, cache.float(), neox)
    assert torch.equal(q, q32.to(torch.bfloat16)) and torch.equal(k, k32.to(torch.bfloat16))


@pytest.mark.parametrize("neox", [True, False], ids=["neox", "gptj"])
def test_hand_computed_quarter_turn(neox):
    # Angle pi/2 for pair 0, angle 0 for pair 1: (a, b) -> (-b, a) and unchanged.
    cache = torch.tensor([[1.0, 1.0, 0.0, 0.0], [math.cos(math.pi / 2), 1.0, 1.0, 0.0]])
    query = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    q, k = op(torch.tensor([1]), query, None, 4, 4, cache, neox)
    # NeoX pairs (0, 2) and (1, 3); GPT-J pairs (0, 1) and (2, 3).
    expected = [[-3.0, 2.0, 1.0, 4.0]] if neox else [[-2.0, 1.0, 3.0, 4.0]]
    assert_close(q, torch.tensor(expected), op.tolerance(torch.float32))
    assert k.shape == (0,)


def test_key_none_returns_an_empty_tensor_and_the_same_query():
    positions, query, key, head_size, rotary_dim, cache, neox = op.generate_inputs(5, 32, torch.float16)
    q, k = op(positions, query, None, head_size, rotary_dim, cache, neox)
    q_with_key, _ = op(positions, query, key, head_size, rotary_dim, cache, neox)
    assert k.shape == (0,) and k.dtype == query.dtype
    assert torch.equal(q, q_with_key)


def test_int32_positions_and_maybe_inplace_native():
    positions, query, key, head_size, rotary_dim, cache, neox = op.generate_inputs(6, 32, torch.float32)
    q, k = op(positions, query, key, head_size, rotary_dim, cache, neox)
    q32, k32 = op(positions.int(), query, key, head_size, rotary_dim, cache, neox)
    assert torch.equal(q, q32) and torch.equal(k, k32)
    with op.set_priority(["native"]):
        qi, ki = op.maybe_inplace(positions, query.clone(), key.clone(), head_size, rotary_dim, cache, neox)
    assert torch.equal(qi, q) and torch.equal(ki, k)


def test_cache_helper_is_vllms_formula():
    cache = cos_sin_cache(2048, 64, base=500000.0)
    t = torch.arange(2048, dtype=torch.float64)[:, None]
    f = 500000.0 ** (-torch.arange(0, 64, 2, dtype=torch.float64) / 64)
    # float32 angles t * f: error up to ~2048 * 2^-24 rad.
    assert_close(cache, torch.cat(((t * f).cos(), (t * f).sin()), dim=-1).float(),
                 Tolerance(3e-4, 0.0, "float32 angles"))


@pytest.mark.parametrize("bad, message", [
    (dict(rotary_dim=15), "rotary_dim must be even"),
    (dict(rotary_dim=80), "rotary_dim must be even and in"),
    (dict(cache_width=16), r"cos_sin_cache must be \[max_position, rotary_dim=32\]"),
    (dict(head_size=48), "query must be"),
    (dict(tokens=4), "query must be"),
    (dict(float_positions=True), "positions must be int64 or int32"),
])
def test_bad_arguments_are_refused_with_a_reason(bad, message):
    positions, query, key, head_size, rotary_dim, cache, neox = op.generate_inputs(5, 32, torch.float32)
    head_size = bad.get("head_size", head_size)
    rotary_dim = bad.get("rotary_dim", rotary_dim)
    if "cache_width" in bad:
        cache = cache[:, : bad["cache_width"]]
    if "tokens" in bad:
        positions = positions[: bad["tokens"]]
    if bad.get("float_positions"):
        positions = positions.float()
    with pytest.raises(ValueError, match=message):
        op(positions, query, key, head_size, rotary_dim, cache, neox)
