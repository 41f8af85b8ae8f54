"""QuantFP8: the legacy layer, its port onto the FP8 IR ops, and the three modes.

off and shadow return the legacy result bit for bit; on returns the IR result,
equal to legacy within the op's tolerance (compared dequantized); calls the port
cannot express run legacy and are counted as refused. The port also applies to a
foreign (vLLM-protocol) class registered as ``quant_fp8``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import irshim.compat as compat
from irshim.compat.layers.quant_fp8 import GroupShape, QuantFP8
from irshim.compat.ports import quant as quant_port  # noqa: F401  (registers the port)
from irshim.ir.ops import quant as qops
from irshim.ir.ops.quant import FP8_MAX, MIN_SCALE, dequantize, scale_tolerance
from irshim.ir.tolerances import assert_close

CONFIGS = {  # id -> (static, group shape, IR op)
    "static": (True, GroupShape.PER_TENSOR, "static_scaled_fp8_quant"),
    "per_tensor": (False, GroupShape.PER_TENSOR, "dynamic_scaled_fp8_quant"),
    "per_token": (False, GroupShape.PER_TOKEN, "dynamic_per_token_scaled_fp8_quant"),
    "group64": (False, GroupShape(1, 64), "per_token_group_fp8_quant"),
}


def _x(dtype=torch.bfloat16, tokens=6, hidden=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, hidden, generator=g)
    x[1] *= 50
    return x.to(dtype)


def _call_args(config_id, x):
    if config_id == "static":
        return (x, torch.tensor([3.0 / FP8_MAX]))
    return (x,)


def _bits(t):
    return t.view(torch.uint8) if t.dtype == torch.float8_e4m3fn else t


def assert_bit_identical(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        assert u.dtype == v.dtype and u.shape == v.shape and torch.equal(_bits(u), _bits(v))


def assert_quant_close(actual, expected, op_name, dtype):
    op = getattr(qops, op_name)
    (q, s), (eq, es) = actual, expected
    assert q.dtype == eq.dtype == torch.float8_e4m3fn and s.shape == es.shape
    assert_close(s, es, scale_tolerance(dtype), what=f"{op_name} scales")
    assert_close(dequantize(q, s), dequantize(eq, es), op.tolerance(dtype), what=f"{op_name} dequantized")


@pytest.fixture
def records(tmp_path):
    def read(kind=None, op="quant_fp8"):
        compat.flush()
        lines = [json.loads(line) for f in Path(tmp_path).rglob("*.jsonl") for line in f.read_text().splitlines()]
        return [r for r in lines if (kind is None or r["kind"] == kind) and r.get("op", op) == op]

    read.dir = tmp_path
    return read


# ---------------------------------------------------------------- the layer
@pytest.mark.parametrize("config_id", list(CONFIGS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_legacy_paths_agree_with_the_ir_semantics(config_id, dtype):
    static, shape, op_name = CONFIGS[config_id]
    layer = QuantFP8(static, shape)
    args = _call_args(config_id, _x(dtype))
    native = layer.forward_native(*args)
    assert_quant_close(native, layer.forward_cuda(*args), op_name, dtype)
    op = getattr(qops, op_name)
    ir_out = op(*args) if config_id != "group64" else op(args[0], 64)
    assert_quant_close(native, (ir_out, args[1]) if static else ir_out, op_name, dtype)


def test_legacy_hand_computed_values():
    q, s = QuantFP8(False, GroupShape.PER_TOKEN).forward_native(torch.tensor([[0.0, 0.0], [896.0, 1.0]]))
    assert s.flatten().tolist() == [pytest.approx(MIN_SCALE), 2.0] and q.float().tolist() == [[0, 0], [448, 0.5]]
    q, s = QuantFP8(True, GroupShape.PER_TENSOR).forward_native(torch.tensor([[1.0, 1000.0]]), torch.tensor([0.5]))
    assert q.float().tolist() == [[2.0, 448.0]] and s.tolist() == [0.5]
    q, s = QuantFP8(False, GroupShape(1, 2), num_token_padding=4).forward_native(torch.ones(1, 3))
    assert q.shape == (1, 3) and s.shape == (1, 2)  # groups pad the last group; padding is for per-tensor/token
    q, _ = QuantFP8(False, GroupShape.PER_TENSOR, num_token_padding=4).forward_native(torch.ones(1, 3))
    assert q.shape == (4, 3) and q[1:].float().abs().sum() == 0


def test_dynamic_per_channel_is_refused_at_construction():
    with pytest.raises(ValueError, match=r"per-token, per-tensor or per-group shape; got \(-1, 1\)"):
        QuantFP8(False, GroupShape.PER_CHANNEL)


# --------------------------------------------------------------- the modes
@pytest.mark.parametrize("config_id", list(CONFIGS))
def test_off_and_shadow_are_bit_identical_to_legacy(config_id, records):
    static, shape, op_name = CONFIGS[config_id]
    layer = QuantFP8(static, shape)
    args = _call_args(config_id, _x())
    legacy = layer._forward_method(*args)
    with compat.override(dispatch="off"):
        assert_bit_identical(layer(*args), legacy)
    with compat.override(dispatch="shadow", report_dir=records.dir, shadow_sample=1, strict=False):
        compat.flush()
        out = layer(*args)
        assert_bit_identical(out, legacy)
        (rec,) = records("compare")
    assert rec["passed"], rec
    assert rec["ir"] == f"{op_name}/native" and len(rec["outputs"]) == 2
    if static:
        assert out[1] is args[1]  # QuantFP8 returns the caller's scale


@pytest.mark.parametrize("config_id", list(CONFIGS))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_on_mode_returns_the_ir_result_within_tolerance(config_id, dtype, records):
    static, shape, op_name = CONFIGS[config_id]
    layer = QuantFP8(static, shape)
    args = _call_args(config_id, _x(dtype))
    legacy = layer._forward_method(*args)
    with compat.override(dispatch="on", report_dir=records.dir):
        out = layer(*args)
        out_kw = layer(args[0], scale=args[1]) if static else layer(args[0], scale=None)  # the planned path
    assert_quant_close(out, legacy, op_name, dtype)
    assert_bit_identical(out, out_kw)
    if static:
        assert out[1] is args[1]


def test_on_mode_per_token_with_scale_ub():
    layer = QuantFP8(False, GroupShape.PER_TOKEN)
    x, ub = _x(), torch.tensor([20.0])
    legacy = layer._forward_method(x, None, ub)
    with compat.override(dispatch="on"):
        out = layer(x, None, ub)
    assert_quant_close(out, legacy, "dynamic_per_token_scaled_fp8_quant", torch.bfloat16)
    assert out[1].max().item() == pytest.approx(20.0 / FP8_MAX)  # the loud token is capped


@pytest.mark.parametrize("case", ["padding", "column_major", "static_per_token", "group_not_dividing"])
def test_refused_calls_run_legacy_and_are_counted(case, records):
    x = _x()
    if case == "padding":
        layer, args = QuantFP8(False, GroupShape.PER_TOKEN, num_token_padding=16), (x,)
    elif case == "column_major":
        layer, args = QuantFP8(False, GroupShape(1, 64), column_major_scales=True), (x,)
    elif case == "static_per_token":
        layer, args = QuantFP8(True, GroupShape.PER_TOKEN), (x, torch.full((6, 1), 0.01))
    else:
        layer, args = QuantFP8(False, GroupShape(1, 48)), (x,)
    legacy = layer._forward_method(*args)
    for mode in ("shadow", "on"):
        with compat.override(dispatch=mode, report_dir=records.dir, shadow_sample=1, strict=False):
            compat.flush()
            assert_bit_identical(layer(*args), legacy)
            compat.flush()  # counts are written to this block's report folder
    counts = records("counts")
    assert sum(c["skipped"].get("port_refused", 0) for c in counts) == 2
    assert not records("compare")


# ---------------------------------------------------- a vLLM-protocol class
def test_port_applies_to_a_foreign_quant_fp8_class(records, foreign_base):
    ForeignCustomOp = foreign_base

    @ForeignCustomOp.register("quant_fp8")
    class ForeignQuantFP8(ForeignCustomOp):  # vLLM's attributes, forward_* borrowed from irshim's layer
        def __init__(self, static, group_shape):
            super().__init__()
            self.static, self.group_shape = static, GroupShape(*group_shape)
            self.num_token_padding, self.column_major_scales, self.use_ue8m0 = None, False, None
            self.is_group_quant = self.group_shape.is_per_group()
            self.group_size = self.group_shape.col

        forward_native = QuantFP8.forward_native
        _group_native = QuantFP8._group_native
        _check = QuantFP8._check

    compat.install(ForeignCustomOp)
    try:
        layer = ForeignQuantFP8(False, GroupShape.PER_TOKEN)
        x = _x()
        legacy = layer.forward_native(x)
        with compat.override(dispatch="shadow", report_dir=records.dir, shadow_sample=1, strict=False):
            compat.flush()
            assert_bit_identical(layer(x), legacy)
            (rec,) = records("compare")
    finally:
        compat.uninstall(ForeignCustomOp)
    assert rec["passed"] and rec["ir"] == "dynamic_per_token_scaled_fp8_quant/native" and "Foreign" in rec["cls"]
