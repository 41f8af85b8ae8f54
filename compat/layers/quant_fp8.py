"""QuantFP8 as a legacy CustomOp (vLLM's input_quant_fp8.py conventions).

``QuantFP8(static, group_shape)``; ``forward(x, scale=None, scale_ub=None) -> (q, scale)``:
static quantization takes the scale and returns it; dynamic quantization computes
per-tensor, per-token or per-group scales. forward_native follows vLLM's torch
path (multiply by the reciprocal scale; per-group pads the last group); forward_cuda
stands for vLLM's kernels and uses the IR ops' semantics where they apply.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F

from irshim.ir.ops import quant as qops

from ..custom_op import CustomOp

FP8_DTYPE = qops.FP8_DTYPE
FP8_MAX = qops.FP8_MAX
MIN_SCALING_FACTOR = qops.MIN_SCALE


class _GroupShape(NamedTuple):
    row: int
    col: int


class GroupShape(_GroupShape):
    """Scale granularity ``(row, col)``, -1 meaning the whole dimension (vLLM's)."""

    PER_TENSOR: ClassVar[GroupShape]
    PER_TOKEN: ClassVar[GroupShape]
    PER_CHANNEL: ClassVar[GroupShape]

    def is_per_tensor(self) -> bool:
        return self.row == -1 and self.col == -1

    def is_per_token(self) -> bool:
        return self.row == 1 and self.col == -1

    def is_per_channel(self) -> bool:
        return self.row == -1 and self.col == 1

    def is_per_group(self) -> bool:
        return self.row == 1 and self.col >= 1


GroupShape.PER_TENSOR = GroupShape(-1, -1)
GroupShape.PER_TOKEN = GroupShape(1, -1)
GroupShape.PER_CHANNEL = GroupShape(-1, 1)


@CustomOp.register("quant_fp8")
class QuantFP8(CustomOp):
    """Quantize activations to FP8 (e4m3fn): static per-tensor, or dynamic per-tensor / per-token / per-group."""

    def __init__(self, static: bool, group_shape: GroupShape, num_token_padding: int | None = None,
                 column_major_scales: bool = False, use_ue8m0: bool | None = None) -> None:
        super().__init__()
        self.static = static
        self.group_shape = GroupShape(*group_shape)
        self.num_token_padding = num_token_padding
        self.column_major_scales = column_major_scales
        self.use_ue8m0 = use_ue8m0
        self.is_group_quant = self.group_shape.is_per_group()
        self.use_per_token_if_dynamic = self.group_shape == GroupShape.PER_TOKEN
        if self.is_group_quant:
            self.group_size = self.group_shape.col
        elif not static and self.group_shape not in (GroupShape.PER_TOKEN, GroupShape.PER_TENSOR):
            raise ValueError(f"dynamic quantization needs a per-token, per-tensor or per-group shape; "
                             f"got {tuple(self.group_shape)}")

    def _check(self, scale, scale_ub) -> None:
        if (scale is not None) != self.static:
            raise ValueError(f"QuantFP8(static={self.static}) called with scale={'a tensor' if scale is not None else None}")
        if scale_ub is not None and (self.static or self.group_shape != GroupShape.PER_TOKEN or scale_ub.numel() != 1):
            raise ValueError("scale_ub needs dynamic per-token quantization and one element")

    def forward_native(self, x: torch.Tensor, scale: torch.Tensor | None = None,
                       scale_ub: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.is_group_quant and not self.static:
            if scale is not None:
                raise ValueError("dynamic group quantization takes no scale")
            return self._group_native(x)
        self._check(scale, scale_ub)
        if scale is None:
            if self.group_shape == GroupShape.PER_TOKEN:
                amax = x.abs().amax(dim=-1, keepdim=True).float()
                if scale_ub is not None:
                    amax = amax.clamp(max=scale_ub)
            else:
                amax = x.abs().amax().reshape(1).float()
            scale = (amax / FP8_MAX).clamp(min=MIN_SCALING_FACTOR)
        out = (x.float() * scale.float().reciprocal()).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
        if self.num_token_padding is not None:
            out = F.pad(out.view(torch.uint8), (0, 0, 0, max(self.num_token_padding - out.shape[0], 0))).view(FP8_DTYPE)
        return out, scale

    def _group_native(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, group = x.shape[-1], self.group_size
        n_groups = -(-hidden // group)
        padded = F.pad(x, (0, n_groups * group - hidden)) if n_groups * group != hidden else x
        grouped = padded.reshape(-1, n_groups, group)
        scales = grouped.abs().amax(dim=-1, keepdim=True).float() / FP8_MAX
        if self.use_ue8m0:
            scales = torch.exp2(torch.ceil(torch.log2(scales)))
        scales = scales.clamp(min=MIN_SCALING_FACTOR)
        q = (grouped / scales).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE).reshape(-1, n_groups * group)
        q = q[..., :hidden].reshape(x.shape)
        scales = scales.squeeze(-1).reshape(*x.shape[:-1], n_groups)
        if self.column_major_scales:
            scales = scales.transpose(-2, -1).contiguous().transpose(-2, -1)
        return q, scales

    def forward_cuda(self, x: torch.Tensor, scale: torch.Tensor | None = None,
                     scale_ub: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        # vLLM's kernels; the layouts they add (padding, column-major or ue8m0 scales)
        # come from the native path.
        if self.num_token_padding is not None or self.column_major_scales or self.use_ue8m0:
            return self.forward_native(x, scale, scale_ub)
        if self.is_group_quant and not self.static:
            if x.shape[-1] % self.group_size:
                return self.forward_native(x, scale, scale_ub)
            return qops.per_token_group_fp8_quant.native(x, self.group_size)
        self._check(scale, scale_ub)
        if self.static:
            if scale.numel() != 1:
                return self.forward_native(x, scale, scale_ub)
            return qops.static_scaled_fp8_quant.native(x, scale), scale
        if self.group_shape == GroupShape.PER_TOKEN:
            return qops.dynamic_per_token_scaled_fp8_quant.native(x, scale_ub)
        return qops.dynamic_scaled_fp8_quant.native(x)

    def extra_repr(self) -> str:
        return f"static={self.static}, group_shape={tuple(self.group_shape)}"
