"""FP8 quantization (and RMS norm fused with it): semantics, input generators, tolerances.

Conventions (those of vLLM's fp8 kernels and QuantFP8.forward_native):

- FP8 is ``torch.float8_e4m3fn``; `FP8_MAX` = 448, the largest finite value.
- A dynamic scale is ``max(amax / FP8_MAX, MIN_SCALE)`` in float32, where amax is
  the largest ``|x|`` of the tensor, token or group. `MIN_SCALE` = 1 / (448 * 512)
  keeps an all-zero row from dividing by zero (its values quantize to 0).
- ``q = clamp(x_f32 / scale, -FP8_MAX, FP8_MAX)`` rounded to nearest (even) FP8:
  values beyond the scale saturate instead of becoming NaN. The division is
  IEEE float32 (vLLM's kernels multiply by a reciprocal: a provider doing so
  may land one FP8 step away at rounding boundaries, inside the tolerance).
- Scales are float32: ``[1]`` per tensor, ``[..., 1]`` per token,
  ``[..., H / group_size]`` per group. A static scale is a one-element tensor.
- ``scale_ub`` caps the per-token amax (vLLM's meaning, despite the name):
  ``scale = max(min(amax, scale_ub) / FP8_MAX, MIN_SCALE)``.
- Fused ops are exactly the unfused pair: the norm output is rounded to x's
  dtype, then quantized (and the fused add's residual is rounded to x's dtype
  before it is normalised, as in `fused_add_rms_norm`).

Tolerances: FP8 outputs are compared dequantized, ``dequantize(q, scale)``; an
op's tolerance for x's dtype applies to those values, `scale_tolerance` to the
scales, and its tolerance for ``float8_e4m3fn`` to raw q values (what shadow
mode compares output by output).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..op import register_op
from ..tolerances import Tolerance, default_tolerance
from .layernorm import fused_add_rms_norm, rms_norm

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8_DTYPE).max)  # 448.0
MIN_SCALE = 1.0 / (FP8_MAX * 512.0)
"""Smallest dynamic scale (vLLM's min scaling factor): no division by zero on all-zero rows."""


# ------------------------------------------------------------------ helpers


def _quantize(x32: Tensor, scale: Tensor) -> Tensor:
    """x32 (float32) / scale (broadcastable, float32), saturated to the FP8 range, rounded to FP8."""
    return (x32 / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)


def _scale_of(amax: Tensor) -> Tensor:
    # Divide by a tensor, not a Python float: CUDA's div kernel turns a scalar divisor
    # into a multiplication by its reciprocal, which rounds some scales one ulp off the
    # IEEE quotient (and so some q one FP8 step off), on the GPU only.
    return (amax.float() / torch.full((), FP8_MAX, device=amax.device)).clamp(min=MIN_SCALE)


def _tensor_amax(x: Tensor) -> Tensor:
    if x.numel() == 0:
        return torch.zeros(1, dtype=torch.float32, device=x.device)
    return x.abs().amax().float().reshape(1)


def _token_scales(x: Tensor, scale_ub: Tensor | None) -> Tensor:
    amax = x.abs().amax(dim=-1, keepdim=True).float()
    if scale_ub is not None:
        amax = torch.minimum(amax, scale_ub.float().reshape(()))
    return _scale_of(amax)


def _check_static_scale(scale: Tensor) -> Tensor:
    if scale.numel() != 1:
        raise ValueError(f"a static per-tensor scale has one element; got shape {tuple(scale.shape)}")
    return scale.float().reshape(())


def dequantize(q: Tensor, scale: Tensor) -> Tensor:
    """``q * scale`` in float32, broadcasting a per-tensor, per-token or per-group scale over q."""
    q32 = q.float()
    if scale.numel() == 1:
        return q32 * scale.float().reshape(())
    groups = scale.shape[-1]
    if q.shape[-1] % groups:
        raise ValueError(f"{groups} scales per row do not divide a row of {q.shape[-1]}")
    return q32 * scale.float().repeat_interleave(q.shape[-1] // groups, dim=-1)


def scale_tolerance(dtype: torch.dtype) -> Tolerance:
    """Tolerance for scales computed from an input of `dtype`: amax differs by one rounding
    of that dtype at most (a fused norm's output), so scales match within its default."""
    base = default_tolerance(dtype)
    return Tolerance(base.atol * MIN_SCALE, base.rtol, "scales: one rounding of the input dtype in amax")


# ---------------------------------------------------------------- plain quant


@register_op
def static_scaled_fp8_quant(x: Tensor, scale: Tensor) -> Tensor:
    """q = fp8(clamp(x / scale, ±448)) with a given one-element float32 scale."""
    return _quantize(x.float(), _check_static_scale(scale))


@register_op
def dynamic_scaled_fp8_quant(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-tensor dynamic quant: scale = max(amax(|x|) / 448, MIN_SCALE) [1]; returns (q, scale)."""
    scale = _scale_of(_tensor_amax(x))
    return _quantize(x.float(), scale), scale


@register_op
def dynamic_per_token_scaled_fp8_quant(x: Tensor, scale_ub: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Per-token dynamic quant (amax over the last dim, capped by scale_ub); returns (q, scales [..., 1])."""
    scales = _token_scales(x, scale_ub)
    return _quantize(x.float(), scales), scales


@register_op
def per_token_group_fp8_quant(x: Tensor, group_size: int) -> tuple[Tensor, Tensor]:
    """Dynamic quant per group of `group_size` consecutive elements of a row; returns (q, scales [..., H/group])."""
    hidden = x.shape[-1]
    if group_size <= 0 or hidden % group_size:
        raise ValueError(f"group_size {group_size} must be positive and divide the hidden size {hidden}")
    grouped = x.float().reshape(*x.shape[:-1], hidden // group_size, group_size)
    scales = _scale_of(grouped.abs().amax(dim=-1, keepdim=True))
    q = _quantize(grouped, scales).reshape(x.shape)
    return q, scales.squeeze(-1)


# ------------------------------------------------------------- norm + quant


@register_op
def rms_norm_static_fp8_quant(x: Tensor, weight: Tensor | None, epsilon: float, scale: Tensor) -> Tensor:
    """static_scaled_fp8_quant(rms_norm(x, weight, epsilon), scale)."""
    return static_scaled_fp8_quant.native(rms_norm.native(x, weight, epsilon), scale)


@register_op
def fused_add_rms_norm_static_fp8_quant(x: Tensor, x_residual: Tensor, weight: Tensor | None, epsilon: float,
                                        scale: Tensor) -> tuple[Tensor, Tensor]:
    """(out, residual) = fused_add_rms_norm(x, x_residual, weight, epsilon); returns (static quant of out, residual)."""
    out, residual = fused_add_rms_norm.native(x, x_residual, weight, epsilon)
    return static_scaled_fp8_quant.native(out, scale), residual


@register_op
def rms_norm_dynamic_per_token_fp8_quant(x: Tensor, weight: Tensor | None, epsilon: float,
                                         scale_ub: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """dynamic_per_token_scaled_fp8_quant(rms_norm(x, weight, epsilon), scale_ub): (q, scales [..., 1])."""
    return dynamic_per_token_scaled_fp8_quant.native(rms_norm.native(x, weight, epsilon), scale_ub)


# ---------------------------------------------------------- input generators


def _activation(num_tokens: int, hidden_size: int, dtype: torch.dtype, device, seed: int) -> Tensor:
    generator = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(num_tokens, hidden_size, generator=generator)
    if num_tokens > 1:
        x[1] *= 40.0  # a loud token next to quiet ones: per-token scales must differ
    return x.to(device=device, dtype=dtype)


def _weight(hidden_size: int, dtype: torch.dtype, device) -> Tensor:
    generator = torch.Generator(device="cpu").manual_seed(1)
    return (1.0 + 0.1 * torch.randn(hidden_size, generator=generator)).to(device=device, dtype=dtype)


def _static_scale(device, value: float = 2.5 / FP8_MAX) -> Tensor:
    """A scale under which |x| > 2.5 saturates: the generated inputs exercise the clamp."""
    return torch.tensor([value], dtype=torch.float32, device=device)


def _scale_ub(device) -> Tensor:
    """Caps amax at 30: the loud token (x40) is capped, the others are not."""
    return torch.tensor([30.0], dtype=torch.float32, device=device)


def group_size_for(hidden_size: int) -> int:
    """The largest power of two up to 128 (vLLM's usual group) that divides `hidden_size`."""
    size = 128
    while hidden_size % size:
        size //= 2
    return size


@static_scaled_fp8_quant.register_input_generator
def _static_inputs(num_tokens, hidden_size, dtype, device="cpu"):
    return _activation(num_tokens, hidden_size, dtype, device, 0), _static_scale(device)


@dynamic_scaled_fp8_quant.register_input_generator
def _dynamic_inputs(num_tokens, hidden_size, dtype, device="cpu"):
    return (_activation(num_tokens, hidden_size, dtype, device, 0),)


@dynamic_per_token_scaled_fp8_quant.register_input_generator
def _per_token_inputs(num_tokens, hidden_size, dtype, device="cpu"):
    return _activation(num_tokens, hidden_size, dtype, device, 0), _scale_ub(device)


@per_token_group_fp8_quant.register_input_generator
def _group_inputs(num_tokens, hidden_size, dtype, device="cpu"):
    return _activation(num_tokens, hidden_size, dtype, device, 0), group_size_for(hidden_size)


@rms_norm_static_fp8_quant.register_input_generator
def _norm_static_inputs(num_tokens, hidden_size, dtype, device="cpu"):
    # Normalised values are ~N(0, 1): a scale of 2.5/448 saturates their tails.
    return (_activation(num_tokens, hidden_size, dtype, device, 0), _weight(hidden_size, dtype, device), 1e-6,
            _static_scale(device))


@fused_add_rms_norm_static_fp8_quant.register_input_generator
def _fused_add_static_inputs(num_tokens, hidden_size, dtype, device="cpu"):
    return (_activation(num_tokens, hidden_size, dtype, device, 0),
            _activation(num_tokens, hidden_size, dtype, device, 2),
            _weight(hidden_size, dtype, device), 1e-6, _static_scale(device))


@rms_norm_dynamic_per_token_fp8_quant.register_input_generator
def _norm_dynamic_inputs(num_tokens, hidden_size, dtype, device="cpu"):
    # Normalised rows have amax ~3: a cap of 2 applies to most of them.
    return (_activation(num_tokens, hidden_size, dtype, device, 0), _weight(hidden_size, dtype, device), 1e-6,
            torch.tensor([2.0], dtype=torch.float32, device=device))


# ---------------------------------------------------------------- tolerances
# Dequantized values: a provider may put a value one FP8 step away from native
# where x / scale falls on a rounding boundary (a reciprocal multiply, or a
# fused norm output one ulp of x's dtype away). One e4m3 step (3 mantissa bits)
# is at most 2^-3 of the value; below the smallest normal (2^-6 * scale) steps
# are 2^-9 * scale, which atol covers for scales up to ~0.5 (amax 224).
_FP8_STEP = "one e4m3 rounding step (2^-3 relative) where x / scale lands on a rounding boundary"
_FP8_RAW = "raw q: one e4m3 step (2^-3 relative, 2^-9 absolute among subnormals)"

OPS = (static_scaled_fp8_quant, dynamic_scaled_fp8_quant, dynamic_per_token_scaled_fp8_quant,
       per_token_group_fp8_quant, rms_norm_static_fp8_quant, fused_add_rms_norm_static_fp8_quant,
       rms_norm_dynamic_per_token_fp8_quant)

for _op in OPS:
    for _dtype in (torch.float32, torch.float16, torch.bfloat16):
        _op.override_tolerance(_dtype, atol=1e-3, rtol=0.125, reason=f"dequantized values: {_FP8_STEP}")
    _op.override_tolerance(FP8_DTYPE, atol=2.0**-9, rtol=0.125, reason=_FP8_RAW)
