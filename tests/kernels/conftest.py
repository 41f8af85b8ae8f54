"""Kernel tests: make Triton's interpreter round fp32 -> bf16 as the GPU does.

Triton 3.x's interpreter converts float32 to bfloat16 by truncating the
mantissa (InterpreterBuilder.cast_impl passes no rounding mode), while compiled
kernels on the GPU round to nearest even (`cvt.rn.bf16.f32`). Without this patch,
bf16 results on the CPU differ from the GPU's (and from torch's) by up to one
ulp, and tests of exact results (the fused add's residual) would test the
emulator rather than the kernel. The GPU tests check the same properties on
the hardware, unpatched.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch


def _patch_interpreter_bf16_rounding() -> None:
    import triton.language as tl
    from triton.runtime import interpreter

    original = interpreter.InterpreterBuilder.cast_impl

    def cast_impl(self, src, dst_type):
        if src.dtype.scalar == tl.float32 and dst_type.scalar == tl.bfloat16:
            values = torch.from_numpy(np.ascontiguousarray(src.data, dtype=np.float32))
            data = values.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
            return interpreter.TensorHandle(data, dst_type.scalar)
        return original(self, src, dst_type)

    interpreter.InterpreterBuilder.cast_impl = cast_impl


if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
    _patch_interpreter_bf16_rounding()


class Launches:
    """Stand-ins for @triton.jit kernels that record each launch (``kernel[grid](...)``) and run
    nothing: which kernel a launcher picked, and with which keyword arguments."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.kwargs: list[dict] = []

    def kernel(self, name: str):
        launches = self

        class Spy:
            def __getitem__(self, grid):
                def launch(*args, **kwargs):
                    launches.names.append(name)
                    launches.kwargs.append(kwargs)
                return launch

        return Spy()


@pytest.fixture
def launches() -> Launches:
    return Launches()
