"""Port refusals: one predicate may check several reasons (a tuple key); RMSNorm's combined
check refuses exactly what its three conditions describe, on the runner and the plan alike."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import irshim.compat as compat
from irshim.compat import flags as flags_module
from irshim.compat.layers import RMSNorm
from irshim.compat.ports import PORTS, Port, PortPlan, Refusal
from irshim.compat.ports.layernorm import VARIANCE_OVERRIDE, WEIGHT_DTYPE, WEIGHTLESS

X = torch.randn(2, 8)
RES = torch.randn(2, 8)


def _port(refuse) -> Port:
    return Port(name="rms_norm", params=("x", "residual=None"), refuse=refuse,
                variants=PORTS["rms_norm"].variants)


def _both(port: Port, layer, *args) -> tuple:
    """(the plan's verdict, the runner's): a reason str / Refusal, or what runs."""
    plan = port.plan(layer, args, {}, "forward_native")
    ran = port.runner("forward_native", len(args), layer)(layer, args)
    return plan, ran


def _by_scale(layer, x, residual):
    scale = getattr(layer, "scale", 0)
    return {0: None, 1: "too big", 2: "too small", 3: "not declared"}[scale]


@pytest.mark.parametrize("scale, reason", [(1, "too big"), (2, "too small")])
def test_a_several_reason_check_refuses_with_the_reason_it_returns(scale, reason):
    port = _port({("too big", "too small"): _by_scale})
    layer = RMSNorm(8)
    layer.scale = scale
    plan, ran = _both(port, layer, X)
    assert plan == reason
    assert type(ran) is Refusal and ran == reason


def test_a_several_reason_check_that_holds_nothing_lets_the_call_run():
    port = _port({("too big", "too small"): _by_scale})
    layer = RMSNorm(8)
    plan, ran = _both(port, layer, X)
    assert isinstance(plan, PortPlan) and torch.equal(ran, plan.run())


def test_an_undeclared_or_raising_check_refuses_and_says_why():
    port = _port({("too big", "too small"): _by_scale})
    layer = RMSNorm(8)
    layer.scale = 3
    plan, ran = _both(port, layer, X)
    assert "KeyError" in plan and "'not declared'" in plan and plan.startswith("too big / too small")
    assert type(ran) is Refusal and "KeyError" in ran and "not declared" in ran
    layer.scale = 4  # the check itself raises
    plan, ran = _both(port, layer, X)
    assert "check raised KeyError" in plan and type(ran) is Refusal and "KeyError" in ran


def test_reasons_are_checked_in_order_across_key_kinds():
    refuse = {"first": lambda layer, x, residual: layer.scale == 5, ("too big", "too small"): _by_scale,
              "last": lambda layer, x, residual: True}
    port = _port(refuse)
    layer = RMSNorm(8)
    for scale, reason in ((5, "first"), (1, "too big"), (0, "last")):
        layer.scale = scale
        plan, ran = _both(port, layer, X)
        assert plan == reason and ran == reason


@pytest.mark.parametrize("key", [(), ("ok", 3), 3])
def test_malformed_refuse_keys_are_rejected(key):
    with pytest.raises(ValueError, match="refuse keys are reasons"):
        _port({key: lambda layer, x, residual: False})


# ------------------------------------------------------- RMSNorm's combined check
class ClassFlags(RMSNorm):
    """Class-level attributes: read once per class and settings generation."""

    pass_weight_add = False


class DoubleWeight(RMSNorm):
    """Its own __getattr__ (reached for parameters) turns the weight into float64."""

    def __getattr__(self, name):
        value = super().__getattr__(name)
        return value.double() if name == "weight" else value


def _norm(**attrs):
    def make():
        layer = RMSNorm(8)
        for name, value in attrs.items():
            setattr(layer, name, value)
        return layer
    return make


def _without_weight():
    layer = RMSNorm(8)
    del layer.weight
    return layer


CASES = {  # name -> (layer factory, reason with x alone, with a residual); None: ported
    "plain": (_norm(), None, None),
    "variance_size_override": (lambda: RMSNorm(8, var_hidden_size=4), VARIANCE_OVERRIDE, VARIANCE_OVERRIDE),
    "override first of all": (lambda: RMSNorm(8, var_hidden_size=4, has_weight=False, dtype=torch.float16),
                              VARIANCE_OVERRIDE, VARIANCE_OVERRIDE),
    "weight dtype": (lambda: RMSNorm(8, dtype=torch.bfloat16), WEIGHT_DTYPE, WEIGHT_DTYPE),
    "dtype before weightless": (lambda: RMSNorm(8, has_weight=False, dtype=torch.float16), WEIGHT_DTYPE,
                                WEIGHT_DTYPE),
    "has_weight=False": (lambda: RMSNorm(8, has_weight=False), WEIGHTLESS, WEIGHTLESS),
    "has_weight=0 is not False": (_norm(has_weight=0), None, None),
    "pass_weight=False": (_norm(pass_weight=False), WEIGHTLESS, None),
    "pass_weight_add=False": (_norm(pass_weight_add=False), None, WEIGHTLESS),
    "pass_weight_add on the class": (lambda: ClassFlags(8), None, WEIGHTLESS),
    "instance over class": (lambda: _set(ClassFlags(8), pass_weight_add=True), None, None),
    "weight through the class's __getattr__": (lambda: DoubleWeight(8), WEIGHT_DTYPE, WEIGHT_DTYPE),
}


def _set(layer, **attrs):
    for name, value in attrs.items():
        setattr(layer, name, value)
    return layer


@pytest.mark.parametrize("residual", [False, True], ids=["x", "x+residual"])
@pytest.mark.parametrize("case", list(CASES))
def test_rms_norm_refusals(case, residual):
    make, alone, with_residual = CASES[case]
    expected = with_residual if residual else alone
    layer = make()
    args = (X.clone(), RES.clone()) if residual else (X.clone(),)
    plan, ran = _both(PORTS["rms_norm"], layer, *args)
    if expected is None:
        assert isinstance(plan, PortPlan) and type(ran) is not Refusal
    else:
        assert plan == expected and type(ran) is Refusal and ran == expected


def test_rms_norm_without_a_weight_refuses_with_the_error():
    plan, ran = _both(PORTS["rms_norm"], _without_weight(), X)
    assert "AttributeError" in plan and type(ran) is Refusal and "AttributeError" in ran


def test_rms_norm_class_attributes_follow_settings_changes_only():
    class Late(RMSNorm):
        pass

    layer, run = Late(8), PORTS["rms_norm"].runner("forward_native", 1, RMSNorm(8))
    with compat.override(dispatch="on"):
        assert type(run(layer, (X,))) is not Refusal
        Late.pass_weight = False
        try:
            assert type(run(layer, (X,))) is not Refusal  # cached for this generation
            flags_module.bump()
            assert run(layer, (X,)) == WEIGHTLESS
            layer.pass_weight = True  # an instance attribute wins, at once
            assert type(run(layer, (X,))) is not Refusal
            layer.variance_size_override = 4
            assert run(layer, (X,)) == VARIANCE_OVERRIDE
        finally:
            del Late.pass_weight


def test_rms_norm_refused_calls_run_legacy_in_on_mode():
    layer = _norm(pass_weight=False)()
    with compat.override(dispatch="on"):
        layer(X)
        out = layer(X)
    assert torch.equal(out, layer.forward_native(X))
    assert isinstance(layer.weight, nn.Parameter)
