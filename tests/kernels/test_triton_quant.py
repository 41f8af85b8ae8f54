"""Triton FP8 quant kernels against the ops' native semantics, compared dequantized.

CPU tests run the kernels in Triton's interpreter on small odd shapes (every
code path: single- and multi-pass rows, strided rows, 0 and 1 tokens); `cuda`
tests run model sizes on a GPU. Dequantized values are compared with the op's
tolerance, scales with `scale_tolerance`, and q is required to equal native's
except at rare rounding boundaries.
"""

from __future__ import annotations

import pytest
import torch

import irshim.ir as ir
from irshim.ir.ops import quant as qops
from irshim.kernels.triton import quant as tq

from quant_checks import NORM_OPS, check  # tests/quant_checks.py

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
NAMES = [op.name for op in qops.OPS]


@pytest.fixture(autouse=True, scope="module")
def interpreter_rounds_fp8_like_the_gpu():
    """The interpreter's own float32 -> fp8 conversion is wrong (see tq.interpreter_fp8_rounding);
    a no-op on a GPU."""
    with tq.interpreter_fp8_rounding():
        yield


def test_fp8_conversion_rounds_like_torch():
    x = torch.tensor([-124.0, -46.9, 17.0, 19.0, 0.3], device=DEVICE)
    scale = torch.ones(1, device=DEVICE)
    assert torch.equal(tq.static_quant(x.reshape(1, -1), scale).float(), x.to(torch.float8_e4m3fn).float()[None])


@pytest.mark.parametrize("scale_value", [0.0137, 1.0, 3.3e-5])
def test_division_rounds_like_ieee_at_fp8_midpoints(scale_value):
    """q = fp8(x / scale) without a division per element must still land where IEEE
    division does: x placed on and one float32 ulp around every FP8 rounding midpoint
    (times the scale), plus zeros, infinities and values far beyond the range."""
    fp8 = torch.arange(0, 256, dtype=torch.uint8).view(torch.float8_e4m3fn).float()
    finite = fp8[torch.isfinite(fp8)].unique()
    midpoints = (finite[:-1] + finite[1:]) / 2
    scale = torch.tensor([scale_value])
    x = (midpoints * scale).reshape(-1, 1)
    x = torch.cat([x, torch.nextafter(x, torch.tensor(float("inf"))), torch.nextafter(x, torch.tensor(0.0))], 1)
    x = torch.cat([x.flatten(), -x.flatten(), torch.tensor([0.0, -0.0, float("inf"), -float("inf"), 1e30, -1e30])])
    x, scale = x.to(DEVICE).reshape(1, -1), scale.to(DEVICE)
    expected = qops.static_scaled_fp8_quant.native(x, scale)
    actual = tq.static_quant(x, scale)
    assert torch.equal(actual.view(torch.uint8), expected.view(torch.uint8)), (
        f"{(actual.view(torch.uint8) != expected.view(torch.uint8)).sum().item()} of {x.numel()} q differ")


def test_nan_stays_nan_and_out_of_range_saturates():
    """As native's clamp then conversion: NaN quantizes to NaN; values past ±448 (after the
    scale), infinities included, to ±448."""
    x = torch.tensor([[float("nan"), 1.0, -float("nan"), 500.0, -1e9, float("inf"), -float("inf"), 449.0]],
                     device=DEVICE)
    scale = torch.ones(1, device=DEVICE)
    q = tq.static_quant(x, scale).float()
    expected = qops.static_scaled_fp8_quant.native(x, scale).float()
    assert torch.equal(q.isnan(), expected.isnan()) and q.isnan().sum() == 2
    assert torch.equal(q[~q.isnan()], expected[~expected.isnan()])
    assert q[0, 3:].tolist() == [448.0, -448.0, 448.0, -448.0, 448.0]


def _ids(dtype):
    return str(dtype).removeprefix("torch.")


def _run(op, args):
    impl = op.impls["triton"]
    assert impl.supports(*args), f"{op.name}/triton refused its arguments"
    return impl.impl_fn(*args)


