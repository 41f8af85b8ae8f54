"""Compiler path on CPU: capture, lowering, in-place functionalization, fusion, cache keys.

Most tests stop after AOTAutograd (no C++ compile) and look at the graphs; two
run Inductor's C++ backend end to end on small shapes.
"""

from __future__ import annotations

import operator

import pytest
import torch
from torch import Tensor
from torch._functorch.aot_autograd import aot_module_simplified

import irshim.ir as ir
from irshim.ir import compile as irc
from irshim.ir.tolerances import assert_close


class GraphSpy:
    """A backend that keeps Dynamo's graph (after the IR passes) and AOTAutograd's."""

    def __init__(self):
        self.dynamo = None
        self.aot = None

    def __call__(self, gm, example_inputs):
        self.dynamo = gm

        def keep(graph_module, _inputs):
            self.aot = graph_module
            return graph_module

        return aot_module_simplified(gm, example_inputs, fw_compiler=keep)


def targets(gm) -> list:
    return [n.target for n in gm.graph.nodes if n.op in ("call_function", "call_method")]


def compiled(fn, spy, **kwargs):
    torch._dynamo.reset()
    return torch.compile(fn, backend=irc.backend(inner=spy, **kwargs), fullgraph=True)


def inputs(tokens=4, hidden=16, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(tokens, hidden, generator=g).to(dtype)
    r = torch.randn(tokens, hidden, generator=g).to(dtype)
    w = (1 + 0.1 * torch.randn(hidden, generator=g)).to(dtype)
    return x, r, w


def block(x, r, w):
    s = x + r
    y = ir.ops.rms_norm(s, w, 1e-6)
    h = ir.ops.silu_and_mul(torch.cat([y, y * 2], dim=-1))
    return h + s


# ------------------------------------------------------------------ capture
def test_capture_gives_one_node_per_ir_call():
    graphs = []

    def keep(gm, _):
        graphs.append(gm)
        return gm

    def fn(x, r, w):
        a, b = ir.ops.fused_add_rms_norm(x, r, w, 1e-6)
        c, d = ir.ops.fused_add_rms_norm.maybe_inplace(a, b, w, 1e-6)
        return ir.ops.gelu_and_mul(torch.cat([c, d], -1), "tanh")

    torch._dynamo.reset()
    torch.compile(fn, backend=keep, fullgraph=True)(*inputs())
    found = targets(graphs[0])
    assert found.count(ir.ops.fused_add_rms_norm.torch_op) == 1
    assert found.count(ir.ops.fused_add_rms_norm.maybe_inplace.torch_op) == 1
    assert found.count(ir.ops.gelu_and_mul.torch_op) == 1


# ----------------------------------------------------------------- lowering
@pytest.fixture
def alt_rms_norm():
    """A second rms_norm provider in plain torch, recognisable in graphs (uses aten.var_mean? no: norm)."""
    op = ir.ops.rms_norm
    if "test_alt" not in op._impls:

        @op.register_impl("test_alt", supports_args=lambda x, weight, epsilon: x.shape[-1] % 2 == 0)
        def test_alt(x: Tensor, weight: Tensor | None, epsilon: float) -> Tensor:
            x32 = x.float()
            scale = torch.linalg.vector_norm(x32, dim=-1, keepdim=True) / x.shape[-1] ** 0.5
            out = x32 / torch.sqrt(scale * scale + epsilon)
            return (out if weight is None else out * weight.float()).to(x.dtype)

    return op


def test_lowering_to_native_traces_it_inline():
    spy = GraphSpy()
    x, r, w = inputs()
    out = compiled(block, spy, fusion=False)(x, r, w)
    assert_close(out, block(x, r, w), ir.ops.rms_norm.tolerance(torch.float32))
    lowered = [t for t in targets(spy.dynamo) if isinstance(t, irc.LoweredImpl)]
    assert [t.__name__ for t in lowered] == ["irshim_rms_norm__native", "irshim_silu_and_mul__native"]
    aot = targets(spy.aot)
    assert torch.ops.aten.rsqrt.default in aot and torch.ops.aten.silu.default in aot
    assert not any(getattr(t, "namespace", None) == "irshim" for t in aot)
    assert [(s.op, s.provider) for s in irc.last_lowering()] == [("rms_norm", "native"), ("silu_and_mul", "native")]
    assert spy.dynamo.meta["irshim_lowering"] == irc.last_lowering()


def test_priority_at_compile_time_decides(alt_rms_norm):
    spy = GraphSpy()
    x, r, w = inputs()
    with alt_rms_norm.set_priority(["test_alt", "native"]):
        out = compiled(block, spy, fusion=False)(x, r, w)
    assert ("rms_norm", "test_alt") in [(s.op, s.provider) for s in irc.last_lowering()]
    assert torch.ops.aten.linalg_vector_norm.default in targets(spy.aot)
    assert_close(out, block(x, r, w), ir.ops.rms_norm.tolerance(torch.float32))


def test_supports_args_is_judged_on_the_nodes_shapes(alt_rms_norm):
    spy = GraphSpy()
    x, r, w = inputs(hidden=15)  # odd hidden: test_alt refuses
    with alt_rms_norm.set_priority(["test_alt", "native"]):
        compiled(block, spy, fusion=False)(x, r, w)
    assert ("rms_norm", "native") in [(s.op, s.provider) for s in irc.last_lowering()]


def test_passes_uuid_changes_with_priority_and_providers(alt_rms_norm, fresh_name):
    @ir.register_op(name=fresh_name)
    def f(x: Tensor) -> Tensor:
        return x

    passes = irc.IrPasses()
    before = passes.uuid()
    assert passes.uuid() == before
    with alt_rms_norm.set_priority(["test_alt", "native"]):
        assert passes.uuid() != before
    assert passes.uuid() == before

    @f.register_impl("other")
    def other(x: Tensor) -> Tensor:
        return x + 0

    assert passes.uuid() == before  # a provider nobody lists changes nothing
    with f.set_priority(["other"]):
        assert passes.uuid() != before
    assert irc.IrPasses(fusion=False).uuid() != before


def test_unlowerable_node_is_reported_and_keeps_working(alt_rms_norm, caplog):
    from torch._subclasses.fake_tensor import FakeTensor

    def broken(x, weight, epsilon):
        if isinstance(x, FakeTensor):
            raise RuntimeError("cannot judge fake tensors")
        return True

    impl = alt_rms_norm._impls["test_alt"]
    saved = impl._supports_args
    impl._supports_args = broken
    try:
        spy = GraphSpy()
        x, r, w = inputs()
        with alt_rms_norm.set_priority(["test_alt", "native"]):
            with caplog.at_level("WARNING"):
                compiled(block, spy, fusion=False)(x, r, w)
    finally:
        impl._supports_args = saved
    unlowered = [s for s in irc.last_lowering() if s.provider is None]
    assert [(s.op, s.reason) for s in unlowered] == [("rms_norm", "RuntimeError: cannot judge fake tensors")]
    assert "left unlowered" in caplog.text
    assert ir.ops.rms_norm.torch_op in targets(spy.aot)  # still the IR op: dispatches at run time


# ------------------------------------------------------------------ in place
def test_maybe_inplace_is_functionalized():
    def fn(x, r, w):
        out, residual = ir.ops.fused_add_rms_norm.maybe_inplace(x * 1, r * 1, w, 1e-6)
        return out + residual

    spy = GraphSpy()
    x, r, w = inputs()
    out = compiled(fn, spy)(x, r, w)
    expected_out, expected_res = ir.ops.fused_add_rms_norm(x, r, w, 1e-6)
    assert_close(out, expected_out + expected_res, ir.ops.rms_norm.tolerance(torch.float32))
    assert [s.overload for s in irc.last_lowering()] == ["default"]


def test_reading_a_donated_value_fails_naming_the_node():
    def fn(x, r, w):
        s = x * 1
        out, residual = ir.ops.fused_add_rms_norm.maybe_inplace(s, r * 1, w, 1e-6)
        return out + s  # s was donated: its contents are undefined here

    with pytest.raises(Exception) as info:
        compiled(fn, GraphSpy())(*inputs())
    message = str(info.value)
    assert "DonationError" in type(info.value).__name__ + message
    assert "fused_add_rms_norm.maybe_inplace" in message and "donates argument 'x'" in message


# -------------------------------------------------------------------- fusion
def test_fusion_replaces_add_and_norm_and_keeps_results():
    spy = GraphSpy()
    x, r, w = inputs(dtype=torch.bfloat16)
    out = compiled(block, spy)(x, r, w)
    names = [t.__name__ for t in targets(spy.dynamo) if isinstance(t, irc.LoweredImpl)]
    assert names == ["irshim_fused_add_rms_norm__native", "irshim_silu_and_mul__native"]
    assert operator.add not in targets(spy.dynamo)[:1]  # the residual add is gone
    assert_close(out, block(x, r, w), ir.ops.fused_add_rms_norm.tolerance(torch.bfloat16))


@pytest.mark.parametrize("spelling", ["operator", "torch.add", "method"])
def test_fusion_graph_before_and_after(spelling):
    add = {"operator": lambda a, b: a + b, "torch.add": torch.add, "method": lambda a, b: a.add(b)}[spelling]

    def fn(x, r, w):
        s = add(x, r)
        return ir.ops.gemma_rms_norm(s, w, 1e-6), s * 3

    graphs = {}

    def keep(gm, _):
        graphs["before"] = [str(t) for t in targets(gm)]
        fused = irc.fuse_residual_add_norm(gm.graph)
        gm.recompile()
        graphs["after"] = [str(t) for t in targets(gm)]
        graphs["fused"] = fused
        return gm

    torch._dynamo.reset()
    x, r, w = inputs()
    out, tripled = torch.compile(fn, backend=keep, fullgraph=True)(x, r, w)
    assert graphs["fused"] == 1
    assert "irshim.gemma_rms_norm.default" in graphs["before"]
    assert "irshim.gemma_fused_add_rms_norm.default" in graphs["after"]
    assert "irshim.gemma_rms_norm.default" not in graphs["after"]
    ref_out, ref_tripled = fn(x, r, w)
    assert_close(out, ref_out, ir.ops.gemma_rms_norm.tolerance(torch.float32))
    assert torch.equal(tripled, ref_tripled)


def test_fusion_skips_broadcasting_adds():
    def fn(x, bias, w):
        return ir.ops.rms_norm(x + bias, w, 1e-6)

    x, _, w = inputs()
    bias = torch.randn(16)
    spy = GraphSpy()
    out = compiled(fn, spy)(x, bias, w)
    assert [s.op for s in irc.last_lowering()] == ["rms_norm"]
    assert_close(out, fn(x, bias, w), ir.ops.rms_norm.tolerance(torch.float32))


# ------------------------------------------------------------ real Inductor
def test_inductor_cpp_backend_end_to_end():
    x, r, w = inputs(tokens=3, hidden=24)
    torch._dynamo.reset()
    fn = torch.compile(block, backend=irc.backend(), fullgraph=True)
    assert_close(fn(x, r, w), block(x, r, w), ir.ops.fused_add_rms_norm.tolerance(torch.float32))
    assert [s.op for s in irc.last_lowering()] == ["fused_add_rms_norm", "silu_and_mul"]


def test_pre_grad_custom_pass_in_an_existing_inductor_setup(alt_rms_norm):
    x, r, w = inputs(tokens=3, hidden=24)
    torch._dynamo.reset()
    with torch._inductor.config.patch(pre_grad_custom_pass=irc.IrPasses(fusion=False), fx_graph_cache=False):
        with alt_rms_norm.set_priority(["test_alt", "native"]):
            out = torch.compile(block, fullgraph=True)(x, r, w)
    assert ("rms_norm", "test_alt") in [(s.op, s.provider) for s in irc.last_lowering()]
    assert_close(out, block(x, r, w), ir.ops.rms_norm.tolerance(torch.float32))


def test_dynamic_token_count():
    spy = GraphSpy()
    torch._dynamo.reset()
    fn = torch.compile(block, backend=irc.backend(inner=spy), fullgraph=True, dynamic=True)
    for tokens in (3, 5, 9):
        x, r, w = inputs(tokens=tokens)
        assert_close(fn(x, r, w), block(x, r, w), ir.ops.fused_add_rms_norm.tolerance(torch.float32))
    assert [s.op for s in irc.last_lowering()] == ["fused_add_rms_norm", "silu_and_mul"]
