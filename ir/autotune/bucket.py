"""Signature buckets: calls in one bucket share a tuned choice.

The default bucket of a call is, per argument:
- an activation tensor (see `IrOp.activations`): dtype, device type, its last
  dimension exactly and its token count (the product of the other dimensions)
  rounded up to a power of two, so 100 and 128 tokens share a bucket;
- any other tensor: dtype, device type and its whole shape;
- None, bool, int and str values exactly (they select code paths);
- floats are left out (epsilon, thresholds: they do not change the cost).

An op overrides this with ``op.tuning_bucket = fn``, ``fn(op, args, kwargs) -> str``.
"""

from __future__ import annotations

from typing import Any

import torch


def _pow2_ceil(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def _tensor_key(t: torch.Tensor, activation: bool) -> str:
    where = f"{str(t.dtype).removeprefix('torch.')}@{t.device.type}"
    if activation and t.dim() >= 1:
        last = int(t.shape[-1])
        tokens = t.numel() // last if last else 0
        return f"{where}:T{_pow2_ceil(int(tokens))}x{last}"
    return f"{where}:{'x'.join(str(int(d)) for d in t.shape)}"


def _value_key(value: Any) -> str | None:
    if isinstance(value, float):
        return None
    if value is None or isinstance(value, (bool, int, str)):
        return repr(value)
    return type(value).__name__


def default_bucket(op, args: tuple, kwargs: dict) -> str:
    """The bucket key of a call (see the module docstring)."""
    names = list(op.signature.parameters)
    activations = set(op.activations)
    parts = []
    items = list(zip(names, args)) + list(kwargs.items())
    for name, value in items:
        if isinstance(value, torch.Tensor):
            parts.append(f"{name}={_tensor_key(value, name in activations)}")
        else:
            key = _value_key(value)
            if key is not None:
                parts.append(f"{name}={key}")
    return ",".join(parts)


def is_concrete(args: tuple, kwargs: dict) -> bool:
    """False when a tensor has symbolic sizes (dynamic-shape tracing): nothing to measure."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor) and any(not isinstance(d, int) for d in value.shape):
            return False
    return True
