"""register_op / register_impl: what is accepted, and the errors for what is not."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import irshim.ir as ir


def test_bare_decorator_registers_under_function_name(fresh_name):
    def f(x: Tensor) -> Tensor:
        """Doubles x."""
        return 2 * x

    f.__name__ = fresh_name
    op = ir.register_op(f)
    assert op.name == fresh_name
    assert getattr(ir.ops, fresh_name) is op
    assert ir.get_op(fresh_name) is op
    assert str(getattr(torch.ops.irshim, fresh_name).default._schema) == f"irshim::{fresh_name}(Tensor x) -> Tensor"
    assert op.doc == "Doubles x."
    assert list(op.impls) == ["native"]


def test_named_decorator_with_inplace_overload(fresh_name):
    @ir.register_op(name=fresh_name, activations=["y"], allow_inplace=True)
    def whatever(y: Tensor, k: int) -> Tensor:
        return y + k

    assert whatever.name == fresh_name and whatever.activations == ["y"]
    assert whatever.allow_inplace
    overload = getattr(torch.ops.irshim, fresh_name).maybe_inplace
    assert "Tensor(a0!) y" in str(overload._schema)


def test_default_activations_are_x_prefixed_parameters(fresh_name):
    @ir.register_op(name=fresh_name)
    def f(x: Tensor, x_residual: Tensor, weight: Tensor, eps: float) -> Tensor:
        return x + x_residual + weight * eps

    assert f.activations == ["x", "x_residual"] and f.activation_indices == [0, 1]


@pytest.mark.parametrize("bad", ["Rms", "1op", "rms-norm", ""])
def test_bad_op_name(bad):
    with pytest.raises(ValueError, match="invalid"):
        ir.register_op(name=bad)(lambda x: x)


def test_duplicate_op_name_refused(scale_op):
    def other(x: Tensor, factor: float) -> Tensor:
        return x

    with pytest.raises(ValueError, match="already registered"):
        ir.register_op(name=scale_op.name)(other)


def test_keyword_only_parameters_refused(fresh_name):
    def f(x: Tensor, *, k: float) -> Tensor:
        return x * k

    with pytest.raises(ValueError, match="keyword-only"):
        ir.register_op(name=fresh_name)(f)


def test_unannotated_op_refused_with_hint(fresh_name):
    def f(x, k):
        return x * k

    with pytest.raises(ValueError, match="Annotate every parameter"):
        ir.register_op(name=fresh_name)(f)


def test_unknown_activation_refused(fresh_name):
    def f(x: Tensor) -> Tensor:
        return x

    with pytest.raises(ValueError, match=r"activations \['y'\]"):
        ir.register_op(name=fresh_name, activations=["y"])(f)


def test_impl_schema_mismatch_names_both_schemas(scale_op):
    def wrong(x: Tensor, factor: int) -> Tensor:
        return x * factor

    with pytest.raises(ValueError) as info:
        scale_op.register_impl("fast")(wrong)
    message = str(info.value)
    assert "(Tensor x, SymInt factor) -> Tensor" in message
    assert "(Tensor x, float factor) -> Tensor" in message
    assert "fast" not in scale_op.impls


def test_impl_parameter_name_mismatch_refused(scale_op):
    def wrong(x: Tensor, scale: float) -> Tensor:
        return x * scale

    with pytest.raises(ValueError, match="float scale"):
        scale_op.register_impl("fast")(wrong)


def test_predicate_signature_mismatch_names_both(scale_op):
    with pytest.raises(ValueError) as info:
        scale_op.register_impl("fast", supports_args=lambda x: True)
    assert "takes (x) but" in str(info.value) and "takes (x, factor):" in str(info.value)


def test_predicate_default_mismatch_refused(fresh_name):
    @ir.register_op(name=fresh_name)
    def f(x: Tensor, mode: str = "a") -> Tensor:
        return x

    with pytest.raises(ValueError, match="defaults must match"):
        f.register_impl("fast", supports_args=lambda x, mode="b": True)


def test_native_is_reserved(scale_op):
    with pytest.raises(ValueError, match="reserved"):
        scale_op.register_impl("native")


def test_duplicate_provider_refused(scale_op):
    def fast(x: Tensor, factor: float) -> Tensor:
        return x * factor

    scale_op.register_impl("fast")(fast)
    with pytest.raises(ValueError, match="already has a provider 'fast'"):
        scale_op.register_impl("fast")


def test_bad_provider_name_refused(scale_op):
    with pytest.raises(ValueError, match="provider name 'Fast!' is invalid"):
        scale_op.register_impl("Fast!")


def test_inplace_impl_needs_allow_inplace(scale_op):
    with pytest.raises(ValueError, match="allow_inplace=True"):
        scale_op.register_impl("fast", inplace=True)


def test_register_impl_returns_the_function(scale_op):
    def fast(x: Tensor, factor: float) -> Tensor:
        return x * factor

    assert scale_op.register_impl("fast")(fast) is fast
    impl = scale_op.impls["fast"]
    assert (impl.provider, impl.impl_fn, impl.supported, impl.inplace) == ("fast", fast, True, False)


def test_supported_callable_is_evaluated_once(scale_op):
    calls = []

    def check() -> bool:
        calls.append(1)
        return False

    def fast(x: Tensor, factor: float) -> Tensor:
        return x * factor

    scale_op.register_impl("fast", supported=check)(fast)
    assert calls == []  # not at registration: imports must not initialise devices
    assert scale_op.impls["fast"].supported is False
    assert scale_op.impls["fast"].supported is False
    assert calls == [1]


def test_register_fake_replaces_native_as_fake(scale_op):
    seen = []

    @scale_op.register_fake
    def fake(x: Tensor, factor: float) -> Tensor:
        seen.append(x.shape)
        return torch.empty_like(x)

    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        out = scale_op(torch.empty(3, 4), 2.0)
    assert out.shape == (3, 4) and seen == [torch.Size([3, 4])]
