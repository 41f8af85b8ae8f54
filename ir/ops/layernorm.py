"""RMS norms: semantics, input generators and tolerances.

All variants accumulate in float32 and round once to the input dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..op import register_op


def _rms(x32: Tensor, epsilon: float) -> Tensor:
    return torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + epsilon)


def _norm(x: Tensor, weight: Tensor | None, epsilon: float, offset: float) -> Tensor:
    x32 = x.float()
    out = x32 * _rms(x32, epsilon)
    if weight is not None:
        out = out * (weight.float() + offset) if offset else out * weight.float()
    return out.to(x.dtype)


@register_op
def rms_norm(x: Tensor, weight: Tensor | None, epsilon: float) -> Tensor:
    """out = x / sqrt(mean(x², -1) + epsilon) * weight, over the last dimension."""
    return _norm(x, weight, epsilon, 0.0)


@register_op(allow_inplace=True)
def fused_add_rms_norm(x: Tensor, x_residual: Tensor, weight: Tensor | None, epsilon: float) -> tuple[Tensor, Tensor]:
    """residual = x + x_residual (in x's dtype); out = rms_norm(residual). Returns (out, residual)."""
    residual = (x.float() + x_residual.float()).to(x.dtype)
    return _norm(residual, weight, epsilon, 0.0), residual


@register_op
def gemma_rms_norm(x: Tensor, weight: Tensor, epsilon: float) -> Tensor:
    """Gemma's RMSNorm: out = x / sqrt(mean(x², -1) + epsilon) * (1 + weight), weight offset in float32."""
    return _norm(x, weight, epsilon, 1.0)


@register_op(allow_inplace=True)
def gemma_fused_add_rms_norm(x: Tensor, x_residual: Tensor, weight: Tensor, epsilon: float) -> tuple[Tensor, Tensor]:
    """residual = x + x_residual (in x's dtype); out = gemma_rms_norm(residual). Returns (out, residual)."""
    residual = (x.float() + x_residual.float()).to(x.dtype)
    return _norm(residual, weight, epsilon, 1.0), residual


def _activation(num_tokens: int, hidden_size: int, dtype: torch.dtype, device, seed: int) -> Tensor:
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(num_tokens, hidden_size, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)


def _weight(hidden_size: int, dtype: torch.dtype, device) -> Tensor:
    generator = torch.Generator(device="cpu").manual_seed(1)
    w = 1.0 + 0.1 * torch.randn(hidden_size, generator=generator)
    return w.to(device=device, dtype=dtype)


@rms_norm.register_input_generator
def _rms_norm_inputs(num_tokens, hidden_size, dtype, device="cpu"):
    return _activation(num_tokens, hidden_size, dtype, device, 0), _weight(hidden_size, dtype, device), 1e-6


@gemma_rms_norm.register_input_generator
def _gemma_rms_norm_inputs(num_tokens, hidden_size, dtype, device="cpu"):
    # Gemma weights are offsets around 0.
    return (_activation(num_tokens, hidden_size, dtype, device, 0),
            _weight(hidden_size, dtype, device) - 1, 1e-6)


@fused_add_rms_norm.register_input_generator
@gemma_fused_add_rms_norm.register_input_generator
def _fused_add_inputs(num_tokens, hidden_size, dtype, device="cpu"):
    x = _activation(num_tokens, hidden_size, dtype, device, 0)
    residual = _activation(num_tokens, hidden_size, dtype, device, 2)
    return x, residual, _weight(hidden_size, dtype, device), 1e-6


_REDUCTION = "the mean of squares over the hidden size is summed in another order by each provider"
for _op in (rms_norm, fused_add_rms_norm, gemma_rms_norm, gemma_fused_add_rms_norm):
    _op.override_tolerance(torch.float32, atol=1e-5, rtol=1e-4, reason=_REDUCTION)
