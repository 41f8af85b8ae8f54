"""Every op's native semantics against an independent float64 reference.

References are written out here from the formulas (not by calling irshim), on
odd hidden sizes, 0 and 1 tokens, 3-D inputs, non-contiguous rows, and
fp32/fp16/bf16.
"""

from __future__ import annotations

import math

import pytest
import torch

import irshim.ir as ir
from irshim.ir.tolerances import assert_close

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
SHAPES = {  # id -> (leading dims, hidden)
    "0tok": ((0,), 64),
    "1tok": ((1,), 64),
    "7x123": ((7,), 123),
    "2x3x40": ((2, 3), 40),
}


def _randn(shape, dtype, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(shape, generator=g)).to(dtype)


def _strided(shape, dtype, seed=0):
    """Rows with a stride larger than the row: a view into a wider buffer."""
    *lead, hidden = shape
    wide = _randn((*lead, hidden + 9), dtype, seed)
    view = wide[..., 3 : 3 + hidden]
    assert view.stride(-2) == hidden + 9
    return view


def make(shape, dtype, layout, seed=0):
    return _strided(shape, dtype, seed) if layout == "strided" else _randn(shape, dtype, seed)


# ---------------------------------------------------------------- references
def ref_rms(x64, w64, eps, offset=0.0):
    out = x64 / torch.sqrt((x64 * x64).mean(-1, keepdim=True) + eps)
    return out if w64 is None else out * (w64 + offset)


def ref_gelu_erf(a):
    return 0.5 * a * (1 + torch.erf(a / math.sqrt(2)))


def ref_gelu_tanh(a):
    return 0.5 * a * (1 + torch.tanh(math.sqrt(2 / math.pi) * (a + 0.044715 * a**3)))


def ref_sigmoid(a):
    return 1 / (1 + torch.exp(-a))


GATED = {
    "silu_and_mul": (lambda a, b: a * ref_sigmoid(a) * b, ()),
    "mul_and_silu": (lambda a, b: a * b * ref_sigmoid(b), ()),
    "gelu_and_mul": (lambda a, b: ref_gelu_erf(a) * b, ()),
    "gelu_and_mul[tanh]": (lambda a, b: ref_gelu_tanh(a) * b, ("tanh",)),
    "fatrelu_and_mul": (lambda a, b: torch.where(a > 0.5, a, torch.zeros_like(a)) * b, (0.5,)),
}
PLAIN = {
    "gelu_new": ref_gelu_tanh,
    "gelu_fast": lambda a: 0.5 * a * (1 + torch.tanh(a * 0.7978845608 * (1 + 0.044715 * a * a))),
    "quick_gelu": lambda a: a * ref_sigmoid(1.702 * a),
    "relu2": lambda a: torch.clamp(a, min=0) ** 2,
}

params = pytest.mark.parametrize(
    "dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch.")
)
shapes = pytest.mark.parametrize("shape_id", list(SHAPES))
layouts = pytest.mark.parametrize("layout", ["contiguous", "strided"])


def _shape(shape_id):
    lead, hidden = SHAPES[shape_id]
    return (*lead, hidden)


@params
@shapes
@layouts
@pytest.mark.parametrize("with_weight", [True, False], ids=["weight", "noweight"])
def test_rms_norm(dtype, shape_id, layout, with_weight):
    shape = _shape(shape_id)
    x = make(shape, dtype, layout)
    w = _randn(shape[-1:], dtype, seed=5, scale=0.5) + 1 if with_weight else None
    out = ir.ops.rms_norm(x, w, 1e-5)
    expected = ref_rms(x.double(), None if w is None else w.double(), 1e-5)
    assert out.dtype == dtype and out.shape == x.shape
    assert_close(out, expected, ir.ops.rms_norm.tolerance(dtype), what="rms_norm")


@params
@shapes
@layouts
def test_gemma_rms_norm(dtype, shape_id, layout):
    shape = _shape(shape_id)
    x = make(shape, dtype, layout)
    w = _randn(shape[-1:], dtype, seed=5, scale=0.3)
    out = ir.ops.gemma_rms_norm(x, w, 1e-6)
    assert_close(out, ref_rms(x.double(), w.double(), 1e-6, offset=1.0), ir.ops.gemma_rms_norm.tolerance(dtype))


@params
@shapes
@layouts
@pytest.mark.parametrize("name, offset", [("fused_add_rms_norm", 0.0), ("gemma_fused_add_rms_norm", 1.0)])
def test_fused_add_rms_norm(dtype, shape_id, layout, name, offset):
    op = ir.get_op(name)
    shape = _shape(shape_id)
    x, r = make(shape, dtype, layout), make(shape, dtype, layout, seed=3)
    w = _randn(shape[-1:], dtype, seed=5, scale=0.3) + (1 - offset)
    x_before, r_before = x.clone(), r.clone()
    out, residual = op(x, r, w, 1e-6)
    # The residual is rounded to x's dtype before it is normalised (the contract).
    expected_residual = (x.double() + r.double()).to(dtype)
    assert torch.equal(residual, expected_residual)
    assert_close(out, ref_rms(expected_residual.double(), w.double(), 1e-6, offset), op.tolerance(dtype))
    assert torch.equal(x, x_before) and torch.equal(r, r_before)  # default overload is functional


@params
@shapes
@layouts
@pytest.mark.parametrize("case", list(GATED))
def test_gated_activations(dtype, shape_id, layout, case):
    name = case.split("[")[0]
    reference, extra = GATED[case]
    lead, hidden = SHAPES[shape_id]
    x = make((*lead, 2 * hidden), dtype, layout)
    before = x.clone()
    out = ir.get_op(name)(x, *extra)
    d = hidden
    expected = reference(x[..., :d].double(), x[..., d:].double())
    assert out.shape == (*lead, d) and out.dtype == dtype
    assert torch.equal(x, before)  # (float32: the halves are views of x, the product is written in place)
    assert_close(out, expected, ir.get_op(name).tolerance(dtype), what=case)


@params
@shapes
@layouts
@pytest.mark.parametrize("name", list(PLAIN))
def test_plain_activations(dtype, shape_id, layout, name):
    x = make(_shape(shape_id), dtype, layout)
    out = ir.get_op(name)(x)
    assert out.shape == x.shape and out.dtype == dtype
    assert_close(out, PLAIN[name](x.double()), ir.get_op(name).tolerance(dtype), what=name)


def test_hand_computed_values():
    x = torch.tensor([[3.0, 4.0]])
    # mean of squares 12.5 -> rms sqrt(12.5); with eps 0.
    assert torch.allclose(ir.ops.rms_norm(x, None, 0.0), x / math.sqrt(12.5))
    assert ir.ops.relu2(torch.tensor([-2.0, 3.0])).tolist() == [0.0, 9.0]
    assert ir.ops.fatrelu_and_mul(torch.tensor([[0.4, 0.6, 10.0, 10.0]]), 0.5).tolist() == [[0.0, 6.0]]
    out, residual = ir.ops.fused_add_rms_norm(torch.tensor([[1.0, 2.0]]), torch.tensor([[2.0, 2.0]]), None, 0.0)
    assert residual.tolist() == [[3.0, 4.0]]


def test_gated_activation_with_odd_width_is_refused():
    with pytest.raises(ValueError, match="odd size 5"):
        ir.ops.silu_and_mul(torch.zeros(2, 5))


def test_gelu_and_mul_rejects_unknown_approximation():
    with pytest.raises(ValueError, match=r"approximate must be one of \('none', 'tanh'\)"):
        ir.ops.gelu_and_mul(torch.zeros(2, 4), "fast")