# ------------------------------------------------------------ CPU (interpreter)
SMALL = [(1, 64), (3, 123), (5, 40), (0, 64)]


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("shape", SMALL, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", NAMES)
def test_small_shapes(name, shape, dtype):
    op = ir.get_op(name)
    args = op.generate_inputs(*shape, dtype, DEVICE)
    if name == "per_token_group_fp8_quant" and args[1] == 1:
        args = (args[0], 1)  # hidden 123: groups of one element still run
    check(op, args, _run(op, args), f"{shape} {_ids(dtype)}")


@pytest.mark.parametrize("name", NAMES)
def test_strided_rows(name):
    op = ir.get_op(name)
    wide = op.generate_inputs(6, 160, torch.bfloat16, DEVICE)
    narrow = op.generate_inputs(6, 128, torch.bfloat16, DEVICE)
    args = list(narrow)
    args[0] = wide[0][:, 16:144]
    assert not args[0].is_contiguous()
    if name == "fused_add_rms_norm_static_fp8_quant":
        args[1] = wide[1][:, 32:160]
    check(op, tuple(args), _run(op, tuple(args)), "strided rows")


@pytest.mark.parametrize("name", ["dynamic_per_token_scaled_fp8_quant", *NORM_OPS])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=_ids)
def test_multi_pass_rows(name, dtype):
    """Rows longer than a block take the chunked passes (forced with a small block)."""
    op = ir.get_op(name)
    args = op.generate_inputs(5, 123, dtype, DEVICE)
    config = tq.RowConfig(2, 32, 1, False)
    if name == "dynamic_per_token_scaled_fp8_quant":
        actual = tq.per_token_quant(*args, config=config)
    else:
        x, *rest = args
        residual = rest.pop(0) if name.startswith("fused_add") else None
        weight, eps, last = rest
        static = "static" in name
        q, res, scales = tq.rms_norm_quant(x, residual, weight, eps, last if static else None,
                                           None if static else last, config=config)
        actual = q if name == "rms_norm_static_fp8_quant" else (q, res) if residual is not None else (q, scales)
    check(op, args, actual, "multi-pass")


def test_tile_and_group_configs_cover_tails():
    op = ir.ops.dynamic_scaled_fp8_quant
    (x,) = op.generate_inputs(7, 50, torch.float16, DEVICE)
    check(op, (x,), tq.dynamic_quant(x, config=tq.TileConfig(2, 16, 1)), "2x16 tiles")
    assert x.numel() <= tq.ONE_PROGRAM_ELEMENTS  # the default path for it: one program
    check(op, (x,), tq.dynamic_quant(x), "one program")
    check(op, (x,), tq.dynamic_quant(x, one_program=False), "amax + quant kernels")
    (wide,) = op.generate_inputs(3, tq.ONE_PROGRAM_TILE + 904, torch.bfloat16, DEVICE)
    check(op, (wide,), tq.dynamic_quant(wide), "one program, several tiles a row")
    gop = ir.ops.per_token_group_fp8_quant
    x, _ = gop.generate_inputs(5, 48, torch.bfloat16, DEVICE)
    check(gop, (x, 16), tq.group_quant(x, 16, config=tq.TileConfig(2, 32, 1)), "2x32 tiles of 16-wide groups")
    with pytest.raises(ValueError, match="splits groups"):
        tq.group_quant(x, 16, config=tq.TileConfig(1, 8, 1))


