"""Dispatch: which provider runs, eager bypass vs torch.ops, in-place overloads, tracing."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from torch.fx.experimental.proxy_tensor import make_fx

import irshim.ir as ir


@pytest.fixture
def picky_op(scale_op):
    """Providers: `small` only for tensors of <= 4 elements (returns x*f + 100), `any` (x*f + 200)."""

    def small(x: Tensor, factor: float) -> Tensor:
        return x * factor + 100

    def anything(x: Tensor, factor: float) -> Tensor:
        return x * factor + 200

    scale_op.register_impl("small", supports_args=lambda x, factor: x.numel() <= 4)(small)
    scale_op.register_impl("any")(anything)
    return scale_op


def test_dispatch_respects_supports_args(picky_op):
    with picky_op.set_priority(["small", "any"]):
        assert picky_op.dispatch(torch.zeros(4), 1.0).provider == "small"
        assert picky_op.dispatch(torch.zeros(5), 1.0).provider == "any"
        assert picky_op.dispatch(x=torch.zeros(5), factor=1.0).provider == "any"
        assert float(picky_op(torch.zeros(1), 1.0)) == 100
        assert picky_op(torch.zeros(5), 1.0).tolist() == [200.0] * 5


def test_dispatch_runs_nothing(scale_op):
    calls = []

    def spy(x: Tensor, factor: float) -> Tensor:
        calls.append(1)
        return x

    scale_op.register_impl("spy")(spy)
    with scale_op.set_priority(["spy"]):
        assert scale_op.dispatch(torch.zeros(2), 1.0).impl_fn is spy
    assert calls == []


def test_explain_gives_a_reason_per_provider(picky_op):
    def off(x: Tensor, factor: float) -> Tensor:
        return x

    picky_op.register_impl("off", supported=False)(off)
    with picky_op.set_priority(["off", "small", "any"]):
        verdicts = dict(picky_op.explain(torch.zeros(8), 1.0))
    assert verdicts["off"] == "not supported on this platform"
    assert verdicts["small"] == "refused these arguments (supports_args)"
    assert verdicts["any"].startswith("chosen")
    assert verdicts["native"] == "not in the priority list"


def test_torch_ops_path_gives_the_same_result(picky_op):
    x = torch.randn(3)
    with picky_op.set_priority(["small", "any"]):
        direct = picky_op(x, 2.0)
        through_torch = getattr(torch.ops.irshim, picky_op.name)(x, 2.0)
    assert torch.equal(direct, through_torch) and float(direct[0] - 2 * x[0]) == 100


def _all_ops_with_inputs():
    cases = []
    for name in ("rms_norm", "fused_add_rms_norm", "gemma_rms_norm", "gemma_fused_add_rms_norm",
                 "silu_and_mul", "mul_and_silu", "gelu_and_mul", "fatrelu_and_mul",
                 "gelu_new", "gelu_fast", "quick_gelu", "relu2"):
        cases.append(pytest.param(name, id=name))
    return cases


@pytest.mark.parametrize("name", _all_ops_with_inputs())
def test_call_equals_chosen_provider_bit_for_bit(name):
    op = ir.get_op(name)
    for provider, impl in op.impls.items():
        if not impl.supported:
            continue
        args = op.generate_inputs(3, 40, torch.bfloat16, "cpu")
        with op.set_priority([provider]):
            chosen = op.dispatch(*args)
            via_op = op(*args)
            fresh = op.generate_inputs(3, 40, torch.bfloat16, "cpu")
            direct = chosen.impl_fn(*fresh) if not chosen.inplace else chosen.impl_fn(*[
                a.clone() if isinstance(a, Tensor) else a for a in fresh])
            via_torch = op.torch_op(*op.generate_inputs(3, 40, torch.bfloat16, "cpu"))
        outs = via_op if isinstance(via_op, tuple) else (via_op,)
        refs = direct if isinstance(direct, tuple) else (direct,)
        torch_outs = via_torch if isinstance(via_torch, tuple) else (via_torch,)
        for a, b, c in zip(outs, refs, torch_outs):
            assert torch.equal(a, b), f"{name}/{chosen.provider}: op call differs from direct call"
            assert torch.equal(a, c), f"{name}/{chosen.provider}: torch.ops call differs from eager call"


@pytest.fixture
def inplace_op(fresh_name):
    """`bump(x, y) -> (x + 1, y + x)` with an in-place provider writing into x and y."""

    @ir.register_op(name=fresh_name, allow_inplace=True, activations=["x", "y"])
    def bump(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return x + 1, y + x

    @bump.register_impl("inplace", inplace=True)
    def bump_inplace(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        y.add_(x)
        x.add_(1)
        return x, y

    return bump


def test_default_overload_never_mutates_even_with_inplace_provider(inplace_op):
    x, y = torch.ones(3), torch.full((3,), 5.0)
    with inplace_op.set_priority(["inplace"]):
        assert inplace_op.dispatch(x, y).inplace
        a, b = inplace_op(x, y)
        a2, b2 = inplace_op.torch_op(x, y)
    assert x.tolist() == [1.0] * 3 and y.tolist() == [5.0] * 3
    assert a.tolist() == a2.tolist() == [2.0] * 3 and b.tolist() == b2.tolist() == [6.0] * 3


def test_maybe_inplace_overload_lets_the_provider_write(inplace_op):
    x, y = torch.ones(3), torch.full((3,), 5.0)
    with inplace_op.set_priority(["inplace"]):
        a, b = inplace_op.maybe_inplace(x, y)
    assert a.data_ptr() == x.data_ptr() and b.data_ptr() == y.data_ptr()
    assert a.tolist() == [2.0] * 3 and b.tolist() == [6.0] * 3
    # With a functional provider the overload gives the same values, fresh tensors.
    x, y = torch.ones(3), torch.full((3,), 5.0)
    a, b = inplace_op.maybe_inplace(x, y)
    assert a.tolist() == [2.0] * 3 and b.tolist() == [6.0] * 3 and x.tolist() == [1.0] * 3


def test_maybe_inplace_runs_the_chosen_providers_inplace_form(fresh_name):
    """`fast` chosen: an eager maybe_inplace call runs `fast_inplace` where it accepts
    the call, `fast` itself where it does not; the default overload and torch.ops run `fast`."""
    ran = []

    @ir.register_op(name=fresh_name, allow_inplace=True, activations=["x"])
    def twice(x: Tensor) -> Tensor:
        return x * 2

    @twice.register_impl("fast")
    def fast(x: Tensor) -> Tensor:
        ran.append("fast")
        return x * 2

    @twice.register_impl("fast_inplace", inplace=True, supports_args=lambda x: x.dtype == torch.float32)
    def fast_inplace(x: Tensor) -> Tensor:
        ran.append("fast_inplace")
        return x.mul_(2)

    x = torch.ones(3)
    with twice.set_priority(["fast"]):
        assert twice.maybe_inplace.dispatch(x).provider == "fast_inplace"
        out = twice.maybe_inplace(x)
        assert out.data_ptr() == x.data_ptr() and x.tolist() == [2.0] * 3
        half = torch.ones(3, dtype=torch.float16)
        assert twice.maybe_inplace.dispatch(half).provider == "fast"
        assert twice.maybe_inplace(half).tolist() == [2.0] * 3 and half.tolist() == [1.0] * 3
        y = torch.ones(3)
        assert twice(y).tolist() == [2.0] * 3 and y.tolist() == [1.0] * 3
        # torch.ops: the schema promises fresh outputs, so the listed provider runs.
        assert twice.maybe_inplace.torch_op(y).tolist() == [2.0] * 3 and y.tolist() == [1.0] * 3
    assert ran == ["fast_inplace", "fast", "fast", "fast"]
    # native has no in-place form: maybe_inplace under the default priority stays functional.
    z = torch.ones(3)
    assert twice.maybe_inplace(z).tolist() == [2.0] * 3 and z.tolist() == [1.0] * 3


def test_maybe_inplace_call_runs_the_form_from_the_first_call_of_a_priority(fresh_name):
    """Each call under a new priority (no dispatch() before it to fill the overload's
    cache of in-place forms) runs the form: positional calls (dispatch inlined in
    __call__) and keyword calls alike; the default overload never does."""
    ran = []

    @ir.register_op(name=fresh_name, allow_inplace=True, activations=["x"])
    def plus_k(x: Tensor, k: float) -> Tensor:
        return x + k

    @plus_k.register_impl("fast")
    def fast(x: Tensor, k: float) -> Tensor:
        ran.append("fast")
        return x + k

    @plus_k.register_impl("fast_inplace", inplace=True)
    def fast_inplace(x: Tensor, k: float) -> Tensor:
        ran.append("fast_inplace")
        return x.add_(k)

    for call in (lambda x: plus_k.maybe_inplace(x, 1.0), lambda x: plus_k.maybe_inplace(x, k=1.0)):
        with plus_k.set_priority(["fast"]):
            x = torch.zeros(2)
            assert call(x) is x and x.tolist() == [1.0, 1.0]
    with plus_k.set_priority(["fast"]):
        y = torch.zeros(2)
        assert plus_k(y, 1.0).tolist() == [1.0, 1.0] and plus_k(y, k=2.0).tolist() == [2.0, 2.0]
        assert y.tolist() == [0.0, 0.0]
    assert ran == ["fast_inplace", "fast_inplace", "fast", "fast"]


def test_maybe_inplace_checks_only_the_inplace_args_after_the_functional_provider(fresh_name):
    """An in-place form with `inplace_args`: maybe_inplace checks those extra conditions
    once its functional provider accepted the call, not the form's whole supports_args;
    a direct dispatch to the form (listed itself) still uses supports_args."""
    checked = []

    @ir.register_op(name=fresh_name, allow_inplace=True, activations=["x"])
    def thrice(x: Tensor) -> Tensor:
        return x * 3

    @thrice.register_impl("fast", supports_args=lambda x: checked.append("fast") or x.dim() == 1)
    def fast(x: Tensor) -> Tensor:
        return x * 3

    def full(x):
        checked.append("full")
        return x.dim() == 1 and x.is_contiguous()

    def extra(x):
        checked.append("extra")
        return x.is_contiguous()

    @thrice.register_impl("fast_inplace", inplace=True, supports_args=full, inplace_args=extra)
    def fast_inplace(x: Tensor) -> Tensor:
        return x.mul_(3)

    with thrice.set_priority(["fast"]):
        assert thrice.maybe_inplace.dispatch(torch.ones(3)).provider == "fast_inplace"
        assert checked == ["fast", "extra"]
        strided = torch.ones(6)[::2]
        assert thrice.maybe_inplace.dispatch(strided).provider == "fast"  # extra refuses: functional
    checked.clear()
    with thrice.set_priority(["fast_inplace"]):
        assert thrice.dispatch(torch.ones(3)).provider == "fast_inplace"
    assert checked == ["full"]


def test_inplace_args_only_for_inplace_forms(fresh_name):
    @ir.register_op(name=fresh_name, allow_inplace=True, activations=["x"])
    def plus(x: Tensor) -> Tensor:
        return x + 1

    with pytest.raises(ValueError, match="inplace_args is for in-place forms"):
        plus.register_impl("fast", inplace_args=lambda x: True)
    with pytest.raises(ValueError, match="inplace_args of provider 'fast_inplace' takes"):
        plus.register_impl("fast_inplace", inplace=True, inplace_args=lambda y: True)


def test_maybe_inplace_through_torch_ops(inplace_op):
    x, y = torch.ones(2), torch.zeros(2)
    with inplace_op.set_priority(["inplace"]):
        a, b = inplace_op.maybe_inplace.torch_op(x, y)
    assert a.tolist() == [2.0, 2.0] and b.tolist() == [1.0, 1.0]


def test_tracing_keeps_the_op_as_one_node(picky_op):
    def f(x):
        return picky_op(x, 3.0) + 1

    with picky_op.set_priority(["any"]):
        graph = make_fx(f)(torch.zeros(2))
    targets = [n.target for n in graph.graph.nodes if n.op == "call_function"]
    assert targets.count(picky_op.torch_op) == 1
    assert len(targets) == 2  # the op and the add: the provider's body was not traced inline


def test_fake_tensors_get_shapes_from_native():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x = torch.empty(5, 2 * 24, dtype=torch.bfloat16)
        out = ir.ops.silu_and_mul(x)
        out2, residual = ir.ops.fused_add_rms_norm(torch.empty(5, 24), torch.empty(5, 24), None, 1e-6)
    assert out.shape == (5, 24) and out.dtype == torch.bfloat16
    assert out2.shape == residual.shape == (5, 24)
