"""The hot paths' caches: the `off`/`on`/sampled registries follow every change of settings, and
the `on` runners read a layer's attributes exactly as getattr would."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn as nn

import irshim.compat as compat
from irshim.compat import CustomOp, dispatch
from irshim.compat import flags as flags_module
from irshim.compat.layers import RMSNorm, SiluAndMul
from irshim.compat.ports import PORTS, Port, Variant, module_attr, register_port
from irshim.ir import ops


@pytest.fixture
def ir_calls(monkeypatch):
    """op name -> number of calls that reached the op's native provider (the CPU's choice)."""
    calls = {"rms_norm": 0, "silu_and_mul": 0}
    for name in calls:
        impl = getattr(ops, name)._impls["native"]

        def spy(*args, _name=name, _real=impl.impl_fn):
            calls[_name] += 1
            return _real(*args)

        monkeypatch.setattr(impl, "impl_fn", spy)
    return calls


def test_dispatch_and_ops_changes_reach_layers_already_called(ir_calls):
    norm, act = RMSNorm(8), SiluAndMul()
    x, x2 = torch.randn(2, 8), torch.randn(2, 16)
    with compat.override(dispatch="off"):
        norm(x), act(x2)
        assert RMSNorm in dispatch._fast and ir_calls == {"rms_norm": 0, "silu_and_mul": 0}
        with compat.override(dispatch="on", ops="all"):
            norm(x), norm(x), act(x2)
            assert RMSNorm in dispatch._on and RMSNorm not in dispatch._fast
            assert ir_calls == {"rms_norm": 2, "silu_and_mul": 1}
            with compat.override(ops="none,+silu_and_mul"):
                norm(x), act(x2)
                assert ir_calls == {"rms_norm": 2, "silu_and_mul": 2}
            norm(x)
            assert ir_calls["rms_norm"] == 3
        norm(x), act(x2)
    assert ir_calls == {"rms_norm": 3, "silu_and_mul": 2}


def test_sampling_changes_reach_layers_already_called(ir_calls, tmp_path):
    # The sampled-shadow registry follows the sample: a layer drawn at ~0 compares nothing,
    # the same layer at 1 compares every call, and leaving shadow takes it out.
    norm, x = RMSNorm(8), torch.randn(2, 8)
    with compat.override(dispatch="shadow", shadow_sample=1e-12, report_dir=tmp_path):
        norm(x), norm(x)
        assert RMSNorm in dispatch._sampled and ir_calls["rms_norm"] == 0
        with compat.override(shadow_sample=1):
            norm(x)
            assert RMSNorm not in dispatch._sampled and ir_calls["rms_norm"] == 1
        norm(x)
        assert ir_calls["rms_norm"] == 1
    with compat.override(dispatch="off"):
        norm(x)
        assert RMSNorm not in dispatch._sampled and ir_calls["rms_norm"] == 1


def test_a_replaced_port_takes_effect_on_the_next_call():
    layer, x = RMSNorm(8), torch.randn(2, 8)
    shipped = PORTS["rms_norm"]
    gemma = Port(name="rms_norm", params=("x", "residual=None"),
                 variants=(Variant(op="gemma_rms_norm", when={"residual": None},
                                   args=("x", "self.weight", "self.variance_epsilon")),))
    with compat.override(dispatch="on"):
        assert torch.equal(layer(x), ops.rms_norm(x, layer.weight, 1e-6))
        register_port(gemma, replace=True)
        try:
            assert torch.equal(layer(x), ops.gemma_rms_norm(x, layer.weight, 1e-6))
        finally:
            register_port(shipped, replace=True)
        assert torch.equal(layer(x), ops.rms_norm(x, layer.weight, 1e-6))


def test_foreign_layers_follow_the_registries(foreign_base, ir_calls):
    @foreign_base.register("rms_norm")
    class ForeignNorm(foreign_base):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(8))
            self.variance_epsilon = 1e-6

        def forward_native(self, x, residual=None):
            return 3 * x

    compat.install(foreign_base)
    try:
        layer, x = ForeignNorm(), torch.randn(2, 8)
        with compat.override(dispatch="off"):
            assert torch.equal(layer(x), 3 * x) and ForeignNorm in dispatch._fast
            with compat.override(dispatch="on"):
                assert torch.equal(layer(x), ops.rms_norm(x, layer.weight, 1e-6))
            assert torch.equal(layer(x), 3 * x)
    finally:
        compat.uninstall(foreign_base)
    assert ir_calls["rms_norm"] == 2  # the `on` call and the reference


def test_a_state_built_across_a_change_stays_out_of_the_registries(monkeypatch):
    """Settings that change while a class's state is built: the stale state (here `off`)
    must not put the class on the fast path of the new settings (`on`)."""

    @CustomOp.register("hot_path_probe")
    class Probe(CustomOp):
        def forward_native(self, x):
            return x

    real = dispatch.find_port

    def find_port_while_settings_change(cls):
        monkeypatch.setattr(dispatch, "find_port", real)
        flags_module._set(dataclasses.replace(flags_module.current(), dispatch="on"))
        return real(cls)

    with compat.override(dispatch="off"):
        dispatch._fast.discard(Probe)
        dispatch._states.pop(Probe, None)
        monkeypatch.setattr(dispatch, "find_port", find_port_while_settings_change)
        stale = dispatch.state_of(Probe)
        assert stale.fast and stale.generation != flags_module.generation
        assert Probe not in dispatch._fast
        assert dispatch.state_of(Probe).mode == "on"


def test_on_runner_reads_parameters_as_getattr_would():
    x = torch.randn(2, 8)
    layer = RMSNorm(8)
    with compat.override(dispatch="on"):
        layer(x)  # builds the class's runner from this layer: `weight` is a parameter
        layer.weight = nn.Parameter(torch.full((8,), 2.0))
        assert torch.equal(layer(x), ops.rms_norm(x, torch.full((8,), 2.0), 1e-6))
        other = RMSNorm(8)
        del other.weight
        other.weight = torch.full((8,), 3.0)  # a plain tensor attribute, same runner
        assert "weight" in other.__dict__
        assert torch.equal(other(x), ops.rms_norm(x, torch.full((8,), 3.0), 1e-6))
        layer.to(torch.float64)  # weight dtype now differs from x's: refused, legacy runs
        assert torch.equal(layer(x), layer.forward_native(x))


class DoubledWeight(RMSNorm):
    """A class whose __getattr__ (reached for parameters) changes what `self.weight` is."""

    def __getattr__(self, name):
        value = super().__getattr__(name)
        return 2 * value if name == "weight" else value


def test_a_class_with_its_own_getattr_is_read_through_it():
    x, layer = torch.randn(2, 8), DoubledWeight(8)
    with compat.override(dispatch="on"):
        assert torch.equal(layer(x), ops.rms_norm(x, torch.full((8,), 2.0), 1e-6))
    assert torch.equal(module_attr(layer, "weight"), torch.full((8,), 2.0))


def test_module_attr_equals_getattr():
    module = nn.Module()
    module.p = nn.Parameter(torch.ones(2))
    module.register_buffer("b", torch.zeros(2))
    module.register_parameter("none", None)
    module.plain = 5
    for name in ("p", "b", "none", "plain", "training"):
        assert module_attr(module, name) is getattr(module, name)
    with pytest.raises(AttributeError):
        module_attr(module, "missing")
    assert module_attr(dataclasses.make_dataclass("D", [("a", int)])(1), "a") == 1


def test_generated_runner_reads_buffers_from_their_table():
    class BufferNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("weight", torch.ones(8))
            self.variance_epsilon = 1e-6

    layer, x = BufferNorm(), torch.randn(2, 8)
    run = PORTS["rms_norm"].runner("forward_native", 1, layer)
    assert torch.equal(run(layer, (x,)), ops.rms_norm(x, torch.ones(8), 1e-6))
    layer.weight = torch.full((8,), 4.0)  # nn.Module keeps it in _buffers
    assert torch.equal(run(layer, (x,)), ops.rms_norm(x, torch.full((8,), 4.0), 1e-6))


def test_class_attributes_read_by_port_checks_follow_settings_changes(ir_calls):
    """The RMSNorm port reads `pass_weight` from the layer or its class; the class lookup
    is cached per class until the settings change (any change, compat.override included)."""

    class NoWeightPassed(RMSNorm):
        pass

    norm = NoWeightPassed(8)
    x = torch.randn(2, 8)
    with compat.override(dispatch="on", ops="all"):
        norm(x)
        assert ir_calls["rms_norm"] == 1  # ported: the IR op ran
        NoWeightPassed.pass_weight = False  # vLLM's weightless flag, set on the class
        flags_module.bump()
        norm(x)
        assert ir_calls["rms_norm"] == 1  # refused: legacy ran
        del NoWeightPassed.pass_weight
    with compat.override(dispatch="on", ops="all"):
        norm(x)
        assert ir_calls["rms_norm"] == 2
        norm.pass_weight = False  # an instance attribute is read on every call
        norm(x)
        assert ir_calls["rms_norm"] == 2


def test_runners_follow_the_argument_count(ir_calls):
    """Calls with and without a residual, in any order, each run their own runner (the
    cache holds one per positional argument count) and return what the IR op returns."""
    norm, x, res = RMSNorm(8), torch.randn(2, 8), torch.randn(2, 8)
    with compat.override(dispatch="on", ops="all"):
        for with_residual in (True, False, True, False, False):
            if with_residual:
                got = norm(x.clone(), res.clone())
                want = ops.fused_add_rms_norm(x.clone(), res.clone(), norm.weight, 1e-6)
                assert all(torch.equal(g, w) for g, w in zip(got, want))
            else:
                assert torch.equal(norm(x), ops.rms_norm(x, norm.weight, 1e-6))
        assert ir_calls["rms_norm"] == 3 + 3  # three layer calls, three references
        with pytest.raises(TypeError):  # three arguments: refused by the port, legacy raises as it would
            norm(x, res, res)
