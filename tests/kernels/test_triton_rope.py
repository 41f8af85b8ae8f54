"""Triton rotary embedding against the op's native semantics and a float64 reference.

CPU tests run the kernel in Triton's interpreter (conftest sets TRITON_INTERPRET
and makes its float32 -> bfloat16 casts round like the GPU) on small shapes;
`cuda` tests run Llama sizes on a GPU: odd positions, partial rotary, both
styles, GQA and MQA, strided qkv slices, in place, CUDA graphs, torch.compile.
"""

from __future__ import annotations

import pytest
import torch

import irshim.ir as ir
from irshim.ir.ops.rotary import cos_sin_cache
from irshim.ir.tolerances import assert_close
from irshim.kernels.triton import rope  # registers triton / triton_inplace (until kernels/triton imports it)

from references import rope_float64 as ref_rope  # tests/references.py

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
PROVIDERS = ["triton", "triton_inplace"]
op = ir.ops.rotary_embedding


def _ids(value) -> str:
    return str(value).removeprefix("torch.")


def make_args(tokens, hq, hk, head_size, rotary_dim, dtype, neox=True, device=DEVICE, layout="flat",
              max_position=8192, seed=0, with_key=True):
    g = torch.Generator().manual_seed(seed)
    positions = torch.randint(0, max_position, (tokens,), generator=g)
    width = (hq + 2 * hk) * head_size
    qkv = torch.randn(tokens, width, generator=g).to(device=device, dtype=dtype)
    if layout == "qkv-slice":  # vLLM's q, k, v = qkv.split(...): rows strided by the qkv width
        query, key, _ = qkv.split([hq * head_size, hk * head_size, hk * head_size], dim=-1)
    else:
        query = qkv[:, : hq * head_size].contiguous()
        key = qkv[:, hq * head_size: (hq + hk) * head_size].contiguous()
        if layout == "3d":
            query, key = query.view(tokens, hq, head_size), key.view(tokens, hk, head_size)
    cache = cos_sin_cache(max_position, rotary_dim, dtype=dtype, device=device)
    return (positions.to(device), query, key if with_key else None, head_size, rotary_dim, cache, neox)


def check(provider, args, what=""):
    """Run `provider` on copies, compare with native (op tolerance) and the float64 reference."""
    positions, query, key, head_size, rotary_dim, cache, neox = args
    impl = op.impls[provider]
    assert impl.supports(*args), f"{provider} refused {what}"
    q_in = query.clone()
    k_in = key.clone() if key is not None else None
    q, k = impl.impl_fn(positions, q_in, k_in, head_size, rotary_dim, cache, neox)
    e_q, e_k = op.native(*args)
    tol = op.tolerance(query.dtype)
    assert q.shape == query.shape and q.dtype == query.dtype
    assert_close(q, e_q, tol, what=f"{provider} query {what}")
    assert_close(q, ref_rope(positions, query, head_size, rotary_dim, cache, neox).to(q.device), tol,
                 what=f"{provider} query vs float64 {what}")
    if key is None:
        assert k.shape == (0,)
    else:
        assert_close(k, e_k, tol, what=f"{provider} key {what}")
    if provider == "triton_inplace":
        assert q is q_in and (key is None or k is k_in)
    else:
        assert torch.equal(q_in, query) and (key is None or torch.equal(k_in, key))


# ------------------------------------------------------------ CPU (interpreter)

