"""torch.library.opcheck on every op's torch registration, and fake-tensor shapes."""

from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import irshim.ir as ir

OPS = sorted(name for name in ir.IrOp.registry if not name.startswith("_"))


def _as_tuple(value):
    return value if isinstance(value, tuple) else (value,)


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_opcheck(name, dtype):
    op = ir.get_op(name)
    args = op.generate_inputs(5, 24, dtype, "cpu")
    torch.library.opcheck(op.torch_op, args)


@pytest.mark.parametrize("name", [n for n in OPS if ir.get_op(n).allow_inplace])
def test_opcheck_maybe_inplace(name):
    op = ir.get_op(name)
    torch.library.opcheck(op.maybe_inplace.torch_op, op.generate_inputs(5, 24, torch.float32, "cpu"))


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("tokens", [0, 1, 33])
def test_fake_tensor_shapes_match_real(name, tokens):
    op = ir.get_op(name)
    real_args = op.generate_inputs(tokens, 40, torch.float16, "cpu")
    real = _as_tuple(op.torch_op(*real_args))
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        fake_args = [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in real_args]
        fake = _as_tuple(op.torch_op(*fake_args))
    assert [(t.shape, t.dtype) for t in fake] == [(t.shape, t.dtype) for t in real]
