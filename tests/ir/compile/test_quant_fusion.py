"""Norm + FP8 quant fusion on IR nodes (CPU): graphs before and after, results within tolerance."""

from __future__ import annotations

import pytest
import torch
from torch._functorch.aot_autograd import aot_module_simplified

import irshim.ir as ir
from irshim.ir import compile as irc
from irshim.ir.ops.quant import FP8_MAX, dequantize, scale_tolerance
from irshim.ir.tolerances import Tolerance, assert_close

OPS = ir.ops


def inputs(tokens=4, hidden=32, dtype=torch.bfloat16):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(tokens, hidden, generator=g).to(dtype)
    r = torch.randn(tokens, hidden, generator=g).to(dtype)
    w = (1 + 0.1 * torch.randn(hidden, generator=g)).to(dtype)
    return x, r, w, torch.tensor([2.0 / FP8_MAX])


def ir_targets(gm) -> list[str]:
    """IR op names (and lowered providers) in graph order; getitems and plain aten ops left out."""
    names = []
    for n in gm.graph.nodes:
        if n.op != "call_function":
            continue
        if isinstance(n.target, irc.LoweredImpl):
            names.append(n.target.__name__)
        elif getattr(n.target, "namespace", None) == "irshim":
            names.append(n.target._opname)
    return names


def before_and_after(fn, *args):
    """Compile `fn`; return (IR ops before the fusion passes, after them, fusions, compiled result)."""
    seen = {}

    def keep(gm, _):
        seen["before"] = ir_targets(gm)
        seen["fused"] = irc.fuse_residual_add_norm(gm.graph) + irc.fuse_norm_quant(gm.graph)
        gm.graph.lint()
        gm.recompile()
        seen["after"] = ir_targets(gm)
        return gm

    torch._dynamo.reset()
    out = torch.compile(fn, backend=keep, fullgraph=True)(*args)
    return seen["before"], seen["after"], seen["fused"], out


def assert_quant_close(actual, expected, op, dtype, what):
    (q, s), (eq, es) = actual, expected
    assert q.dtype == torch.float8_e4m3fn
    assert_close(s, es, scale_tolerance(dtype), what=f"{what} scales")
    assert_close(dequantize(q, s), dequantize(eq, es), op.tolerance(dtype), what=f"{what} dequantized")


# ---------------------------------------------------------- one per pattern
def test_rms_norm_then_static_quant():
    def fn(x, w, scale):
        return OPS.static_scaled_fp8_quant(OPS.rms_norm(x, w, 1e-6), scale)

    x, _, w, scale = inputs()
    before, after, fused, q = before_and_after(fn, x, w, scale)
    assert before == ["rms_norm", "static_scaled_fp8_quant"]
    assert after == ["rms_norm_static_fp8_quant"] and fused == 1
    assert torch.equal(q.view(torch.uint8), fn(x, w, scale).view(torch.uint8))  # native is the composition


def test_rms_norm_then_dynamic_per_token_quant():
    def fn(x, w, ub):
        q, s = OPS.dynamic_per_token_scaled_fp8_quant(OPS.rms_norm(x, w, 1e-6), ub)
        return q, s * 2

    x, _, w, _ = inputs(dtype=torch.float16)
    ub = torch.tensor([2.5])
    before, after, fused, (q, s2) = before_and_after(fn, x, w, ub)
    assert before == ["rms_norm", "dynamic_per_token_scaled_fp8_quant"]
    assert after == ["rms_norm_dynamic_per_token_fp8_quant"] and fused == 1
    eq, es2 = fn(x, w, ub)
    assert_quant_close((q, s2 / 2), (eq, es2 / 2), OPS.rms_norm_dynamic_per_token_fp8_quant, torch.float16,
                       "per-token")


