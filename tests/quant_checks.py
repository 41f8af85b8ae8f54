"""The FP8 quant ops' comparison with native, shared by the kernel tests (importable:
pytest's ``pythonpath`` holds ``tests``): dequantized values at the op's tolerance, scales
at `scale_tolerance`, and q equal to native's except at rare rounding boundaries."""

from __future__ import annotations

import torch

import irshim.ir as ir
from irshim.ir.ops.quant import dequantize, scale_tolerance
from irshim.ir.tolerances import assert_close

NORM_OPS = ["rms_norm_static_fp8_quant", "fused_add_rms_norm_static_fp8_quant",
            "rms_norm_dynamic_per_token_fp8_quant"]


def _outputs(op, result):
    """(q, scale, residual or None) of any quant op's result."""
    name = op.name
    args_scale = None
    if name in ("static_scaled_fp8_quant", "rms_norm_static_fp8_quant"):
        return result, args_scale, None
    if name == "fused_add_rms_norm_static_fp8_quant":
        return result[0], args_scale, result[1]
    return result[0], result[1], None


def _static_scale_of(op, args):
    return args[1] if op.name == "static_scaled_fp8_quant" else args[-1]


def check(op, args, actual, what=""):
    dtype = args[0].dtype
    expected = op.native(*args)
    q, s, res = _outputs(op, actual)
    eq, es, eres = _outputs(op, expected)
    if s is None:
        s = es = _static_scale_of(op, args)
    label = f"{op.name}/triton {what}"
    assert q.dtype == torch.float8_e4m3fn and q.shape == eq.shape and q.is_contiguous()
    assert s.dtype == torch.float32 and s.shape == es.shape
    assert_close(s, es, scale_tolerance(dtype), what=f"{label} scales")
    assert_close(dequantize(q, s), dequantize(eq, es), op.tolerance(dtype), what=f"{label} dequantized")
    if q.numel():
        differs = (q.float() != eq.float()).double().mean().item()
        # Plain quant is bit-exact (same IEEE division and rounding); a fused norm may round
        # its output one ulp of x's dtype away, which moves a few q across a boundary.
        limit = 0.0 if op.name not in NORM_OPS else 0.02
        assert differs <= limit, f"{label}: {differs:.2%} of q differ from native"
    if res is not None:
        assert_close(res, eres, ir.ops.fused_add_rms_norm.tolerance(dtype), what=f"{label} residual")
