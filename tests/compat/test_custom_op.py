"""irshim's CustomOp follows vLLM's protocol: register, register_oot, custom_ops, dispatch_forward."""

from __future__ import annotations

import pytest
import torch

import irshim.compat as compat
from irshim.compat import ConfigError, CustomOp, set_custom_ops
from irshim.compat import custom_op as custom_op_module


@pytest.fixture(autouse=True)
def _restore_custom_ops():
    saved = compat.get_custom_ops()
    yield
    set_custom_ops(saved)


@CustomOp.register("test_co_double")
class Double(CustomOp):
    def forward_native(self, x):
        return 2 * x

    def forward_cuda(self, x):
        return x + x


def test_register_sets_name_and_registry():
    assert Double.name == "test_co_double"
    assert CustomOp.op_registry["test_co_double"] is Double


def test_duplicate_name_is_refused_with_the_owner_named():
    with pytest.raises(ValueError, match="already registered by Double"):
        CustomOp.register("test_co_double")(type("Other", (CustomOp,), {}))


@pytest.mark.parametrize("custom_ops, enabled", [
    (["all"], True), (["none"], False), (["none", "+test_co_double"], True),
    (["all", "-test_co_double"], False), (["+test_co_double"], True), (["-test_co_double"], False),
], ids=str)
def test_enabled_follows_custom_ops(custom_ops, enabled):
    set_custom_ops(custom_ops)
    assert Double.enabled() is enabled
    layer = Double()
    # On this CPU-only machine an enabled op binds forward_cpu, whose base default is forward_native.
    assert layer._forward_method.__func__ is (CustomOp.forward_cpu if enabled else Double.forward_native)
    assert torch.equal(layer(torch.ones(2)), torch.full((2,), 2.0))


def test_default_list_is_all():
    set_custom_ops([])
    assert compat.get_custom_ops() == ("all",)
    assert CustomOp.default_on()


@pytest.mark.parametrize("bad", [["all", "none"], ["all", "all"], ["+x", "-x"], ["x"], ["+"], "all", [3]], ids=str)
def test_malformed_custom_ops_are_refused(bad):
    with pytest.raises(ConfigError, match="custom_ops"):
        set_custom_ops(bad)


def test_platform_methods_follow_the_device_family(monkeypatch):
    for family, method in (("cuda", "forward_cuda"), ("rocm", "forward_hip"), ("xpu", "forward_xpu")):
        monkeypatch.setattr(custom_op_module, "device_family", lambda f=family: f)
        assert Double()._forward_method.__name__ == method
    monkeypatch.setattr(custom_op_module, "device_family", lambda: "rocm")
    assert torch.equal(Double()(torch.ones(1)), torch.full((1,), 2.0))  # hip -> cuda by default


def test_enforce_enable_overrides_none():
    set_custom_ops(["none"])
    assert Double(enforce_enable=True)._forward_method.__name__ == "forward_cpu"


def test_register_oot_substitutes_the_in_tree_class():
    @CustomOp.register("test_co_inner")
    class InTree(CustomOp):
        def forward_native(self, x):
            return x + 1

    @CustomOp.register_oot(name="InTree")
    class Vendor(InTree):
        def forward_native(self, x):
            return x + 100

    layer = InTree()
    assert type(layer) is Vendor and Vendor.name == "InTree"
    assert torch.equal(layer(torch.zeros(1)), torch.full((1,), 100.0))
    with pytest.raises(ValueError, match="already registered for 'InTree'"):
        CustomOp.register_oot(name="InTree")(type("Again", (InTree,), {}))
    del CustomOp.op_registry_oot["InTree"]


def test_unregistered_subclass_warns_once_and_follows_default(caplog):
    class Anonymous(CustomOp):
        def forward_native(self, x):
            return x

    set_custom_ops(["none"])
    with caplog.at_level("WARNING"):
        assert not Anonymous.enabled() and not Anonymous.enabled()
    assert sum("not registered" in r.message for r in caplog.records) == 1
