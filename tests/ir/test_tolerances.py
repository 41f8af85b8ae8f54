"""Tolerance table, per-op overrides and assert_close's failure message."""

from __future__ import annotations

import pytest
import torch

import irshim.ir as ir
from irshim.ir.tolerances import Tolerance, assert_close, default_tolerance, outside


def test_default_table_and_unknown_dtype():
    assert default_tolerance(torch.bfloat16) == Tolerance(1e-2, 1.6e-2)
    with pytest.raises(ValueError, match="no default tolerance for torch.int32"):
        default_tolerance(torch.int32)


def test_op_override_wins_and_carries_its_reason(scale_op):
    assert scale_op.tolerance(torch.float16) == default_tolerance(torch.float16)
    scale_op.override_tolerance(torch.float16, atol=0.5, rtol=0.25, reason="test reason")
    assert scale_op.tolerance(torch.float16) == Tolerance(0.5, 0.25, "test reason")
    assert ir.ops.rms_norm.tolerance(torch.float32).reason.startswith("the mean of squares")


def test_outside_boundaries():
    tol = Tolerance(atol=0.1, rtol=0.5)
    expected = torch.tensor([1.0, 1.0, 0.0, float("nan"), float("inf"), float("inf"), 2.0])
    actual = torch.tensor([1.5, 1.75, 0.125, float("nan"), float("inf"), float("-inf"), float("nan")])
    # bound at expected 1 is 0.1 + 0.5 * 1 = 0.6: 1.5 inside, 1.75 outside; at 0 it is
    # 0.1: 0.125 outside; NaN matches NaN; inf matches inf; -inf vs inf and NaN vs 2 outside.
    assert outside(actual, expected, tol).tolist() == [False, True, True, False, False, True, True]


def test_assert_close_message_names_worst_element_and_tolerance():
    expected = torch.zeros(2, 3)
    actual = expected.clone()
    actual[1, 2] = 0.5
    actual[0, 0] = 0.01
    with pytest.raises(AssertionError) as info:
        assert_close(actual, expected, Tolerance(1e-3, 1e-3, "because"), what="demo")
    message = str(info.value)
    assert message.startswith("demo: 2 of 6 elements outside tolerance (atol=0.001, rtol=0.001, because)")
    assert "worst at (1, 2): actual=0.5 expected=0.0 abs err=0.5" in message


def test_assert_close_shape_mismatch():
    with pytest.raises(AssertionError, match=r"shape \(2,\) != expected \(3,\)"):
        assert_close(torch.zeros(2), torch.zeros(3))


def test_assert_close_passes_within_tolerance():
    assert_close(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0 + 1e-6], dtype=torch.float64))