def test_fused_add_rms_norm_then_static_quant_keeps_the_residual():
    def fn(x, r, w, scale):
        out, residual = OPS.fused_add_rms_norm(x, r, w, 1e-6)
        early = residual * 3  # the residual is read before the quant
        return OPS.static_scaled_fp8_quant(out, scale), early, residual

    args = inputs()
    before, after, fused, (q, early, residual) = before_and_after(fn, *args)
    assert before == ["fused_add_rms_norm", "static_scaled_fp8_quant"]
    assert after == ["fused_add_rms_norm_static_fp8_quant"] and fused == 1
    eq, e_early, e_res = fn(*args)
    assert torch.equal(q.view(torch.uint8), eq.view(torch.uint8))
    assert torch.equal(early, e_early) and torch.equal(residual, e_res)


def test_residual_add_then_norm_then_quant_fuses_twice():
    def fn(x, r, w, scale):
        s = x + r
        return OPS.static_scaled_fp8_quant(OPS.rms_norm(s, w, 1e-6), scale), s

    args = inputs()
    before, after, fused, (q, s) = before_and_after(fn, *args)
    assert before == ["rms_norm", "static_scaled_fp8_quant"]
    assert after == ["fused_add_rms_norm_static_fp8_quant"] and fused == 2
    eq, es = fn(*args)
    assert torch.equal(q.view(torch.uint8), eq.view(torch.uint8)) and torch.equal(s, es)


# ----------------------------------------------------------- non-matches
def test_norm_output_with_another_user_is_not_fused():
    def fn(x, w, scale):
        y = OPS.rms_norm(x, w, 1e-6)
        return OPS.static_scaled_fp8_quant(y, scale), y + 1

    x, _, w, scale = inputs()
    before, after, fused, _ = before_and_after(fn, x, w, scale)
    assert before == after == ["rms_norm", "static_scaled_fp8_quant"] and fused == 0


def test_quants_without_a_fused_form_are_left_alone():
    def fn(x, r, w):
        a = OPS.dynamic_scaled_fp8_quant(OPS.rms_norm(x, w, 1e-6))                 # per-tensor dynamic
        b = OPS.per_token_group_fp8_quant(OPS.gemma_rms_norm(r, w, 1e-6), 8)        # group, gemma
        return a, b

    x, r, w, _ = inputs()
    before, after, fused, _ = before_and_after(fn, x, r, w)
    assert before == after and fused == 0


def test_scale_computed_after_the_fused_add_norm_is_not_hoisted():
    def fn(x, r, w, amax):
        out, residual = OPS.fused_add_rms_norm(x, r, w, 1e-6)
        scale = residual.float().abs().amax().reshape(1) / FP8_MAX  # depends on the norm's residual
        return OPS.static_scaled_fp8_quant(out, scale), residual

    x, r, w, _ = inputs()
    before, after, fused, (q, residual) = before_and_after(fn, x, r, w, None)
    assert after == before and fused == 0
    eq, _ = fn(x, r, w, None)
    assert torch.equal(q.view(torch.uint8), eq.view(torch.uint8))


# ------------------------------------------------------ a decoder layer
class Fp8DecoderLayer(torch.nn.Module):
    """A Llama-style layer with FP8 activations: static-scale quant before the QKV and
    O projections' stand-ins, dynamic per-token quant before the MLP (dequantized matmuls)."""

    def __init__(self, hidden=64, inter=96, dtype=torch.bfloat16):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.w_in = torch.nn.Parameter((1 + 0.1 * torch.randn(hidden, generator=g)).to(dtype), requires_grad=False)
        self.w_post = torch.nn.Parameter((1 + 0.1 * torch.randn(hidden, generator=g)).to(dtype), requires_grad=False)
        self.qkv = torch.nn.Parameter(0.1 * torch.randn(hidden, hidden, generator=g), requires_grad=False)
        self.up = torch.nn.Parameter(0.1 * torch.randn(hidden, 2 * inter, generator=g), requires_grad=False)
        self.down = torch.nn.Parameter(0.1 * torch.randn(inter, hidden, generator=g), requires_grad=False)
        self.register_buffer("in_scale", torch.tensor([3.0 / FP8_MAX]))

    def forward(self, x, residual):
        dtype = x.dtype
        s = x + residual
        q = OPS.static_scaled_fp8_quant(OPS.rms_norm(s, self.w_in, 1e-6), self.in_scale)
        attn = ((q.float() * self.in_scale) @ self.qkv).to(dtype)         # attention stand-in
        out, residual = OPS.fused_add_rms_norm(attn, s, self.w_post, 1e-6)
        q2, scales = OPS.dynamic_per_token_scaled_fp8_quant(out, None)
        h = OPS.silu_and_mul(((q2.float() * scales) @ self.up).to(dtype))
        return (h.float() @ self.down).to(dtype), residual


