"""Triton activations against the ops' native semantics, with the ops' tolerances.

CPU tests run the kernels in Triton's interpreter on small odd shapes; `cuda`
tests run real sizes on a GPU.
"""

from __future__ import annotations

import pytest
import torch

import irshim.ir as ir
from irshim.ir.tolerances import assert_close

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
GATED = ["silu_and_mul", "mul_and_silu", "gelu_and_mul", "fatrelu_and_mul"]
PLAIN = ["gelu_new", "gelu_fast", "quick_gelu", "relu2"]
ALL = GATED + PLAIN

ir.load_providers()  # registers the triton impls and torch.ops.irshim_triton


def _ids(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _variants(name: str, args: tuple) -> list[tuple]:
    """Every scalar setting worth covering for an op."""
    if name == "gelu_and_mul":
        return [(args[0], "none"), (args[0], "tanh")]
    if name == "fatrelu_and_mul":
        return [(args[0], 0.5), (args[0], 0.0), (args[0], -1.25)]
    return [args]


def _check(op: ir.IrOp, args: tuple, what: str = "") -> None:
    expected = op.native(*args)
    impl = op.impls["triton"]
    assert impl.supports(*args), f"{op.name}/triton refused {what}"
    actual = impl.impl_fn(*args)
    assert actual.dtype == expected.dtype
    assert_close(actual, expected, op.tolerance(args[0].dtype), what=f"{op.name} {args[1:]} {what}")


# ------------------------------------------------------------ CPU (interpreter)

# (tokens, width): width is the output width (gated inputs are twice as wide).
SMALL = [(1, 8), (3, 123), (4, 1100)]


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("shape", SMALL, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", ALL)
def test_small_shapes(name, shape, dtype):
    op = ir.get_op(name)
    for args in _variants(name, op.generate_inputs(*shape, dtype, DEVICE)):
        _check(op, args, f"{shape} {dtype}")


@pytest.mark.parametrize("name", ALL)
def test_zero_tokens_and_leading_dims(name):
    op = ir.get_op(name)
    for args in _variants(name, op.generate_inputs(0, 16, torch.bfloat16, DEVICE)):
        _check(op, args, "0 tokens")
    (x, *rest) = op.generate_inputs(6, 24, torch.float32, DEVICE)
    for args in _variants(name, (x.view(2, 3, -1), *rest)):
        _check(op, args, "[2, 3, W]")


@pytest.mark.parametrize("name", ALL)
def test_strided_rows(name):
    """A column slice of a wider buffer and every other token, without copies."""
    op = ir.get_op(name)
    (x, *rest) = op.generate_inputs(8, 40, torch.float16, DEVICE)
    width = x.shape[-1] // 2
    sliced = x[:, 4:4 + width]
    every_other = x[::2]
    assert not sliced.is_contiguous() and not every_other.is_contiguous()
    for view in (sliced, every_other):
        for args in _variants(name, (view, *rest)):
            _check(op, args, f"strides {view.stride()}")


@pytest.mark.parametrize("name", ALL)
def test_extreme_values(name):
    """Large magnitudes: exp overflows to inf inside the kernels and must give +-x or 0, never NaN."""
    op = ir.get_op(name)
    values = torch.tensor([-100.0, -30.0, -9.0, -1e-4, 0.0, 1e-4, 9.0, 30.0, 100.0])
    x = values.repeat(2, 2).to(device=DEVICE, dtype=torch.float32)  # [2, 18]: halves are equal
    (_, *rest) = op.generate_inputs(2, 9, torch.float32, DEVICE)
    for args in _variants(name, (x, *rest)):
        _check(op, args, "extreme values")
        assert not op.impls["triton"].impl_fn(*args).isnan().any()


def test_exact_gelu_is_accurate_in_float32():
    """The erfc-form GELU (kernels/triton/activation.py `_gelu_erf`) against float64 computed
    through erfc: F.gelu's 0.5 x (1 + erf(x / sqrt 2)) cancels in the negative tail, in
    float64 too (at x = -8.4 it is 2x off), so it is no reference there."""
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.linspace(-12, 12, 20001), 3 * torch.randn(20000, generator=g)])
    out = ir.ops.gelu_and_mul.impls["triton"].impl_fn(torch.cat([x, torch.ones_like(x)])[None].to(DEVICE), "none")
    x64 = x.double()
    expected = 0.5 * x64 * torch.special.erfc(-x64 / 2 ** 0.5)
    err = (out[0].cpu().double() - expected).abs()
    assert err.max().item() <= 1e-6
    tail = expected.abs() > 1e-30  # down to 1e-30 the relative error stays small
    assert (err[tail] / expected[tail].abs()).max().item() <= 5e-5


