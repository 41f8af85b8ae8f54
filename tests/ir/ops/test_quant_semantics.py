"""FP8 quant ops' native semantics against float64 references and hand-computed values.

The reference rounds to e4m3 by hand (no torch FP8 cast): step 2^(e-3) in the
binade [2^e, 2^(e+1)), 2^-9 below the smallest normal 2^-6, ties to even.
"""

from __future__ import annotations

import pytest
import torch

import irshim.ir as ir
from irshim.ir.ops.quant import FP8_MAX, MIN_SCALE, dequantize, group_size_for, scale_tolerance
from irshim.ir.tolerances import assert_close

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
SHAPES = {"0tok": ((0,), 64), "1tok": ((1,), 64), "7x123": ((7,), 123), "2x3x40": ((2, 3), 40), "5x256": ((5,), 256)}
dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
shapes = pytest.mark.parametrize("shape_id", list(SHAPES))
layouts = pytest.mark.parametrize("layout", ["contiguous", "strided"])


def _shape(shape_id):
    lead, hidden = SHAPES[shape_id]
    return (*lead, hidden)


def make(shape, dtype, layout="contiguous", seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    *lead, hidden = shape
    wide = scale * torch.randn((*lead, hidden + (9 if layout == "strided" else 0)), generator=g)
    if len(lead) and lead[0] > 1:
        wide[1] *= 30  # one loud token
    x = wide[..., 3:3 + hidden] if layout == "strided" else wide
    return x.to(dtype)


# ---------------------------------------------------------------- references
def ref_round_e4m3(v: torch.Tensor) -> torch.Tensor:
    """Round float64 values (already within ±448) to the nearest e4m3 value, ties to even."""
    exponent = torch.floor(torch.log2(v.abs().clamp_min(2.0**-30))).clamp(min=-6)
    step = torch.exp2(exponent - 3)
    return torch.round(v / step) * step  # torch.round: half to even


def ref_quant(x64: torch.Tensor, scale64: torch.Tensor) -> torch.Tensor:
    return ref_round_e4m3((x64 / scale64).clamp(-FP8_MAX, FP8_MAX))


def ref_scale(amax64: torch.Tensor) -> torch.Tensor:
    return (amax64 / FP8_MAX).clamp(min=MIN_SCALE)


def ref_rms(x64, w64, eps):
    out = x64 / torch.sqrt((x64 * x64).mean(-1, keepdim=True) + eps)
    return out if w64 is None else out * w64


def check_q(q, scale, ref_q, ref_s, op, dtype, what):
    """Dequantized values within the op's tolerance; scales within scale_tolerance;
    and q itself equal to the float64 reference except at rare rounding ties."""
    assert q.dtype == torch.float8_e4m3fn and scale.dtype == torch.float32
    assert_close(scale, ref_s, scale_tolerance(dtype), what=f"{what} scales")
    per_group = ref_s.dim() == q.dim() and ref_s.shape[-1] > 1
    ref_s64 = ref_s.double().repeat_interleave(q.shape[-1] // ref_s.shape[-1], dim=-1) if per_group else ref_s.double()
    assert_close(dequantize(q, scale), ref_q * ref_s64, op.tolerance(dtype), what=f"{what} dequantized")
    if q.numel():
        differs = (q.double() != ref_q).double().mean().item()
        assert differs <= 2e-3, f"{what}: {differs:.2%} of q differ from the float64 reference"


# ------------------------------------------------------------------ plain quant
@dtypes
@shapes
@layouts
def test_static(dtype, shape_id, layout):
    x = make(_shape(shape_id), dtype, layout)
    scale = torch.tensor([3.0 / FP8_MAX])  # |x| > 3 saturates
    q = ir.ops.static_scaled_fp8_quant(x, scale)
    assert q.shape == x.shape
    ref = ref_quant(x.double(), scale.double())
    check_q(q, scale, ref, scale.double(), ir.ops.static_scaled_fp8_quant, dtype, "static")
    if x.numel():
        assert q.float().abs().max().item() == FP8_MAX  # saturated, not NaN


@dtypes
@shapes
@layouts
def test_dynamic_per_tensor(dtype, shape_id, layout):
    x = make(_shape(shape_id), dtype, layout)
    q, scale = ir.ops.dynamic_scaled_fp8_quant(x)
    assert scale.shape == (1,)
    amax = x.double().abs().max() if x.numel() else torch.tensor(0.0, dtype=torch.float64)
    ref_s = ref_scale(amax).reshape(1)
    check_q(q, scale, ref_quant(x.double(), ref_s), ref_s, ir.ops.dynamic_scaled_fp8_quant, dtype, "per-tensor")


@dtypes
@shapes
@layouts
@pytest.mark.parametrize("ub", [None, 20.0], ids=["no_ub", "ub20"])
def test_dynamic_per_token(dtype, shape_id, layout, ub):
    x = make(_shape(shape_id), dtype, layout)
    scale_ub = None if ub is None else torch.tensor([ub])
    q, scales = ir.ops.dynamic_per_token_scaled_fp8_quant(x, scale_ub)
    assert scales.shape == (*x.shape[:-1], 1)
    amax = x.double().abs().amax(-1, keepdim=True)
    if ub is not None:
        amax = amax.clamp(max=ub)
    ref_s = ref_scale(amax)
    check_q(q, scales, ref_quant(x.double(), ref_s), ref_s, ir.ops.dynamic_per_token_scaled_fp8_quant, dtype,
            "per-token")


@dtypes
@shapes
@layouts
def test_per_token_group(dtype, shape_id, layout):
    shape = _shape(shape_id)
    x = make(shape, dtype, layout)
    group = group_size_for(shape[-1]) if shape[-1] % 8 else 8
    q, scales = ir.ops.per_token_group_fp8_quant(x, group)
    assert scales.shape == (*x.shape[:-1], shape[-1] // group)
    grouped = x.double().reshape(*x.shape[:-1], shape[-1] // group, group)
    ref_s = ref_scale(grouped.abs().amax(-1, keepdim=True))
    ref_q = ref_quant(grouped, ref_s).reshape(x.shape)
    check_q(q, scales, ref_q, ref_s.squeeze(-1), ir.ops.per_token_group_fp8_quant, dtype, "group")


# ------------------------------------------------------------- norm + quant
@dtypes
@shapes
@layouts
def test_rms_norm_static(dtype, shape_id, layout):
    shape = _shape(shape_id)
    x = make(shape, dtype, layout)
    w = (1 + 0.1 * make(shape[-1:], torch.float32, seed=4)).to(dtype)
    scale = torch.tensor([2.0 / FP8_MAX])
    q = ir.ops.rms_norm_static_fp8_quant(x, w, 1e-6, scale)
    y = ref_rms(x.double(), w.double(), 1e-6).to(dtype).double()  # rounded to x's dtype, like the pair
    check_q(q, scale, ref_quant(y, scale.double()), scale.double(), ir.ops.rms_norm_static_fp8_quant, dtype,
            "rms_norm+static")


@dtypes
@shapes
@layouts
def test_fused_add_rms_norm_static(dtype, shape_id, layout):
    shape = _shape(shape_id)
    x, r = make(shape, dtype, layout), make(shape, dtype, layout, seed=3)
    w = (1 + 0.1 * make(shape[-1:], torch.float32, seed=4)).to(dtype)
    scale = torch.tensor([2.0 / FP8_MAX])
    before = x.clone(), r.clone()
    q, residual = ir.ops.fused_add_rms_norm_static_fp8_quant(x, r, w, 1e-6, scale)
    expected_residual = (x.double() + r.double()).to(dtype)
    assert torch.equal(residual, expected_residual)
    y = ref_rms(expected_residual.double(), w.double(), 1e-6).to(dtype).double()
    check_q(q, scale, ref_quant(y, scale.double()), scale.double(), ir.ops.fused_add_rms_norm_static_fp8_quant,
            dtype, "fused_add+static")
    assert torch.equal(x, before[0]) and torch.equal(r, before[1])


@dtypes
@shapes
@layouts
@pytest.mark.parametrize("ub", [None, 2.0], ids=["no_ub", "ub2"])
@pytest.mark.parametrize("with_weight", [True, False], ids=["weight", "noweight"])
def test_rms_norm_dynamic_per_token(dtype, shape_id, layout, ub, with_weight):
    shape = _shape(shape_id)
    x = make(shape, dtype, layout)
    w = (1 + 0.1 * make(shape[-1:], torch.float32, seed=4)).to(dtype) if with_weight else None
    scale_ub = None if ub is None else torch.tensor([ub])
    q, scales = ir.ops.rms_norm_dynamic_per_token_fp8_quant(x, w, 1e-6, scale_ub)
    y = ref_rms(x.double(), None if w is None else w.double(), 1e-6).to(dtype).double()
    amax = y.abs().amax(-1, keepdim=True)
    ref_s = ref_scale(amax if ub is None else amax.clamp(max=ub))
    check_q(q, scales, ref_quant(y, ref_s), ref_s, ir.ops.rms_norm_dynamic_per_token_fp8_quant, dtype,
            "rms_norm+per-token")


@dtypes
def test_fused_ops_equal_the_unfused_pair_bit_for_bit(dtype):
    ops = ir.ops
    x, r, w, eps, scale = ops.fused_add_rms_norm_static_fp8_quant.generate_inputs(9, 96, dtype)
    assert torch.equal(ops.rms_norm_static_fp8_quant(x, w, eps, scale),
                       ops.static_scaled_fp8_quant(ops.rms_norm(x, w, eps), scale))
    q, res = ops.fused_add_rms_norm_static_fp8_quant(x, r, w, eps, scale)
    out, res2 = ops.fused_add_rms_norm(x, r, w, eps)
    assert torch.equal(q, ops.static_scaled_fp8_quant(out, scale)) and torch.equal(res, res2)
    ub = torch.tensor([2.0])
    q, s = ops.rms_norm_dynamic_per_token_fp8_quant(x, w, eps, ub)
    q2, s2 = ops.dynamic_per_token_scaled_fp8_quant(ops.rms_norm(x, w, eps), ub)
    assert torch.equal(q, q2) and torch.equal(s, s2)


# ------------------------------------------------------------ hand-computed
def test_hand_computed_values():
    q = ir.ops.static_scaled_fp8_quant(torch.tensor([1.0, -2.0, 1000.0, 17.0, 19.0, 0.0]), torch.tensor([1.0]))
    # 1000 saturates at 448; 17 and 19 are ties between e4m3 neighbours (step 2 in [16, 32)): to even.
    assert q.float().tolist() == [1.0, -2.0, 448.0, 16.0, 20.0, 0.0]
    assert ir.ops.static_scaled_fp8_quant(torch.tensor([3.0]), torch.tensor(0.5)).float().item() == 6.0

    q, s = ir.ops.dynamic_scaled_fp8_quant(torch.tensor([[448.0, -224.0], [0.0, 1.0]]))
    assert s.tolist() == [1.0] and q.float().tolist() == [[448.0, -224.0], [0.0, 1.0]]

    q, s = ir.ops.dynamic_per_token_scaled_fp8_quant(torch.tensor([[0.0, 0.0], [896.0, 1.0]]))
    # An all-zero row gets the minimum scale 1/(448*512) and quantizes to zeros.
    assert s.flatten().tolist() == [pytest.approx(MIN_SCALE, rel=1e-7), 2.0]
    assert q.float().tolist() == [[0.0, 0.0], [448.0, 0.5]]

    q, s = ir.ops.dynamic_per_token_scaled_fp8_quant(torch.tensor([[896.0, 1.0]]), torch.tensor([448.0]))
    assert s.tolist() == [[1.0]] and q.float().tolist() == [[448.0, 1.0]]  # amax capped at 448: 896 saturates

    q, s = ir.ops.per_token_group_fp8_quant(torch.tensor([[4.48, 1.0, 0.0, 0.0]]), 2)
    assert s[0, 0].item() == pytest.approx(0.01) and s[0, 1].item() == pytest.approx(MIN_SCALE)
    assert q.float().tolist()[0][2:] == [0.0, 0.0]

    # rms of [3, 4] is sqrt(12.5); normalised [0.8485, 1.1314] -> /scale 0.25 -> [3.394, 4.525] -> e4m3 [3.5, 4.5]
    q = ir.ops.rms_norm_static_fp8_quant(torch.tensor([[3.0, 4.0]]), None, 0.0, torch.tensor([0.25]))
    assert q.float().tolist() == [[3.5, 4.5]]


def test_dequantize_broadcasts_every_scale_layout():
    q = torch.tensor([[1.0, 2.0, 3.0, 4.0]]).to(torch.float8_e4m3fn)
    assert dequantize(q, torch.tensor([2.0])).tolist() == [[2.0, 4.0, 6.0, 8.0]]
    assert dequantize(q, torch.tensor([[0.5]])).tolist() == [[0.5, 1.0, 1.5, 2.0]]
    assert dequantize(q, torch.tensor([[1.0, 10.0]])).tolist() == [[1.0, 2.0, 30.0, 40.0]]


def test_bad_arguments_say_what_was_expected():
    with pytest.raises(ValueError, match="group_size 3 must be positive and divide the hidden size 8"):
        ir.ops.per_token_group_fp8_quant(torch.zeros(2, 8), 3)
    with pytest.raises(ValueError, match=r"one element; got shape \(2,\)"):
        ir.ops.static_scaled_fp8_quant(torch.zeros(2, 8), torch.ones(2))


def test_tolerances_have_reasons():
    for op in (ir.ops.static_scaled_fp8_quant, ir.ops.rms_norm_dynamic_per_token_fp8_quant):
        assert "dequantized" in op.tolerance(torch.bfloat16).reason
        assert "raw q" in op.tolerance(torch.float8_e4m3fn).reason
