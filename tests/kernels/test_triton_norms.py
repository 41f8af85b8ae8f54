"""Triton RMS norms against the ops' native semantics, with the ops' tolerances.

CPU tests run the kernels in Triton's interpreter (conftest sets TRITON_INTERPRET)
on small odd shapes; `cuda` tests run real sizes on a GPU.
"""

from __future__ import annotations

import pytest
import torch

import irshim.ir as ir
from irshim.ir.tolerances import assert_close

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
PLAIN = ["rms_norm", "gemma_rms_norm"]
FUSED = ["fused_add_rms_norm", "gemma_fused_add_rms_norm"]
ALL = PLAIN + FUSED

ir.load_providers()  # registers the triton impls and torch.ops.irshim_triton


def _ids(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _check(op: ir.IrOp, provider: str, args: tuple, what: str = "") -> None:
    """Run `provider` on copies (in-place impls overwrite), compare with native."""
    dtype = args[0].dtype
    expected = op.native(*args)
    impl = op.impls[provider]
    assert impl.supports(*args), f"{op.name}/{provider} refused {what}"
    copies = tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)
    actual = impl.impl_fn(*copies)
    tol = op.tolerance(dtype)
    if isinstance(expected, tuple):
        assert len(actual) == len(expected)
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert a.dtype == e.dtype
            assert_close(a, e, tol, what=f"{op.name}/{provider} output {i} {what}")
    else:
        assert actual.dtype == expected.dtype
        assert_close(actual, expected, tol, what=f"{op.name}/{provider} {what}")


def _providers(name: str) -> list[str]:
    return ["triton", "triton_inplace"] if name in FUSED else ["triton"]


# ------------------------------------------------------------ CPU (interpreter)