def test_static_quant_flat_kernel_and_tiles():
    # 4 x 64 elements in blocks of 32 (no mask), 3 x 50 (a partial last block), and the tile path
    op = ir.ops.static_scaled_fp8_quant
    for rows, cols in ((4, 64), (3, 50)):
        x, scale = op.generate_inputs(rows, cols, torch.bfloat16, DEVICE)
        check(op, (x, scale), tq.static_quant(x, scale, config=tq.FlatConfig(32, 1)), f"flat {rows}x{cols}")
        check(op, (x, scale), tq.static_quant(x, scale, config=tq.TileConfig(2, 16, 1)), f"tiles {rows}x{cols}")
        q, n = torch.empty(x.shape, dtype=tq.FP8_DTYPE, device=DEVICE), x.numel()
        tq._static_quant_flat_kernel[(-(-n // 32),)](x, q, scale, n, BLOCK=32, EVEN=n % 32 == 0, I64=True)
        check(op, (x, scale), q, f"flat, int64 offsets, {rows}x{cols}")


def test_flat_static_config_rules():
    # 1024/4 below 16384 elements, 8 elements a thread to 2^24, 16 from there where DRAM gives
    # a multiprocessor 30 GB/s or more (H200: 36.5) or the bandwidth is unknown; the H100 (25.4) keeps 8.
    h100, h200 = 2 * 2619e6 * 5120 / 8 / 1e9 / 132, 2 * 3201e6 * 6016 / 8 / 1e9 / 132
    for gbs in (None, h100, h200):
        assert tq.flat_static_config(4096, gbs) == tq.FlatConfig(1024, 4)
        assert tq.flat_static_config(16 * 4096, gbs) == tq.FlatConfig(2048, 8)
        assert tq.flat_static_config(1024 * 14336, gbs) == tq.FlatConfig(2048, 8)
    assert tq.flat_static_config(16384 * 14336) == tq.FlatConfig(2048, 4)
    assert tq.flat_static_config(1 << 24, h200) == tq.FlatConfig(2048, 4)
    assert tq.flat_static_config(1 << 24, h100) == tq.FlatConfig(2048, 8)
    assert tq.flat_static_config(16384 * 14336, h100) == tq.FlatConfig(2048, 8)
    assert tq.flat_static_config(16384 * 14336, 29.9) == tq.FlatConfig(2048, 8)
    assert tq.flat_static_config(16384 * 14336, 30.0) == tq.FlatConfig(2048, 4)


def test_static_quant_reads_the_bandwidth_for_large_tensors_only(monkeypatch, launches):
    seen = []
    monkeypatch.setattr(tq.S, "memory_gbs_per_sm", lambda t: seen.append(t.numel()) or 25.4)
    flat = launches.kernel("flat")
    scale = torch.ones(1, device=DEVICE)
    for n in (1024, (1 << 24) - 64):  # a launch costs nothing here: the recorder runs no kernel
        tq.static_quant(torch.empty(n, dtype=torch.bfloat16, device=DEVICE), scale, flat_kernel=flat)
    assert seen == []
    big = torch.empty(1 << 24, dtype=torch.bfloat16, device=DEVICE)
    tq.static_quant(big, scale, flat_kernel=flat)
    assert seen == [1 << 24]
    assert launches.kwargs[-1]["BLOCK"] == 2048 and launches.kwargs[-1]["num_warps"] == 8


def test_static_quant_runs_flat_on_contiguous_inputs_only(launches):
    x, scale = ir.ops.static_scaled_fp8_quant.generate_inputs(4, 64, torch.bfloat16, DEVICE)
    for view in (x, x[:, :32]):
        tq.static_quant(view, scale, kernel=launches.kernel("tiles"), flat_kernel=launches.kernel("flat"))
    assert launches.names == ["flat", "tiles"]


@pytest.mark.parametrize("rows, cols, programs, block_n, weighted, strided", [
    (7, 40, 3, 16, True, False),    # rows not a multiple of the programs; a masked last chunk
    (8, 64, 4, 16, True, True),     # x and the residual with a row stride
    (5, 48, 2, 32, False, False),   # no weight
    (6, 32, 6, 32, True, False),    # one row a program: no pipelined iteration
])
def test_pipelined_fused_add_quant_matches_the_chunked_kernel(rows, cols, programs, block_n, weighted, strided):
    """The row-pipelined kernel returns exactly the chunked row kernel's q and residual (the same
    rounding, pass 2 one row later)."""
    op = ir.ops.fused_add_rms_norm_static_fp8_quant
    x, r, w, eps, scale = op.generate_inputs(rows, cols, torch.bfloat16, DEVICE)
    if strided:
        x = torch.cat([x, torch.randn_like(x)], 1)[:, :cols]
        r = torch.cat([torch.randn_like(r), r], 1)[:, cols:]
    w = w if weighted else None
    chunked = tq.RowConfig(1, block_n, 4, False)
    q, res, _ = tq.rms_norm_quant(x, r, w, eps, scale, None, config=chunked, programs=programs)
    q_ref, res_ref, _ = tq.rms_norm_quant(x, r, w, eps, scale, None, config=chunked)
    assert torch.equal(res, res_ref)
    assert torch.equal(q.view(torch.uint8), q_ref.view(torch.uint8))
    check(op, (x, r, w, eps, scale), (q, res), "pipelined")


def test_pipelined_kernel_rule(launches):
    """Fused add + static quant with chunked rows from PIPELINE_MIN_ROWS rows: the pipelined kernel,
    PIPELINE_PROGRAMS_PER_SM programs a multiprocessor, at most half the rows; elsewhere the row kernel."""
    assert tq.pipeline_programs(1024, 14336, "norm_add_static", 132) == 512
    assert tq.pipeline_programs(16384, 14336, "norm_add_static", 132) == tq.PIPELINE_PROGRAMS_PER_SM * 132
    assert tq.pipeline_programs(tq.PIPELINE_MIN_ROWS - 1, 14336, "norm_add_static", 132) == 0
    assert tq.pipeline_programs(16384, 8192, "norm_add_static", 132) == 0   # single pass
    assert tq.pipeline_programs(16384, 14336, "norm_static", 132) == 0
    # Single-pass rows from PIPELINE_SINGLE_PASS_COLS: while one wave of two-row programs holds them.
    slots = tq.PIPELINE_PROGRAMS_PER_SM * 132
    assert tq.pipeline_programs(1024, 8192, "norm_add_static", 132) == 512
    assert tq.pipeline_programs(2 * slots, 8000, "norm_add_static", 132) == slots
    assert tq.pipeline_programs(2 * slots + 1, 8192, "norm_add_static", 132) == 0
    assert tq.pipeline_programs(tq.PIPELINE_MIN_ROWS - 1, 8192, "norm_add_static", 132) == 0
    assert tq.pipeline_programs(1024, 4096, "norm_add_static", 132) == 0
    assert tq.pipeline_programs(1024, 8192, "norm_static", 132) == 0
    scale = torch.ones(1, device="meta")
    for cols in (14336, 8192):
        x = torch.empty(1024, cols, dtype=torch.bfloat16, device="meta")
        for residual in (x, None):
            tq.rms_norm_quant(x, residual, None, 1e-6, scale, None, kernel=launches.kernel("rows"),
                              pipelined_kernel=launches.kernel("pipelined"))
    assert launches.names == ["pipelined", "rows"] * 2
    # Rows of 8192 run pipelined in CHUNK-column passes, not in one block of the row kernel's.
    assert launches.kwargs[2]["BLOCK_N"] == tq.CHUNK and launches.kwargs[2]["num_warps"] == tq.CHUNK_WARPS


def test_row_config_rules():
    # H200 sweeps (kernels/triton/quant.py): wide rows at throughput sizes per kernel kind.
    R = tq.RowConfig
    assert tq.row_config(16384, 14336, "per_token") == R(1, 16384, tq.PER_TOKEN_WARPS, True)
    assert tq.row_config(1024, 4096, "norm_add_static") == R(1, 4096, 4096 // tq.ADD_NORM_COLS_PER_WARP, True)
    assert tq.row_config(1024, 8192, "norm_add_static") == R(1, 8192, tq.MAX_ROW_WARPS, True)
    assert tq.row_config(16384, 8192, "norm_static") == R(2, 8192, tq.STATIC_NORM_WARPS, True)
    assert tq.row_config(4096, 8192, "norm_static") == R(1, 8192, tq.STATIC_NORM_WARPS, True)
    assert tq.row_config(16384, 14336, "norm_static") == R(1, tq.CHUNK, tq.CHUNK_WARPS, False)
    assert tq.row_config(16384, 8192, "norm_dynamic") == R(1, 8192, 8192 // tq.COLS_PER_WARP, True)
    assert tq.row_config(16, 14336, "per_token") == R(1, 16384, min(tq.MAX_WARPS, 16384 // tq.DECODE_COLS_PER_WARP), True)
    with pytest.raises(ValueError, match="kind"):
        tq.row_config(16, 4096, "norm")


@pytest.mark.parametrize("rows, cols, group", [(1, 4096, 128), (16, 14336, 128), (16384, 14336, 128),
                                               (3, 8192, 4096), (7, 48, 16)])
def test_group_config_keeps_groups_whole(rows, cols, group):
    cfg = tq.group_config(rows, cols, group)
    assert cfg.block_n % group == 0 and cfg.block_m >= 1 and cfg.num_warps >= 1
    assert cfg.block_m * cfg.block_n <= max(group, tq.GROUP_MAX_PROGRAM)


def test_persistent_amax_strides_over_tiles(monkeypatch):
    # One amax program for 35 tiles: it must visit every one (the loudest element sits
    # in the last tile); the quant pass then runs its tiles last-first.
    monkeypatch.setattr(tq, "AMAX_PROGRAMS_PER_SM", 0)
    op = ir.ops.dynamic_scaled_fp8_quant
    (x,) = op.generate_inputs(7, 80, torch.bfloat16, DEVICE)
    x[6, 79] = 300.0
    q, scale = tq.dynamic_quant(x, config=tq.TileConfig(1, 16, 1))
    assert scale.item() == pytest.approx(300.0 / qops.FP8_MAX)
    check(op, (x,), (q, scale), "one persistent amax program")


def test_loud_token_and_zero_rows():
    op = ir.ops.dynamic_per_token_scaled_fp8_quant
    x = torch.zeros(4, 64, device=DEVICE)
    x[1] = 1000.0
    x[2, 5] = -3.0
    q, s = _run(op, (x, None))
    assert s.flatten().tolist()[0] == pytest.approx(qops.MIN_SCALE) and q[0].float().abs().sum() == 0
    check(op, (x, None), (q, s), "zero rows")


def test_supports_args_refusals():
    f32 = torch.zeros(4, 64, device=DEVICE)
    scale = torch.ones(1, device=DEVICE)
    assert not tq._static_args(f32.to(torch.float64), scale)                  # dtype
    assert not tq._static_args(f32, torch.ones(2, device=DEVICE))             # not per-tensor
    assert not tq._static_args(f32, scale.double())                           # scale dtype
    assert not tq._static_args(f32.t(), torch.ones(1, device=DEVICE))         # columns not unit-stride
    assert not tq._group_args(f32, 48)                                        # not a power of two
    assert not tq._group_args(torch.zeros(4, 96, device=DEVICE), 64)          # does not divide
    assert tq._group_args(f32, 64) and tq._per_token_args(f32, None)
    assert not tq._norm_static_args(f32, torch.ones(32, device=DEVICE), 1e-6, scale)  # weight size
    assert not tq._fused_add_static_args(f32, torch.zeros(4, 32, device=DEVICE), None, 1e-6, scale)


def test_dispatch_picks_triton_when_listed():
    op = ir.ops.rms_norm_dynamic_per_token_fp8_quant
    args = op.generate_inputs(3, 64, torch.bfloat16, DEVICE)
    with op.set_priority(["triton", "native"]):
        assert op.dispatch(*args).provider == "triton"
        q, s = op(*args)
    check(op, args, (q, s), "via dispatch")


def test_traced_calls_use_the_triton_ops():
    from torch.fx.experimental.proxy_tensor import make_fx

    op = ir.ops.fused_add_rms_norm_static_fp8_quant
    args = op.generate_inputs(3, 64, torch.float16, DEVICE)
    gm = make_fx(lambda *a: op.impls["triton"].impl_fn(*a))(*args)
    text = gm.code
    assert "irshim_triton" in text or "triton_kernel_wrapper" in text
    check(op, args, gm(*args), "traced")


# ------------------------------------------------------------------ GPU
MODEL = [(1, 4096), (16, 8192), (128, 14336), (1024, 4096), (512, 8192), (256, 14336), (300, 123)]


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("shape", MODEL, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", NAMES)
def test_gpu_model_shapes(name, shape, dtype):
    op = ir.get_op(name)
    args = op.generate_inputs(*shape, dtype, "cuda")
    check(op, args, _run(op, args), f"{shape} {_ids(dtype)}")


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["dynamic_per_token_scaled_fp8_quant", *NORM_OPS])
def test_gpu_long_rows_take_the_multi_pass_path(name):
    op = ir.get_op(name)
    args = op.generate_inputs(4, tq.MAX_SINGLE_PASS + 96, torch.bfloat16, "cuda")
    assert not tq.row_config(4, tq.MAX_SINGLE_PASS + 96).single_pass
    check(op, args, _run(op, args), "long rows")


@pytest.mark.cuda
def test_gpu_compiled_graph_lowers_to_triton_kernels():
    from irshim.ir import compile as irc

    op = ir.ops.rms_norm_dynamic_per_token_fp8_quant
    args = op.generate_inputs(64, 4096, torch.bfloat16, "cuda")
    torch._dynamo.reset()
    with op.set_priority(["triton", "native"]):
        fn = torch.compile(lambda *a: op(*a), backend=irc.backend(), fullgraph=True)
        actual = fn(*args)
    assert ("rms_norm_dynamic_per_token_fp8_quant", "triton") in [(s.op, s.provider) for s in irc.last_lowering()]
    check(op, args, actual, "compiled")


@pytest.mark.cuda
@pytest.mark.parametrize("contiguous", [True, False], ids=["flat", "tiles"])
def test_gpu_torch_compile_runs_the_static_quant_triton_op(contiguous):
    # Inductor re-emits the kernel's source into its graph: the flat kernel and its helpers must survive that.
    op = ir.ops.static_scaled_fp8_quant
    x, scale = op.generate_inputs(64, 4096 + 64, torch.bfloat16, "cuda")
    if not contiguous:
        x = x[:, :4096]  # rows strided by 4160
    torch._dynamo.reset()
    actual = torch.compile(lambda x, s: torch.ops.irshim_triton.static_scaled_fp8_quant(x * 2, s), fullgraph=True)(x, scale)
    check(op, (x * 2, scale), actual, "compiled")


@pytest.mark.cuda
@pytest.mark.parametrize("rows, cols, strided", [(1024, 14336, False), (1500, 10000, True)])
def test_gpu_pipelined_fused_add_quant(rows, cols, strided):
    """The pipelined kernel (the default from PIPELINE_MIN_ROWS rows of chunked width) returns the
    chunked row kernel's results bit for bit, strided rows and a masked last chunk included."""
    op = ir.ops.fused_add_rms_norm_static_fp8_quant
    x, r, w, eps, scale = op.generate_inputs(rows, cols, torch.bfloat16, "cuda")
    if strided:
        x = torch.cat([x, x], 1)[:, :cols]
    assert tq.pipeline_programs(rows, cols, "norm_add_static", tq.S.sm_count(x)) > 0
    q, res, _ = tq.rms_norm_quant(x, r, w, eps, scale, None)
    q_ref, res_ref, _ = tq.rms_norm_quant(x, r, w, eps, scale, None, config=tq.row_config(rows, cols, "norm_add_static"))
    assert torch.equal(res, res_ref) and torch.equal(q.view(torch.uint8), q_ref.view(torch.uint8))
    check(op, (x, r, w, eps, scale), (q, res), "pipelined")


@pytest.mark.cuda
def test_gpu_torch_compile_runs_the_pipelined_fused_add_quant():
    # Inductor's copy of the pipelined kernel needs its helpers (chunked_rstd, _normed_chunk, _to_fp8).
    op = ir.ops.fused_add_rms_norm_static_fp8_quant
    args = op.generate_inputs(1024, 14336, torch.bfloat16, "cuda")
    torch._dynamo.reset()
    fn = torch.compile(lambda *a: torch.ops.irshim_triton.fused_add_rms_norm_static_fp8_quant(*a), fullgraph=True)
    check(op, args, fn(*args), "compiled")
