"""Gated and plain activations: semantics, input generators and tolerances.

Gated ops split the last dimension in halves (``a, b = x[..., :d], x[..., d:]``)
and return ``[..., d]``. All compute in float32 and round once to x's dtype.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..op import register_op

_GELU_APPROXIMATIONS = ("none", "tanh")


def _halves(x: Tensor) -> tuple[Tensor, Tensor]:
    if x.shape[-1] % 2:
        raise ValueError(f"gated activations split the last dimension in halves; got odd size {x.shape[-1]}")
    d = x.shape[-1] // 2
    # One conversion of the whole row, and the product below written into the activation's
    # fresh result: on the 2-core dev VM's CPU, silu_and_mul of 1-128 tokens x 2 x 704 bf16
    # took 5-13% less (IR-path calls of the CPU demo had measured 1.05-1.13x legacy's time).
    x32 = x.float()
    return x32[..., :d], x32[..., d:]


@register_op
def silu_and_mul(x: Tensor) -> Tensor:
    """silu(a) * b, where a, b are the halves of the last dimension."""
    a, b = _halves(x)
    return F.silu(a).mul_(b).to(x.dtype)


@register_op
def mul_and_silu(x: Tensor) -> Tensor:
    """a * silu(b), where a, b are the halves of the last dimension."""
    a, b = _halves(x)
    return F.silu(b).mul_(a).to(x.dtype)


@register_op
def gelu_and_mul(x: Tensor, approximate: str = "none") -> Tensor:
    """gelu(a, approximate) * b; approximate is 'none' (erf) or 'tanh'."""
    if approximate not in _GELU_APPROXIMATIONS:
        raise ValueError(f"approximate must be one of {_GELU_APPROXIMATIONS}, got {approximate!r}")
    a, b = _halves(x)
    return F.gelu(a, approximate=approximate).mul_(b).to(x.dtype)


@register_op
def fatrelu_and_mul(x: Tensor, threshold: float) -> Tensor:
    """(a if a > threshold else 0) * b."""
    a, b = _halves(x)
    return torch.where(a > threshold, a, 0.0).mul_(b).to(x.dtype)


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


@register_op
def gelu_new(x: Tensor) -> Tensor:
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x³))) (GPT-2's GELU)."""
    x32 = x.float()
    return (0.5 * x32 * (1.0 + torch.tanh(_SQRT_2_OVER_PI * (x32 + 0.044715 * x32.pow(3))))).to(x.dtype)


@register_op
def gelu_fast(x: Tensor) -> Tensor:
    """0.5 x (1 + tanh(0.7978845608 x (1 + 0.044715 x²)))."""
    x32 = x.float()
    return (0.5 * x32 * (1.0 + torch.tanh(x32 * 0.7978845608 * (1.0 + 0.044715 * x32 * x32)))).to(x.dtype)


@register_op
def quick_gelu(x: Tensor) -> Tensor:
    """x * sigmoid(1.702 x)."""
    x32 = x.float()
    return (x32 * torch.sigmoid(1.702 * x32)).to(x.dtype)


@register_op
def relu2(x: Tensor) -> Tensor:
    """relu(x)²."""
    return torch.relu(x.float()).square().to(x.dtype)


def _randn(shape: tuple[int, ...], dtype: torch.dtype, device) -> Tensor:
    generator = torch.Generator(device="cpu").manual_seed(0)
    return (2.0 * torch.randn(shape, generator=generator)).to(device=device, dtype=dtype)


def _gated_inputs(num_tokens, hidden_size, dtype, device="cpu"):
    """`hidden_size` is the output width; the input is twice as wide."""
    return (_randn((num_tokens, 2 * hidden_size), dtype, device),)


def _plain_inputs(num_tokens, hidden_size, dtype, device="cpu"):
    return (_randn((num_tokens, hidden_size), dtype, device),)


for _op in (silu_and_mul, mul_and_silu, gelu_and_mul):
    _op.register_input_generator(_gated_inputs)
for _op in (gelu_new, gelu_fast, quick_gelu, relu2):
    _op.register_input_generator(_plain_inputs)


@fatrelu_and_mul.register_input_generator
def _fatrelu_inputs(num_tokens, hidden_size, dtype, device="cpu"):
    return (*_gated_inputs(num_tokens, hidden_size, dtype, device), 0.5)


_TRANSCENDENTAL = "providers use their own exp/tanh/erf, accurate to a few float32 ulps"
for _op in (silu_and_mul, mul_and_silu, gelu_and_mul, fatrelu_and_mul, gelu_new, gelu_fast, quick_gelu, relu2):
    _op.override_tolerance(torch.float32, atol=1e-5, rtol=1e-4, reason=_TRANSCENDENTAL)
