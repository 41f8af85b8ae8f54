"""RMSNorm and GemmaRMSNorm as legacy CustomOps (vLLM's layernorm.py conventions).

forward_native is plain torch with vLLM's rounding order; forward_cuda stands
for vLLM's fused kernels: with a residual it works in place (x becomes the
normed output, residual becomes x + residual) and returns the two inputs.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from irshim.ir import ops as ir_ops

from ..custom_op import CustomOp


@CustomOp.register("rms_norm")
class RMSNorm(CustomOp):
    """x -> weight * x / sqrt(mean(x², -1) + eps), optionally after adding a residual."""

    def __init__(self, hidden_size: int, eps: float = 1e-6, var_hidden_size: int | None = None,
                 has_weight: bool = True, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.variance_epsilon = eps
        self.variance_size_override = None if var_hidden_size == hidden_size else var_hidden_size
        self.has_weight = has_weight
        weight = torch.ones(hidden_size, dtype=dtype)
        self.weight = nn.Parameter(weight) if has_weight else weight

    def forward_native(self, x: torch.Tensor, residual: torch.Tensor | None = None):
        orig_dtype = x.dtype
        x = x.to(torch.float32)
        if residual is not None:
            x = x + residual.to(torch.float32)
            residual = x.to(orig_dtype)
        if x.shape[-1] != self.hidden_size:
            raise ValueError(f"RMSNorm expected hidden size {self.hidden_size}, got {x.shape[-1]}")
        x_var = x if self.variance_size_override is None else x[..., : self.variance_size_override]
        x = x * torch.rsqrt(x_var.pow(2).mean(dim=-1, keepdim=True) + self.variance_epsilon)
        x = x.to(orig_dtype)
        if self.has_weight:
            x = x * self.weight
        return x if residual is None else (x, residual)

    def forward_cuda(self, x: torch.Tensor, residual: torch.Tensor | None = None):
        if self.variance_size_override is not None:
            return self.forward_native(x, residual)
        if residual is None:
            return ir_ops.rms_norm.native(x, self.weight.data, self.variance_epsilon)
        out, summed = ir_ops.fused_add_rms_norm.native(x, residual, self.weight.data, self.variance_epsilon)
        x.copy_(out)
        residual.copy_(summed)
        return x, residual

    def extra_repr(self) -> str:
        return f"hidden_size={self.weight.data.size(0)}, eps={self.variance_epsilon}"


@CustomOp.register("gemma_rms_norm")
class GemmaRMSNorm(CustomOp):
    """Gemma's RMSNorm: x * (1 + weight), the weight product taken before rounding."""

    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(hidden_size))
        self.variance_epsilon = eps

    @staticmethod
    def forward_static(weight: torch.Tensor, variance_epsilon: float, x: torch.Tensor,
                       residual: torch.Tensor | None):
        orig_dtype = x.dtype
        if residual is not None:
            x = x.float() + residual.float() if orig_dtype == torch.float16 else x + residual
            residual = x
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + variance_epsilon)
        x = (x * (1.0 + weight.float())).to(orig_dtype)
        return x if residual is None else (x, residual)

    def forward_native(self, x: torch.Tensor, residual: torch.Tensor | None = None):
        return self.forward_static(self.weight.data, self.variance_epsilon, x, residual)

    def forward_cuda(self, x: torch.Tensor, residual: torch.Tensor | None = None):
        # vLLM compiles forward_native here; the semantics are the same.
        return self.forward_native(x, residual)
