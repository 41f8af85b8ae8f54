"""RotaryEmbedding as a legacy CustomOp (vLLM's rotary_embedding/base.py conventions).

Constructor, ``cos_sin_cache`` buffer and ``forward(positions, query, key=None)
-> (query, key)`` are vLLM's. forward_native is plain torch with vLLM's
arithmetic: the cache is cast to the query's dtype and every product is
rounded in that dtype. forward_cuda stands for vLLM's fused kernel
(``ops.rotary_embedding``): the same arithmetic, written into query and key in
place, which it returns.
"""

from __future__ import annotations

import math

import torch

from ..custom_op import CustomOp


@CustomOp.register("rotary_embedding")
class RotaryEmbedding(CustomOp):
    """Rotary position embedding over the first `rotary_dim` features of each head."""

    def __init__(self, head_size: int, rotary_dim: int, max_position_embeddings: int, base: float,
                 is_neox_style: bool, dtype: torch.dtype) -> None:
        super().__init__()
        if rotary_dim % 2 or not 0 < rotary_dim <= head_size:
            raise ValueError(f"rotary_dim must be even and in [2, head_size={head_size}], got {rotary_dim}")
        self.head_size = head_size
        self.rotary_dim = rotary_dim
        self.max_position_embeddings = max_position_embeddings
        self.base = base
        self.is_neox_style = is_neox_style
        self.dtype = dtype
        self.cos_sin_cache: torch.Tensor
        self.register_buffer("cos_sin_cache", self._compute_cos_sin_cache().to(dtype), persistent=False)

    def _compute_inv_freq(self, base: float) -> torch.Tensor:
        """f_i = base^(-2i / rotary_dim), in float32 on the CPU."""
        return 1.0 / (base ** (torch.arange(0, self.rotary_dim, 2, dtype=torch.float) / self.rotary_dim))

    def _compute_cos_sin_cache(self) -> torch.Tensor:
        """``[max_position_embeddings, rotary_dim]``: cos(t f_i), then sin(t f_i)."""
        angles = torch.outer(torch.arange(self.max_position_embeddings, dtype=torch.float),
                             self._compute_inv_freq(self.base))
        return torch.cat((angles.cos(), angles.sin()), dim=-1)

    def _match_cos_sin_cache_dtype(self, query: torch.Tensor) -> torch.Tensor:
        """The cache on query's device and in its dtype; kept there (as vLLM does) outside tracing."""
        cache = self.cos_sin_cache
        if cache.device == query.device and cache.dtype == query.dtype:
            return cache
        cache = cache.to(query.device, dtype=query.dtype)
        if not torch.compiler.is_compiling():
            self.cos_sin_cache = cache
        return cache

    def _rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        heads = x.view(cos.shape[0], math.prod(shape[1:]) // self.head_size, self.head_size)
        rot, rest = heads[..., : self.rotary_dim], heads[..., self.rotary_dim :]
        if self.is_neox_style:
            a, b = rot.chunk(2, dim=-1)
        else:
            a, b = rot[..., 0::2], rot[..., 1::2]
        ra, rb = a * cos - b * sin, b * cos + a * sin
        rot = torch.cat((ra, rb), dim=-1) if self.is_neox_style else torch.stack((ra, rb), dim=-1).flatten(-2)
        return torch.cat((rot, rest), dim=-1).reshape(shape)

    def forward_native(self, positions: torch.Tensor, query: torch.Tensor,
                       key: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        cache = self._match_cos_sin_cache_dtype(query)
        cos, sin = cache.index_select(0, positions.flatten()).unsqueeze(-2).chunk(2, dim=-1)
        query = self._rotate(query, cos, sin)
        # key is None where layers share another layer's KV cache.
        return query, None if key is None else self._rotate(key, cos, sin)

    def forward_cuda(self, positions: torch.Tensor, query: torch.Tensor,
                     key: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        # vLLM's ops.rotary_embedding: rotates query and key in place.
        new_query, new_key = self.forward_native(positions, query, key)
        query.copy_(new_query)
        if key is not None:
            key.copy_(new_key)
        return query, key

    def extra_repr(self) -> str:
        return (f"head_size={self.head_size}, rotary_dim={self.rotary_dim}, "
                f"max_position_embeddings={self.max_position_embeddings}, base={self.base}, "
                f"is_neox_style={self.is_neox_style}")