def test_decoder_layer_graph_before_and_after_and_results():
    layer = Fp8DecoderLayer()
    x, r, _, _ = inputs(tokens=5, hidden=64)
    before, after, fused, (out, residual) = before_and_after(layer, x, r)
    assert before == ["rms_norm", "static_scaled_fp8_quant", "fused_add_rms_norm",
                      "dynamic_per_token_scaled_fp8_quant", "silu_and_mul"]
    # fused_add_rms_norm + dynamic per-token has no fused op: the add+norm pair stays fused, the quant separate.
    assert after == ["fused_add_rms_norm_static_fp8_quant", "fused_add_rms_norm",
                     "dynamic_per_token_scaled_fp8_quant", "silu_and_mul"]
    assert fused == 2
    e_out, e_res = layer(x, r)
    assert torch.equal(residual, e_res)
    # Same semantics on both sides (native is the composition): equal up to matmul order.
    assert_close(out, e_out, Tolerance(1e-2, 1.6e-2, "bf16 output of fp32 matmuls"), what="layer output")


def test_decoder_layer_through_the_backend_lowers_the_fused_ops():
    layer = Fp8DecoderLayer(dtype=torch.float32)
    x, r, _, _ = inputs(tokens=3, hidden=64, dtype=torch.float32)
    aot = {}

    def spy(gm, example_inputs):
        def keep(graph_module, _):
            aot["gm"] = graph_module
            return graph_module
        return aot_module_simplified(gm, example_inputs, fw_compiler=keep)

    torch._dynamo.reset()
    out, residual = torch.compile(layer, backend=irc.backend(inner=spy), fullgraph=True)(x, r)
    lowered = [(s.op, s.provider) for s in irc.last_lowering()]
    assert ("fused_add_rms_norm_static_fp8_quant", "native") in lowered
    assert not any(getattr(n.target, "namespace", None) == "irshim" for n in aot["gm"].graph.nodes)
    e_out, e_res = layer(x, r)
    assert torch.equal(residual, e_res)
    assert_close(out, e_out, Tolerance(1e-4, 1e-4, "fp32 matmuls in another order"), what="layer output")


def test_passes_uuid_covers_the_quant_fusion_source():
    import importlib

    backend_module = importlib.import_module("irshim.ir.compile.backend")

    assert any(p.name == "quant_fusion.py" for p in backend_module._SOURCES)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_dynamic_shapes_keep_fusing(dtype):
    def fn(x, w, ub):
        return OPS.dynamic_per_token_scaled_fp8_quant(OPS.rms_norm(x, w, 1e-6), ub)

    torch._dynamo.reset()
    compiled = torch.compile(fn, backend=irc.backend(inner="aot_eager"), fullgraph=True, dynamic=True)
    ub = torch.tensor([2.5])
    for tokens in (3, 6):
        x, _, w, _ = inputs(tokens=tokens, dtype=dtype)
        assert_quant_close(compiled(x, w, ub), fn(x, w, ub), OPS.rms_norm_dynamic_per_token_fp8_quant, dtype,
                           f"{tokens} tokens")
    assert [s.op for s in irc.last_lowering()] == ["rms_norm_dynamic_per_token_fp8_quant"]