def test_blocks_that_tile_the_output_exactly_drop_the_mask():
    # 4 x 256 outputs in 2 x 128 blocks (the EVEN path) and 3 x 200 in the same blocks (masked).
    from irshim.kernels.triton import activation as ta

    for rows, cols in ((4, 256), (3, 200)):
        for name, act, gated in (("silu_and_mul", "silu", True), ("gelu_and_mul", "gelu", True),
                                 ("quick_gelu", "quick_gelu", False)):
            op = ir.get_op(name)
            (x, *_) = op.generate_inputs(rows, cols, torch.float32, DEVICE)
            args = (x, "none") if name == "gelu_and_mul" else (x,)
            cfg = ta.ActConfig(2, 128, 1)
            actual = ta.gated(x, act, config=cfg) if gated else ta.plain(x, act, config=cfg)
            assert_close(actual, op.native(*args), op.tolerance(torch.float32), what=f"{name} {rows}x{cols}")


@pytest.mark.parametrize("name, act", [("quick_gelu", "quick_gelu"), ("gelu_new", "gelu_tanh"), ("relu2", "relu2")])
def test_flat_kernel_with_and_without_its_mask(name, act):
    # 4 x 256 elements in blocks of 128 (EVEN, no mask) and 3 x 200 (a partial last block).
    from irshim.kernels.triton import activation as ta

    op = ir.get_op(name)
    for rows, cols in ((4, 256), (3, 200)):
        (x, *_) = op.generate_inputs(rows, cols, torch.float32, DEVICE)
        actual = ta.plain(x, act, config=ta.FlatConfig(128, 1))
        assert_close(actual, op.native(x), op.tolerance(torch.float32), what=f"{name} {rows}x{cols}")
        # int64 offsets (tensors past 2^31 elements), launched directly on the same inputs
        out, n = torch.empty_like(x), x.numel()
        ta._plain_flat_kernel[(-(-n // 128),)](x, out, n, ACT=act, BLOCK=128, EVEN=n % 128 == 0, I64=True)
        assert_close(out, op.native(x), op.tolerance(torch.float32), what=f"{name} {rows}x{cols} int64")


GATED_ACTS = [("silu_and_mul", "silu", False, ()), ("mul_and_silu", "silu", True, ()),
              ("gelu_and_mul", "gelu", False, ("none",)), ("gelu_and_mul", "gelu_tanh", False, ("tanh",)),
              ("fatrelu_and_mul", "fatrelu", False, (0.5,))]


@pytest.mark.parametrize("name, act, second, extra", GATED_ACTS, ids=lambda v: str(v))
def test_gated_flat_kernel_with_and_without_its_mask(name, act, second, extra):
    # 4 x 256 outputs in blocks of 128 (EVEN, no mask) and 3 x 200 (a block spans rows, the last is partial).
    from irshim.kernels.triton import activation as ta

    op = ir.get_op(name)
    param = extra[0] if name == "fatrelu_and_mul" else 0.0
    for rows, cols in ((4, 256), (3, 200)):
        (x, *_) = op.generate_inputs(rows, cols, torch.float32, DEVICE)
        expected = op.native(x, *extra)
        actual = ta.gated(x, act, second, param, config=ta.FlatConfig(128, 1))
        assert_close(actual, expected, op.tolerance(torch.float32), what=f"{name} {rows}x{cols}")
        # int64 offsets (inputs past 2^31 elements), launched directly on the same inputs
        out, n = torch.empty_like(expected), expected.numel()
        ta._gated_flat_kernel[(-(-n // 128),)](x, out, n, param, D=cols, ACT=act, ACT_ON_SECOND=second,
                                               BLOCK=128, EVEN=n % 128 == 0, I64=True)
        assert_close(out, expected, op.tolerance(torch.float32), what=f"{name} {rows}x{cols} int64")


def test_gated_flat_kernel_uses_int64_offsets_only_past_int32(launches):
    from irshim.kernels.triton import activation as ta

    ta.gated(torch.empty(2, 8, device=DEVICE), "silu", flat_kernel=launches.kernel("flat"))
    # The input offsets reach 2 N: 2^30 outputs already need int64 (a meta tensor: shape only, no memory).
    ta.gated(torch.empty(2**15, 2**16, device="meta"), "silu", flat_kernel=launches.kernel("flat"))
    assert [kw["I64"] for kw in launches.kwargs] == [False, True]


def test_activations_run_flat_on_contiguous_inputs_only(launches):
    from irshim.kernels.triton import activation as ta

    spies = {"kernel": launches.kernel("tiles"), "flat_kernel": launches.kernel("flat")}
    x = torch.randn(4, 64, device=DEVICE)
    ta.gated(x, "silu", **spies)
    ta.gated(x[:, :32], "silu", **spies)  # rows strided by 64
    ta.gated(x, "silu", config=ta.ActConfig(1, 32, 1), **spies)
    big = torch.empty(4096, 2 * 14336, device="meta")  # the exact GELU's tiles (the rule above)
    ta.gated(big, "gelu", **spies)
    ta.gated(big, "silu", **spies)
    ta.plain(x, "relu2", **spies)
    ta.plain(x[:, :32], "relu2", **spies)
    assert launches.names == ["flat", "tiles", "tiles", "tiles", "flat", "flat", "tiles"]


def test_flat_launch_config_rules():
    from irshim.kernels.triton import activation as ta

    # 16 elements a thread from 1024 x 14336 elements, 8 from 2^24; decode sizes: a block per
    # program for four programs a streaming multiprocessor, 256 to 1024 elements.
    assert ta.flat_config(1024 * 14336, 132) == ta.FlatConfig(2048, 4)
    assert ta.flat_config(1024 * 28672, 132) == ta.FlatConfig(1024, 4)
    assert ta.flat_config(16384 * 14336, 132) == ta.FlatConfig(1024, 4)
    assert ta.flat_config(14336, 132) == ta.FlatConfig(256, 4)
    assert ta.flat_config(64 * 14336, 132) == ta.FlatConfig(1024, 4)


def test_gated_flat_launch_config_rules():
    from irshim.kernels.triton import activation as ta

    # 8 elements a thread from 1024 x 14336 outputs; decode sizes: four programs a multiprocessor,
    # 512 to 1024 elements a program; the exact GELU takes the row tiles from 4096 x 14336.
    assert ta.gated_flat_config(1024 * 14336, "silu", 132) == ta.FlatConfig(1024, 4)
    assert ta.gated_flat_config(16384 * 28672, "gelu_tanh", 132) == ta.FlatConfig(1024, 4)
    assert ta.gated_flat_config(14336, "silu", 132) == ta.FlatConfig(512, 4)
    assert ta.gated_flat_config(64 * 14336, "fatrelu", 132) == ta.FlatConfig(1024, 4)
    assert ta.gated_flat_config(1024 * 14336, "gelu", 132) == ta.FlatConfig(1024, 4)
    assert ta.gated_flat_config(4096 * 14336, "gelu", 132) is None
    # ... where DRAM gives a multiprocessor 30 GB/s or more (H200: 36.5) or the bandwidth is
    # unknown; below (H100: 25.4) it stays flat at 2048/8. Other activations ignore the figure.
    assert ta.gated_flat_config(4096 * 14336, "gelu", 132, 36.5) is None
    assert ta.gated_flat_config(4096 * 14336, "gelu", 132, 25.4) == ta.FlatConfig(2048, 8)
    assert ta.gated_flat_config(16384 * 28672, "gelu", 132, 29.9) == ta.FlatConfig(2048, 8)
    assert ta.gated_flat_config(1024 * 14336, "gelu", 132, 25.4) == ta.FlatConfig(1024, 4)
    assert ta.gated_flat_config(16384 * 28672, "silu", 132, 25.4) == ta.FlatConfig(1024, 4)


def test_gated_reads_the_bandwidth_for_the_large_exact_gelu_only(monkeypatch, launches):
    from irshim.kernels.triton import activation as ta

    seen = []
    monkeypatch.setattr(ta.S, "memory_gbs_per_sm", lambda t: seen.append(t.shape) or 25.4)
    kernels = {"kernel": launches.kernel("tiles"), "flat_kernel": launches.kernel("flat")}
    small, large = torch.empty(8, 2 * 256, device=DEVICE), torch.empty(4096, 2 * 14336, device="meta")
    ta.gated(small, "gelu", **kernels)
    ta.gated(large, "silu", **kernels)
    assert seen == []
    ta.gated(large, "gelu", **kernels)  # flat at 2048/8 on an H100's bandwidth
    assert seen == [large.shape]
    assert launches.names == ["flat", "flat", "flat"]
    assert launches.kwargs[-1]["BLOCK"] == 2048 and launches.kwargs[-1]["num_warps"] == 8


def test_supports_args_refuses_what_the_kernel_cannot_do():
    x = torch.randn(4, 64, device=DEVICE)
    gated = ir.ops.silu_and_mul.impls["triton"]
    assert gated.supports(x)
    assert not gated.supports(x[:, :63])                   # odd width: no halves
    assert not gated.supports(x.to(torch.float64))         # dtype
    assert not gated.supports(x.to(torch.int32))
    assert not gated.supports(x.t())                       # last dim not unit stride
    x3 = torch.randn(4, 6, 64, device=DEVICE)[:, :3]       # leading dims do not collapse
    assert not gated.supports(x3)
    gelu = ir.ops.gelu_and_mul.impls["triton"]
    assert gelu.supports(x, "tanh") and not gelu.supports(x, "erf")
    plain = ir.ops.relu2.impls["triton"]
    assert plain.supports(x[:, :63]) and not plain.supports(x.t())


def test_unsupported_args_fall_back_to_native():
    op = ir.ops.gelu_and_mul
    x = torch.randn(4, 64, device=DEVICE)
    with op.set_priority(["triton", "native"]):
        assert op.dispatch(x, "tanh").provider == "triton"
        assert op.dispatch(x.double(), "tanh").provider == "native"
        with pytest.raises(ValueError):  # native's own error for a bad approximation
            op(x, "erf")


@pytest.mark.parametrize("name", ALL)
def test_dispatch_equals_direct_call(name):
    op = ir.get_op(name)
    args = _variants(name, op.generate_inputs(3, 123, torch.bfloat16, DEVICE))[-1]
    with op.set_priority(["triton", "native"]):
        assert op.dispatch(*args).provider == "triton"
        via_op = op(*args)
    assert torch.equal(via_op, op.impls["triton"].impl_fn(*args))


def test_cuda_platform_default_puts_triton_first():
    from irshim.ir import priority

    for name in ALL:
        requested, _ = priority.requested(name, "cuda")
        assert requested[0] == "triton", name


def test_traced_calls_record_the_triton_op():
    from torch.fx.experimental.proxy_tensor import make_fx

    x = torch.randn(3, 16, device=DEVICE)
    gm = make_fx(lambda x: ir.ops.gelu_and_mul.impls["triton"].impl_fn(x, "tanh"))(x)
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert torch.ops.irshim_triton.gelu_and_mul.default in targets
    assert_close(torch.ops.irshim_triton.gelu_and_mul(x, "tanh"), ir.ops.gelu_and_mul.native(x, "tanh"),
                 ir.ops.gelu_and_mul.tolerance(x.dtype))


@pytest.mark.parametrize("name", ["quick_gelu", "silu_and_mul"])
@pytest.mark.parametrize("contiguous", [True, False])
def test_traced_activations_record_the_triton_op(contiguous, name):
    # Contiguous inputs take the flat kernels, strided rows the row tiles: both through the triton_op.
    from torch.fx.experimental.proxy_tensor import make_fx

    op = ir.get_op(name)
    x = torch.randn(3, 64, device=DEVICE)
    if not contiguous:
        x = x[:, :32]
    gm = make_fx(lambda x: op.impls["triton"].impl_fn(x))(x)
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert getattr(torch.ops.irshim_triton, name).default in targets
    assert_close(gm(x), op.native(x), op.tolerance(x.dtype))


# ----------------------------------------------------------------------- GPU

REAL = [(1, 14336), (7, 5000), (128, 14336), (1000, 28672), (4096, 1024), (3, 123)]


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("name", ALL)
def test_gpu_real_sizes(name, dtype):
    op = ir.get_op(name)
    for shape in REAL:
        for args in _variants(name, op.generate_inputs(*shape, dtype, "cuda")):
            _check(op, args, f"{shape}")


@pytest.mark.cuda
@pytest.mark.parametrize("name", ALL)
def test_gpu_non_contiguous(name):
    op = ir.get_op(name)
    (x, *rest) = op.generate_inputs(512, 14336 + 64, torch.bfloat16, "cuda")
    width = (x.shape[-1] - 128) if name in GATED else x.shape[-1] - 64
    view = x[::2, 32:32 + width]
    for args in _variants(name, (view, *rest)):
        _check(op, args, "strided rows")


@pytest.mark.cuda
@pytest.mark.parametrize("name", ALL)
def test_gpu_cuda_graph_capture(name):
    op = ir.get_op(name)
    args = _variants(name, op.generate_inputs(64, 14336, torch.bfloat16, "cuda"))[-1]
    static = args[0].clone()
    impl = op.impls["triton"].impl_fn
    impl(static, *args[1:])
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = impl(static, *args[1:])
    for seed in range(2):
        static.copy_(torch.randn(static.shape, generator=torch.Generator(device="cuda").manual_seed(seed),
                                 device="cuda"))
        graph.replay()
        assert_close(captured, op.native(static, *args[1:]), op.tolerance(torch.bfloat16),
                     what=f"{name} graph replay")


@pytest.mark.cuda
@pytest.mark.parametrize("name, width", [("silu_and_mul", 2 * 14336), ("quick_gelu", 14336)])
def test_gpu_torch_compile_sees_the_triton_op(name, width):
    # Inductor re-emits the (flat) kernels' source into its graph: their helpers must survive that.
    x = torch.randn(256, width, device="cuda", dtype=torch.bfloat16)
    op = ir.get_op(name)

    def f(x):
        return getattr(torch.ops.irshim_triton, name)(x + 1) * 2

    torch._dynamo.reset()
    out = torch.compile(f, fullgraph=True)(x)
    assert_close(out, op.native(x + 1) * 2, op.tolerance(x.dtype))