# (tokens, q heads, k heads, head_size, rotary_dim): GQA, MQA, partial rotary,
# a half (rotary_dim / 2 = 20) that is not a power of two, an odd head size.
SMALL = {
    "gqa": (3, 4, 2, 32, 32),
    "mqa-1tok": (1, 6, 1, 16, 16),
    "partial": (5, 3, 1, 48, 16),
    "half20": (2, 2, 2, 40, 40),
    "odd-head": (3, 2, 1, 37, 36),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("case", list(SMALL))
@pytest.mark.parametrize("neox", [True, False], ids=["neox", "gptj"])
def test_small_shapes(case, neox, dtype):
    args = make_args(*SMALL[case], dtype, neox)
    for provider in PROVIDERS:
        check(provider, args, case)


@pytest.mark.parametrize("layout", ["3d", "qkv-slice"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_layouts(layout, provider):
    args = make_args(4, 4, 2, 32, 16, torch.bfloat16, layout=layout)
    check(provider, args, layout)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_key_none_and_zero_tokens(provider):
    check(provider, make_args(3, 4, 2, 32, 32, torch.float16, with_key=False), "key None")
    check(provider, make_args(0, 4, 2, 32, 32, torch.float16), "0 tokens")


def test_several_tokens_a_program_and_head_steps():
    """Configurations that group tokens and step through heads (or load them all in
    one step, the last one) give the same result."""
    args = make_args(9, 5, 3, 16, 16, torch.float32)
    expected = op.native(*args)
    for cfg in (rope.RopeConfig(4, 2, 2, 1), rope.RopeConfig(2, 8, 1, 2), rope.RopeConfig(8, 1, 4, 4),
                rope.RopeConfig(4, 8, 4, 2)):
        got = rope.rotary_embedding_into(*args, config=cfg)
        for a, e in zip(got, expected):
            assert_close(a, e, op.tolerance(torch.float32), what=str(cfg))


def test_int32_positions_and_extreme_values():
    args = list(make_args(4, 2, 2, 16, 16, torch.float32))
    args[1] = args[1] * 1e30
    args[1][0, 0] = float("inf")
    args[0] = args[0].int()
    expected = op.native(*args)
    got = op.impls["triton"].impl_fn(*args)
    for a, e in zip(got, expected):
        assert_close(a, e, op.tolerance(torch.float32))


def test_launch_config_rules():
    # One token a program at every size; one warp per 256 pairs of a token, 4 to 8 warps:
    # Llama-3-8B (32 q heads x 64 pairs) 8 warps, 70B at TP8 (8 x 64) 4.
    for tokens in (1, 64, 4096):
        assert rope.rope_config(tokens, 32, 8, 64) == rope.RopeConfig(1, 32, 8, 8)
        assert rope.rope_config(tokens, 8, 1, 64) == rope.RopeConfig(1, 8, 1, 4)
    assert rope.rope_config(16, 1, 1, 16).num_warps == 4
    assert rope.rope_config(16, 64, 8, 64).num_warps == 8
    cfg = rope.rope_config(4096, 128, 16, 64)  # many heads: stepped, at most MAX_STEP_PAIRS a step
    assert cfg.block_t * cfg.block_hq * 64 <= rope.MAX_STEP_PAIRS


@pytest.mark.parametrize("neox", [True, False])
@pytest.mark.parametrize("rotary_dim", [32, 16])
def test_unmasked_and_masked_launches_agree_with_native(neox, rotary_dim):
    """The kernel drops its masks when the blocks tile tokens, heads and features exactly
    (power-of-two heads, here with 1 token a program): the same inputs launched with 2 tokens
    a program over 3 tokens take the masked path; both match native."""
    args = make_args(3, 4, 2, 32, rotary_dim, torch.float32, neox=neox)
    expected = op.native(*args)
    for cfg in (rope.RopeConfig(1, 4, 2, 4), rope.RopeConfig(2, 4, 2, 4)):
        for a, e in zip(rope.rotary_embedding_into(*args, config=cfg), expected):
            assert_close(a, e, op.tolerance(torch.float32), what=f"{cfg} neox={neox}")
        q, k = args[1].clone(), args[2].clone()
        rope.rotary_embedding_inplace_(args[0], q, k, *args[3:], config=cfg)
        for a, e in zip((q, k), expected):
            assert_close(a, e, op.tolerance(torch.float32), what=f"in place {cfg} neox={neox}")


def test_supports_args_refuses_what_the_kernel_cannot_do():
    args = make_args(4, 4, 2, 32, 32, torch.bfloat16)
    positions, query, key, hs, rd, cache, neox = args
    functional, inplace = op.impls["triton"], op.impls["triton_inplace"]
    assert functional.supports(*args) and inplace.supports(*args)
    refused = {
        "float64": (positions, query.double(), key, hs, rd, cache, neox),
        "2-D positions": (positions[None], query, key, hs, rd, cache, neox),
        "cache width": (positions, query, key, hs, rd, cache[:, :16], neox),
        "odd rotary_dim": (positions, query, key, hs, 31, cache, neox),
        "head_size not dividing": (positions, query, key, 48, rd, cache, neox),
        "column stride": (positions, query.t().contiguous().t(), key, hs, rd, cache, neox),
        "token count": (positions[:3], query, key, hs, rd, cache, neox),
        "4-D query": (positions, query.view(4, 2, 2, 32), key, hs, rd, cache, neox),
    }
    for what, bad in refused.items():
        assert not functional.supports(*bad), what
        assert not inplace.supports(*bad), what


def test_inplace_refuses_overlapping_tensors_but_takes_qkv_slices():
    inplace = op.impls["triton_inplace"]
    positions, query, key, hs, rd, cache, neox = make_args(4, 4, 2, 32, 32, torch.bfloat16, layout="qkv-slice")
    assert inplace.supports(positions, query, key, hs, rd, cache, neox)
    assert rope.qk_apart(query, key)
    overlapping = query[:, 32:32 + 2 * hs]  # heads 1-2 of query as a "key"
    assert not rope.qk_apart(query, overlapping)
    assert not inplace.supports(positions, query, overlapping, hs, rd, cache, neox)
    assert op.impls["triton"].supports(positions, query, overlapping, hs, rd, cache, neox)
    shared_rows = query[:1].expand(4, -1)  # every token the same memory
    assert not inplace.supports(positions, shared_rows, None, hs, rd, cache, neox)


def test_maybe_inplace_writes_into_query_and_key():
    args = make_args(5, 4, 2, 32, 16, torch.bfloat16, layout="qkv-slice")
    positions, query, key, hs, rd, cache, neox = args
    e_q, e_k = op.native(*args)
    with op.set_priority(["triton_inplace", "triton", "native"]):
        q, k = query.clone(), key.clone()
        out_q, out_k = op.maybe_inplace(positions, q, k, hs, rd, cache, neox)
        assert out_q is q and out_k is k
        assert_close(q, e_q, op.tolerance(torch.bfloat16))
        assert_close(k, e_k, op.tolerance(torch.bfloat16))
        q, k = query.clone(), key.clone()
        op(positions, q, k, hs, rd, cache, neox)  # default overload: functional, inputs untouched
        assert torch.equal(q, query) and torch.equal(k, key)
    # The CUDA default lists `triton` only: maybe_inplace runs its in-place form.
    with op.set_priority(["triton", "native"]):
        q, k = query.clone(), key.clone()
        assert op.maybe_inplace.dispatch(positions, q, k, hs, rd, cache, neox).provider == "triton_inplace"
        out_q, out_k = op.maybe_inplace(positions, q, k, hs, rd, cache, neox)
        assert out_q is q and out_k is k
        assert_close(q, e_q, op.tolerance(torch.bfloat16))
        # Query and key overlapping: the in-place form refuses, the functional one runs.
        assert op.maybe_inplace.dispatch(positions, q, q, hs, rd, cache, neox).provider == "triton"


def test_dispatch_equals_direct_call():
    args = op.generate_inputs(3, 40, torch.bfloat16, DEVICE)
    with op.set_priority(["triton", "native"]):
        assert op.dispatch(*args).provider == "triton"
        via_op = op(*args)
    direct = op.impls["triton"].impl_fn(*args)
    assert all(torch.equal(a, b) for a, b in zip(via_op, direct))


def test_unsupported_args_fall_back_to_native():
    args = list(op.generate_inputs(3, 32, torch.float32, DEVICE))
    args[0] = args[0][None]  # 2-D positions: the kernel refuses, native flattens
    with op.set_priority(["triton", "native"]):
        assert op.dispatch(*args).provider == "native"


def test_traced_calls_record_the_triton_op():
    """make_fx sees the graph-visible op, not a raw kernel launch."""
    from torch.fx.experimental.proxy_tensor import make_fx

    positions, query, key, hs, rd, cache, neox = make_args(3, 2, 1, 16, 16, torch.float32)
    gm = make_fx(lambda p, q, k, c: op.impls["triton"].impl_fn(p, q, k, hs, rd, c, neox))(
        positions, query, key, cache)
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert torch.ops.irshim_triton.rotary_embedding.default in targets
    gm = make_fx(lambda p, q, k, c: op.impls["triton_inplace"].impl_fn(p, q, k, hs, rd, c, neox))(
        positions, query.clone(), key.clone(), cache)
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert torch.ops.irshim_triton.rotary_embedding_inplace.default in targets
    q, k = torch.ops.irshim_triton.rotary_embedding(positions, query, key, hs, rd, cache, neox)
    e_q, e_k = op.native(positions, query, key, hs, rd, cache, neox)
    assert_close(q, e_q, op.tolerance(torch.float32))
    assert_close(k, e_k, op.tolerance(torch.float32))


# ----------------------------------------------------------------------- GPU

# Llama-3-8B (32 q / 8 kv heads x 128) and 70B at TP8 (8 / 1), odd token counts,
# partial rotary (GPT-NeoX-20B style 25%, Phi-2's 32 of 80) and a 64-head MHA.
REAL = {
    "llama8b": (1000, 32, 8, 128, 128),
    "llama70b-tp8": (4097, 8, 1, 128, 128),
    "decode": (1, 32, 8, 128, 128),
    "partial-25%": (333, 16, 16, 128, 32),
    "phi2": (77, 32, 32, 80, 32),
    "mha64": (300, 64, 64, 64, 64),
}


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("case", list(REAL))
@pytest.mark.parametrize("neox", [True, False], ids=["neox", "gptj"])
def test_gpu_real_sizes(case, neox, dtype):
    args = make_args(*REAL[case], dtype, neox, device="cuda", max_position=131072, seed=7)
    for provider in PROVIDERS:
        check(provider, args, case)


@pytest.mark.cuda
@pytest.mark.parametrize("layout", ["3d", "qkv-slice"])
def test_gpu_layouts_and_key_none(layout):
    for with_key in (True, False):
        args = make_args(513, 32, 8, 128, 128, torch.bfloat16, device="cuda", layout=layout, with_key=with_key)
        for provider in PROVIDERS:
            check(provider, args, f"{layout} key={with_key}")


@pytest.mark.cuda
def test_gpu_odd_positions_reach_the_last_cache_row():
    args = list(make_args(257, 8, 1, 128, 128, torch.bfloat16, device="cuda", max_position=4099))
    positions = torch.randperm(4099, generator=torch.Generator().manual_seed(5))[:257]  # unordered, odd and even
    positions[:2] = torch.tensor([4098, 0])  # the last and the first cache row
    args[0] = positions.cuda()
    for provider in PROVIDERS:
        check(provider, tuple(args), "odd positions")


@pytest.mark.cuda
def test_gpu_inplace_leaves_pass_through_and_v_untouched():
    tokens, hq, hk, hs, rd = 128, 8, 2, 128, 64
    g = torch.Generator(device="cuda").manual_seed(0)
    qkv = torch.randn(tokens, (hq + 2 * hk) * hs, device="cuda", generator=g).bfloat16()
    query, key, value = qkv.split([hq * hs, hk * hs, hk * hs], dim=-1)
    before = qkv.clone()
    positions = torch.randint(0, 4096, (tokens,), device="cuda", generator=g)
    cache = cos_sin_cache(4096, rd, dtype=torch.bfloat16, device="cuda")
    e_q, e_k = op.native(positions, query, key, hs, rd, cache, True)
    with op.set_priority(["triton_inplace", "native"]):
        op.maybe_inplace(positions, query, key, hs, rd, cache, True)
    assert_close(query, e_q, op.tolerance(torch.bfloat16))
    assert_close(key, e_k, op.tolerance(torch.bfloat16))
    assert torch.equal(value, before[:, (hq + hk) * hs:])
    rest = before[:, : hq * hs].view(tokens, hq, hs)[..., rd:]
    assert torch.equal(query.view(tokens, hq, hs)[..., rd:], rest)


@pytest.mark.cuda
@pytest.mark.parametrize("provider", PROVIDERS)
def test_gpu_cuda_graph_capture(provider):
    """Captured once, replayed on new positions and activations."""
    positions, query, key, hs, rd, cache, neox = make_args(64, 32, 8, 128, 128, torch.bfloat16, device="cuda")
    static = [positions.clone(), query.clone(), key.clone()]
    impl = op.impls[provider].impl_fn
    impl(static[0], static[1].clone(), static[2].clone(), hs, rd, cache, neox)  # compile outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = impl(static[0], static[1], static[2], hs, rd, cache, neox)
    for seed in range(2):
        g = torch.Generator(device="cuda").manual_seed(seed)
        static[0].copy_(torch.randint(0, 8192, (64,), device="cuda", generator=g))
        fresh_q = torch.randn(static[1].shape, device="cuda", generator=g).bfloat16()
        fresh_k = torch.randn(static[2].shape, device="cuda", generator=g).bfloat16()
        static[1].copy_(fresh_q)
        static[2].copy_(fresh_k)
        graph.replay()
        e_q, e_k = op.native(static[0], fresh_q, fresh_k, hs, rd, cache, neox)
        assert_close(captured[0], e_q, op.tolerance(torch.bfloat16), what=f"{provider} replay {seed}")
        assert_close(captured[1], e_k, op.tolerance(torch.bfloat16), what=f"{provider} replay {seed}")


@pytest.mark.cuda
def test_gpu_torch_compile_sees_the_triton_op():
    positions, query, key, hs, rd, cache, neox = make_args(256, 32, 8, 128, 128, torch.bfloat16, device="cuda")

    def f(p, q, k):
        q2, k2 = torch.ops.irshim_triton.rotary_embedding(p, q * 2, k, hs, rd, cache, neox)
        return q2 + 1, k2

    q, k = torch.compile(f, fullgraph=True)(positions, query, key)
    e_q, e_k = op.native(positions, query * 2, key, hs, rd, cache, neox)
    assert_close(q, e_q + 1, op.tolerance(torch.bfloat16))
    assert_close(k, e_k, op.tolerance(torch.bfloat16))


@pytest.mark.cuda
def test_gpu_triton_op_opcheck():
    args = make_args(3, 4, 2, 32, 32, torch.float32, device="cuda")
    torch.library.opcheck(torch.ops.irshim_triton.rotary_embedding.default, args,
                          test_utils=("test_schema", "test_faketensor"))
    torch.library.opcheck(torch.ops.irshim_triton.rotary_embedding_inplace.default, args,
                          test_utils=("test_schema", "test_faketensor"))
