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
