"""The shared tensor checks of the Triton providers (kernels/triton/_support.py)."""

from __future__ import annotations

import pytest
import torch

from irshim.kernels.triton import _support as S

BUF = torch.zeros(64)


@pytest.mark.parametrize("a, b, expected", [
    (BUF[0:8], BUF[8:16], True),              # adjacent contiguous spans
    (BUF[0:9], BUF[8:16], False),             # one element shared
    (BUF[8:16], BUF[0:8], True),              # either order
    (BUF[4:4], BUF[0:16], True),              # empty, inside the other's span
    (BUF[0:16], BUF[16:16], True),
    (BUF.view(8, 8)[:, :2], BUF.view(8, 8)[:, 2:4], False),  # interleaved columns: spans overlap
    (BUF.view(8, 8)[:4, :2], BUF.view(8, 8)[4:, :2], True),  # strided, rows 0-3 then rows 4-7
    (BUF.view(8, 8)[:0, :2], BUF, True),      # empty and strided
])
def test_disjoint_compares_byte_spans(a, b, expected):
    # Spans are [first byte, one past the last element's): columns 0-1 of rows 0-3 end at
    # element 3 * 8 + 1, before row 4 begins. The test is conservative: interleaved
    # columns share no element but their spans overlap.
    assert S.disjoint(a, b) is expected


def test_device_ok_accepts_cpu_tensors_only_under_the_interpreter():
    assert S.device_ok(torch.zeros(1)) is S.INTERPRET


def test_input_ok_checks_device_dtype_and_rows():
    if not S.INTERPRET:  # CPU tensors are the kernels' only without a GPU
        assert not S.input_ok(torch.zeros(2, 3))
        return
    x = torch.zeros(4, 6, dtype=torch.bfloat16)
    assert S.input_ok(x) and S.input_ok(x[::2]) and S.input_ok(x[:, 1:4])
    assert not S.input_ok(x[:, ::2])  # no unit stride along the last dimension
    assert not S.input_ok(torch.zeros((), dtype=torch.bfloat16))  # contiguous, but no rows
    assert not S.input_ok(x.to(torch.float64)) and not S.input_ok(x.to(torch.int32))
    assert not S.input_ok(torch.zeros(2, 3, device="meta"))


def test_operand_ok_checks_dtype_and_device():
    x = torch.zeros(4, 6)
    assert S.operand_ok(torch.zeros(6, dtype=torch.float16), x)
    assert not S.operand_ok(torch.zeros(6, dtype=torch.float64), x)
