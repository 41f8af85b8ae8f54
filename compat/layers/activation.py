"""Activation layers as legacy CustomOps (vLLM's activation.py conventions).

forward_native is plain torch in the input dtype, like vLLM's; forward_cuda
stands for vLLM's kernels (allocate the output, fill it) and uses the IR op's
float32 semantics.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from irshim.ir import ops as ir_ops

from ..custom_op import CustomOp


def _gated_out(x: torch.Tensor) -> torch.Tensor:
    return torch.empty(x.shape[:-1] + (x.shape[-1] // 2,), dtype=x.dtype, device=x.device)


@CustomOp.register("silu_and_mul")
class SiluAndMul(CustomOp):
    """SwiGLU: x -> silu(x[..., :d]) * x[..., d:], d = x.shape[-1] // 2."""

    def forward_native(self, x: torch.Tensor) -> torch.Tensor:
        d = x.shape[-1] // 2
        return F.silu(x[..., :d]) * x[..., d:]

    def forward_cuda(self, x: torch.Tensor) -> torch.Tensor:
        return _gated_out(x).copy_(ir_ops.silu_and_mul.native(x))


@CustomOp.register("mul_and_silu")
class MulAndSilu(CustomOp):
    """x -> x[..., :d] * silu(x[..., d:])."""

    def forward_native(self, x: torch.Tensor) -> torch.Tensor:
        d = x.shape[-1] // 2
        return x[..., :d] * F.silu(x[..., d:])

    def forward_cuda(self, x: torch.Tensor) -> torch.Tensor:
        return _gated_out(x).copy_(ir_ops.mul_and_silu.native(x))


@CustomOp.register("gelu_and_mul")
class GeluAndMul(CustomOp):
    """GeGLU: x -> gelu(x[..., :d], approximate) * x[..., d:]."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GeluAndMul: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward_native(self, x: torch.Tensor) -> torch.Tensor:
        d = x.shape[-1] // 2
        return F.gelu(x[..., :d], approximate=self.approximate) * x[..., d:]

    def forward_cuda(self, x: torch.Tensor) -> torch.Tensor:
        return _gated_out(x).copy_(ir_ops.gelu_and_mul.native(x, self.approximate))

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


@CustomOp.register("fatrelu_and_mul")
class FatreluAndMul(CustomOp):
    """x -> (a if a > threshold else 0) * b, a, b the halves of x."""

    def __init__(self, threshold: float = 0.0) -> None:
        super().__init__()
        self.threshold = threshold

    def forward_native(self, x: torch.Tensor) -> torch.Tensor:
        d = x.shape[-1] // 2
        return F.threshold(x[..., :d], self.threshold, 0.0) * x[..., d:]

    def forward_cuda(self, x: torch.Tensor) -> torch.Tensor:
        return _gated_out(x).copy_(ir_ops.fatrelu_and_mul.native(x, self.threshold))


@CustomOp.register("gelu_new")
class NewGELU(CustomOp):
    """GPT-2's tanh GELU."""

    def forward_native(self, x: torch.Tensor) -> torch.Tensor:
        c = math.sqrt(2.0 / math.pi)
        return 0.5 * x * (1.0 + torch.tanh(c * (x + 0.044715 * torch.pow(x, 3.0))))

    def forward_cuda(self, x: torch.Tensor) -> torch.Tensor:
        return torch.empty_like(x).copy_(ir_ops.gelu_new.native(x))


@CustomOp.register("gelu_fast")
class FastGELU(CustomOp):
    """0.5 x (1 + tanh(0.7978845608 x (1 + 0.044715 x²)))."""

    def forward_native(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))

    def forward_cuda(self, x: torch.Tensor) -> torch.Tensor:
        return torch.empty_like(x).copy_(ir_ops.gelu_fast.native(x))


@CustomOp.register("quick_gelu")
class QuickGELU(CustomOp):
    """x * sigmoid(1.702 x)."""

    def forward_native(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)

    def forward_cuda(self, x: torch.Tensor) -> torch.Tensor:
        return torch.empty_like(x).copy_(ir_ops.quick_gelu.native(x))


@CustomOp.register("relu2")
class ReLUSquaredActivation(CustomOp):
    """relu(x)²."""

    def forward_native(self, x: torch.Tensor) -> torch.Tensor:
        return torch.square(F.relu(x))

    def forward_cuda(self, x: torch.Tensor) -> torch.Tensor:
        return torch.empty_like(x).copy_(ir_ops.relu2.native(x))