# (tokens, hidden): one token, odd hidden, a hidden that is not a multiple of 16.
SMALL = [(1, 64), (3, 123), (5, 40)]


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("shape", SMALL, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", ALL)
def test_small_shapes(name, shape, dtype):
    op = ir.get_op(name)
    args = op.generate_inputs(*shape, dtype, DEVICE)
    for provider in _providers(name):
        _check(op, provider, args, f"{shape} {dtype}")


@pytest.mark.parametrize("name", ALL)
def test_two_pass_long_rows(name):
    """Rows longer than MAX_SINGLE_PASS take the chunked two-pass path."""
    from irshim.kernels.triton.layernorm import MAX_SINGLE_PASS

    op = ir.get_op(name)
    args = op.generate_inputs(2, MAX_SINGLE_PASS + 77, torch.bfloat16, DEVICE)
    for provider in _providers(name):
        _check(op, provider, args, "two-pass")


@pytest.mark.parametrize("rows, cols, block_m", [(4, 64, 2), (3, 64, 2), (4, 64, 1), (4, 48, 2)])
@pytest.mark.parametrize("name", ["rms_norm", "fused_add_rms_norm", "gemma_fused_add_rms_norm"])
def test_single_pass_blocks_with_and_without_masks(name, rows, cols, block_m):
    """Blocks that tile the rows exactly drop every mask (EVEN): 4 x 64 in 2- and 1-row blocks;
    3 rows in 2-row blocks and 48 columns in a 64-wide block keep them."""
    from irshim.kernels.triton import layernorm as tn

    op = ir.get_op(name)
    args = op.generate_inputs(rows, cols, torch.float32, DEVICE)
    cfg = tn.NormConfig(block_m, 64, 1, True)
    if name == "rms_norm":
        actual = tn.rms_norm_into(*args, config=cfg)
    else:
        actual = tn.fused_add_rms_norm_into(*args, gemma=name.startswith("gemma"), config=cfg)
    expected = op.native(*args)
    for a, e in zip(actual if isinstance(actual, tuple) else (actual,), expected if isinstance(expected, tuple) else (expected,)):
        assert_close(a, e, op.tolerance(torch.float32), what=f"{name} {rows}x{cols} in {block_m}-row blocks")


@pytest.mark.parametrize("cols, block_n", [(256, 64), (256, 128), (192, 64), (200, 64)])
@pytest.mark.parametrize("name", ALL)
def test_two_pass_chunks_with_and_without_masks(name, cols, block_n):
    """Two passes, one row a program: chunks that divide the row and no residual drop every mask
    (EVEN, 1-D blocks; 192 columns: an odd count of chunks, as 6144 in 2048); 200 columns in
    64-column chunks, and the fused adds, keep them."""
    from irshim.kernels.triton import layernorm as tn

    op = ir.get_op(name)
    args = op.generate_inputs(3, cols, torch.bfloat16, DEVICE)
    cfg = tn.NormConfig(1, block_n, 1, False)
    gemma = name.startswith("gemma")
    if name in FUSED:
        actual = tn.fused_add_rms_norm_into(*args, gemma=gemma, config=cfg)
    else:
        actual = (tn.rms_norm_into(*args, gemma=gemma, config=cfg),)
    expected = op.native(*args)
    for a, e in zip(actual, expected if isinstance(expected, tuple) else (expected,)):
        assert_close(a, e, op.tolerance(torch.bfloat16), what=f"{name} 3x{cols} in {block_n}-column chunks")


@pytest.mark.parametrize("cols", [256, 200])
def test_two_pass_chunks_without_weight_and_with_strides(cols):
    """The two-pass path without a weight, on every other row of a wider buffer, with a strided weight."""
    from irshim.kernels.triton import layernorm as tn

    op = ir.get_op("rms_norm")
    x = torch.randn(6, cols + 8, dtype=torch.bfloat16, device=DEVICE)[::2, :cols]
    w = torch.randn(2 * cols, dtype=torch.bfloat16, device=DEVICE)[::2]
    cfg = tn.NormConfig(1, 64, 1, False)
    for weight, label in ((None, "no weight"), (w, "a strided weight")):
        assert_close(tn.rms_norm_into(x, weight, 1e-6, config=cfg), op.native(x, weight, 1e-6),
                     op.tolerance(torch.bfloat16), what=f"rms_norm 3x{cols}, {label}")


def test_norm_config_rules():
    from irshim.kernels.triton.layernorm import NormConfig, norm_config

    # Whole rows in registers; the fused add over 8192-wide rows at 264 to 1056 rows (132 SMs)
    # takes two passes over 2048-column chunks, 8 warps.
    assert norm_config(1024, 8192, 2, 132) == NormConfig(1, 8192, 16, True)
    assert norm_config(1024, 8192, 2, 132, True) == NormConfig(1, 2048, 8, False)
    assert norm_config(1056, 8192, 2, 132, True) == NormConfig(1, 2048, 8, False)
    assert norm_config(1057, 8192, 2, 132, True) == NormConfig(1, 8192, 16, True)
    assert norm_config(263, 8192, 2, 132, True) == NormConfig(1, 8192, 8, True)
    assert norm_config(1024, 4096, 2, 132, True) == NormConfig(2, 4096, 16, True)
    assert norm_config(1, 4096, 2, 132) == NormConfig(1, 4096, 8, True)
    # Many rows (from 31 a multiprocessor at 8192 with the fused add, 62 without; 124 at 4096):
    assert norm_config(4092, 8192, 2, 132, True) == NormConfig(1, 8192, 32, True)
    assert norm_config(4092, 8192, 2, 132) == NormConfig(1, 8192, 16, True)
    assert norm_config(8183, 8192, 2, 132) == NormConfig(1, 8192, 16, True)
    assert norm_config(8184, 8192, 2, 132) == NormConfig(2, 8192, 32, True)
    # ... and from 62 rows a multiprocessor on a GPU of the H200's DRAM bandwidth a multiprocessor
    # (36.5 GB/s), the plain norms over a multiple of 4096 columns: two unmasked passes over
    # 4096-column chunks. The fused add, other widths, the H100 (25.4) and unknown GPUs keep the single pass.
    h200 = 36.5
    assert norm_config(8184, 8192, 2, 132, False, h200) == NormConfig(1, 4096, 16, False)
    assert norm_config(16384, 8192, 2, 132, False, h200) == NormConfig(1, 4096, 16, False)
    assert norm_config(8183, 8192, 2, 132, False, h200) == NormConfig(1, 8192, 16, True)
    assert norm_config(16384, 8192, 2, 132, True, h200) == NormConfig(1, 8192, 32, True)
    assert norm_config(16384, 8000, 2, 132, False, h200) == NormConfig(2, 8192, 32, True)
    assert norm_config(16384, 8192, 2, 132, False, 25.4) == NormConfig(2, 8192, 32, True)
    assert norm_config(16384, 8192, 2, 132) == NormConfig(2, 8192, 32, True)
    assert norm_config(4091, 8192, 2, 132, True) == NormConfig(1, 8192, 16, True)
    # At 264-1056 rows on a GPU of the H100's bandwidth a multiprocessor (25.4): two unmasked passes over
    # 2048-column chunks for the plain norms over 6144 or 8192 columns and the fused adds over 4096 (whole
    # chunks only: not 8000 or 4000); elsewhere, and on the H200 or an unknown GPU, the single pass.
    h100, chunked = 25.4, NormConfig(1, 2048, 8, False)
    plain, fused = False, True
    for rows, cols, residual, gbs, want in (
            (264, 8192, plain, h100, chunked), (1024, 8192, plain, h100, chunked),
            (1024, 6144, plain, h100, chunked), (1056, 8192, plain, h100, chunked),
            (263, 8192, plain, h100, NormConfig(1, 8192, 8, True)), (1057, 8192, plain, h100, NormConfig(1, 8192, 16, True)),
            (1024, 8000, plain, h100, NormConfig(1, 8192, 16, True)), (1024, 8192, plain, h200, NormConfig(1, 8192, 16, True)),
            (1024, 8192, plain, None, NormConfig(1, 8192, 16, True)), (1024, 16384, plain, h100, NormConfig(1, 16384, 32, True)),
            (1024, 4096, plain, h100, NormConfig(2, 4096, 16, True)),
            (264, 4096, fused, h100, chunked), (1024, 4096, fused, h100, chunked), (1056, 4096, fused, h100, chunked),
            (263, 4096, fused, h100, NormConfig(1, 4096, 8, True)), (1057, 4096, fused, h100, NormConfig(2, 4096, 16, True)),
            (1024, 4000, fused, h100, NormConfig(2, 4096, 16, True)), (1024, 4096, fused, h200, NormConfig(2, 4096, 16, True)),
            (1024, 4096, fused, None, NormConfig(2, 4096, 16, True))):
        assert norm_config(rows, cols, 2, 132, residual, gbs) == want, (rows, cols, residual, gbs)
    assert norm_config(16384, 4096, 2, 132) == NormConfig(1, 4096, 8, True)
    assert norm_config(16367, 4096, 2, 132) == NormConfig(2, 4096, 16, True)


@pytest.mark.parametrize("name", ["rms_norm", "fused_add_rms_norm"])
def test_no_weight(name):
    op = ir.get_op(name)
    args = list(op.generate_inputs(3, 123, torch.float16, DEVICE))
    args[-2] = None
    for provider in _providers(name):
        _check(op, provider, tuple(args), "weight=None")


@pytest.mark.parametrize("name", ALL)
def test_zero_tokens(name):
    op = ir.get_op(name)
    args = op.generate_inputs(0, 64, torch.bfloat16, DEVICE)
    for provider in _providers(name):
        _check(op, provider, args, "0 tokens")


@pytest.mark.parametrize("name", ALL)
def test_leading_dims_and_strided_rows(name):
    """[2, 3, H] inputs; a slice of a wider buffer; every other token: no copies."""
    op = ir.get_op(name)
    h = 48
    args = op.generate_inputs(6, h, torch.float32, DEVICE)
    reshaped = tuple(a.view(2, 3, h) if i < len(args) - 2 else a for i, a in enumerate(args))
    for provider in _providers(name):
        _check(op, provider, reshaped, "[2, 3, H]")

    wide = op.generate_inputs(6, 2 * h, torch.float32, DEVICE)
    sliced = tuple(wide[i][:, 5:5 + h] if i < len(args) - 2 else a for i, a in enumerate(args))
    assert not sliced[0].is_contiguous()
    every_other = tuple(wide[i].view(12, h)[::2] if i < len(args) - 2 else a for i, a in enumerate(args))
    for provider in _providers(name):
        _check(op, provider, sliced, "column slice")
        _check(op, provider, every_other, "every other row")


def test_extreme_values():
    """fp16 values near the top of the range: the sum of squares must not overflow."""
    op = ir.ops.rms_norm
    x, w, eps = op.generate_inputs(3, 123, torch.float16, DEVICE)
    x = (x * 20000).clamp(-60000, 60000)
    _check(op, "triton", (x, w, eps), "large fp16")
    _check(op, "triton", (torch.zeros_like(x), w, eps), "zeros")


def test_supports_args_refuses_what_the_kernel_cannot_do():
    op = ir.ops.rms_norm
    x, w, eps = op.generate_inputs(4, 64, torch.float32, DEVICE)
    impl = op.impls["triton"]
    assert impl.supports(x, w, eps)
    assert not impl.supports(x.to(torch.float64), w, eps)          # dtype
    assert not impl.supports(x.t().contiguous().t(), w, eps)       # last dim not unit stride
    assert not impl.supports(x, w[:32], eps)                       # weight size
    assert not impl.supports(x, w.view(8, 8), eps)                 # weight rank
    x3 = torch.randn(4, 6, 64, device=DEVICE)[:, :3]               # leading dims do not collapse
    assert not impl.supports(x3, w, eps)
    assert op.dispatch(x3, w, eps).provider == "native" or "triton" not in op.get_priority()
    if DEVICE == "cpu":
        assert impl.supports(x, w, eps)  # the interpreter runs CPU tensors

    fused = ir.ops.fused_add_rms_norm
    x, r, w, eps = fused.generate_inputs(4, 64, torch.bfloat16, DEVICE)
    inplace = fused.impls["triton_inplace"]
    assert fused.impls["triton"].supports(x, r.float(), w, eps)    # mixed residual dtype: functional only
    assert not inplace.supports(x, r.float(), w, eps)
    assert not inplace.supports(x, x, w, eps)                      # aliasing activations
    assert not inplace.supports(x[:1].expand(4, 64), r, w, eps)    # rows share memory
    assert inplace.supports(x, r, w, eps)
    buf = torch.zeros(8 * 64, dtype=x.dtype, device=DEVICE)       # contiguous views of one buffer:
    assert inplace.supports(buf[:256].view(4, 64), buf[256:].view(4, 64), w, eps)      # adjacent
    assert not inplace.supports(buf[:256].view(4, 64), buf[32:288].view(4, 64), w, eps)  # overlapping
    assert not inplace.supports(buf[32:288].view(4, 64), buf[:256].view(4, 64), w, eps)  # either order


def test_inplace_overload_writes_into_the_activations():
    op = ir.ops.fused_add_rms_norm
    x, r, w, eps = op.generate_inputs(3, 123, torch.bfloat16, DEVICE)
    expected_out, expected_res = op.native(x, r, w, eps)
    x_in, r_in = x.clone(), r.clone()
    with op.set_priority(["triton_inplace", "native"]):
        out, res = op.maybe_inplace(x_in, r_in, w, eps)
        assert out.data_ptr() == x_in.data_ptr() and res.data_ptr() == r_in.data_ptr()
        assert_close(x_in, expected_out, op.tolerance(x.dtype), what="out written into x")
        assert torch.equal(r_in, expected_res)
        # The default overload never mutates, even with the in-place provider first.
        x_in, r_in = x.clone(), r.clone()
        out, res = op(x_in, r_in, w, eps)
        assert torch.equal(x_in, x) and torch.equal(r_in, r)
        assert_close(out, expected_out, op.tolerance(x.dtype))
    # With `triton` chosen (the CUDA default), maybe_inplace runs its in-place form.
    x_in, r_in = x.clone(), r.clone()
    with op.set_priority(["triton", "native"]):
        assert op.maybe_inplace.dispatch(x_in, r_in, w, eps).provider == "triton_inplace"
        out, res = op.maybe_inplace(x_in, r_in, w, eps)
    assert out.data_ptr() == x_in.data_ptr() and res.data_ptr() == r_in.data_ptr()
    assert_close(x_in, expected_out, op.tolerance(x.dtype), what="out written into x")
    assert torch.equal(r_in, expected_res)


def test_residual_is_exactly_the_rounded_sum():
    op = ir.ops.fused_add_rms_norm
    x, r, w, eps = op.generate_inputs(5, 40, torch.bfloat16, DEVICE)
    _, res = op.impls["triton"].impl_fn(x, r, w, eps)
    assert torch.equal(res, (x.float() + r.float()).to(x.dtype))


@pytest.mark.parametrize("name", ALL)
def test_dispatch_equals_direct_call(name):
    op = ir.get_op(name)
    args = op.generate_inputs(3, 123, torch.bfloat16, DEVICE)
    with op.set_priority(["triton", "native"]):
        assert op.dispatch(*args).provider == "triton"
        via_op = op(*args)
    direct = op.impls["triton"].impl_fn(*args)
    for a, b in zip(via_op if isinstance(via_op, tuple) else (via_op,),
                    direct if isinstance(direct, tuple) else (direct,)):
        assert torch.equal(a, b)


def test_cuda_platform_default_puts_triton_first():
    from irshim.ir import priority

    for name in ALL:
        requested, _ = priority.requested(name, "cuda")
        assert requested[0] == "triton", name


def test_traced_calls_record_the_triton_op():
    """make_fx sees the graph-visible op, not a raw kernel launch."""
    from torch.fx.experimental.proxy_tensor import make_fx

    op = ir.ops.fused_add_rms_norm
    x, r, w, eps = op.generate_inputs(3, 40, torch.float32, DEVICE)
    gm = make_fx(lambda x, r, w: op.impls["triton"].impl_fn(x, r, w, eps))(x, r, w)
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert torch.ops.irshim_triton.fused_add_rms_norm.default in targets
    out, res = torch.ops.irshim_triton.fused_add_rms_norm(x, r, w, eps)
    e_out, e_res = op.native(x, r, w, eps)
    assert_close(out, e_out, op.tolerance(x.dtype))
    assert_close(res, e_res, op.tolerance(x.dtype))


@pytest.mark.cuda  # on the CPU, the interpreter would run the kernel on FakeTensors
def test_triton_op_opcheck():
    DEVICE = "cuda"
    x, w, eps = ir.ops.rms_norm.generate_inputs(3, 40, torch.float32, DEVICE)
    torch.library.opcheck(torch.ops.irshim_triton.rms_norm.default, (x, w, eps),
                          test_utils=("test_schema", "test_faketensor"))
    x, r, w, eps = ir.ops.fused_add_rms_norm.generate_inputs(3, 40, torch.float32, DEVICE)
    torch.library.opcheck(torch.ops.irshim_triton.fused_add_rms_norm_inplace.default, (x, r, w, eps),
                          test_utils=("test_schema", "test_faketensor"))


# ----------------------------------------------------------------------- GPU

REAL = [(1, 4096), (7, 5120), (128, 4096), (1000, 8192), (4096, 2048), (33, 16384 + 4096)]


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("name", ALL)
def test_gpu_real_sizes(name, dtype):
    op = ir.get_op(name)
    for shape in REAL:
        args = op.generate_inputs(*shape, dtype, "cuda")
        for provider in _providers(name):
            _check(op, provider, args, f"{shape}")


@pytest.mark.cuda
@pytest.mark.parametrize("name", ALL)
def test_gpu_non_contiguous(name):
    op = ir.get_op(name)
    h = 4096
    wide = op.generate_inputs(512, h + 256, torch.bfloat16, "cuda")
    n_act = 2 if name in FUSED else 1
    args = op.generate_inputs(256, h, torch.bfloat16, "cuda")
    sliced = tuple(wide[i][::2, 128:128 + h] if i < n_act else a for i, a in enumerate(args))
    assert sliced[0].stride() == ((h + 256) * 2, 1)
    for provider in _providers(name):
        _check(op, provider, sliced, "strided rows")


@pytest.mark.cuda
def test_gpu_inplace_semantics():
    op = ir.ops.fused_add_rms_norm
    x, r, w, eps = op.generate_inputs(300, 4096, torch.bfloat16, "cuda")
    e_out, e_res = op.native(x, r, w, eps)
    with op.set_priority(["triton_inplace", "triton", "native"]):
        xi, ri = x.clone(), r.clone()
        out, res = op.maybe_inplace(xi, ri, w, eps)
        assert out is xi and res is ri
        assert_close(xi, e_out, op.tolerance(x.dtype))
        assert torch.equal(ri, e_res)
        xi, ri = x.clone(), r.clone()
        op(xi, ri, w, eps)
        assert torch.equal(xi, x) and torch.equal(ri, r)


@pytest.mark.cuda
@pytest.mark.parametrize("name", ALL)
def test_gpu_cuda_graph_capture(name):
    """Captured once, replayed on new input values."""
    op = ir.get_op(name)
    args = op.generate_inputs(64, 4096, torch.bfloat16, "cuda")
    n_act = 2 if name in FUSED else 1
    static = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
    impl = op.impls["triton"].impl_fn
    impl(*static)  # compile outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = impl(*static)
    for seed in range(2):
        g = torch.Generator(device="cuda").manual_seed(seed)
        for i in range(n_act):
            static[i].copy_(torch.randn(static[i].shape, generator=g, device="cuda"))
        graph.replay()
        expected = op.native(*static)
        got = captured if isinstance(captured, tuple) else (captured,)
        exp = expected if isinstance(expected, tuple) else (expected,)
        for a, e in zip(got, exp):
            assert_close(a, e, op.tolerance(torch.bfloat16), what=f"{name} graph replay")


@pytest.mark.cuda
def test_gpu_torch_compile_sees_the_triton_op():
    op = ir.ops.fused_add_rms_norm
    x, r, w, eps = op.generate_inputs(256, 4096, torch.bfloat16, "cuda")

    def f(x, r, w):
        out, res = torch.ops.irshim_triton.fused_add_rms_norm(x * 2, r, w, eps)
        return out + 1, res

    compiled = torch.compile(f, fullgraph=True)
    out, res = compiled(x, r, w)
    e_out, e_res = op.native(x * 2, r, w, eps)
    assert_close(out, e_out + 1, op.tolerance(x.dtype))
    assert torch.equal(res, e_res)
