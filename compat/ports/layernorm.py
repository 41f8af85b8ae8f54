"""Ports of the RMS-norm layers (vLLM's layernorm.py) onto IR ops."""

from __future__ import annotations

import torch

from .. import flags
from . import _MISSING, TENSOR, Port, Variant, module_attr, register_port


_class_attrs: dict[tuple[type, str], object] = {}
"""(layer class, name) -> its class attribute, or _MISSING: looked up once per class and
settings generation (cleared on every change, `compat.override` included)."""
flags.on_change(_class_attrs.clear)
_UNSEEN = object()
_is_compiling = torch.compiler.is_compiling


def _attr(layer, name: str, default=None):
    """A plain attribute of the layer or its class. Not getattr on the layer: a missing
    name makes nn.Module.__getattr__ build and raise an AttributeError, ~1 µs per refusal
    check; nor on the class every call: a miss there cost 0.75 µs (dev VM), and these
    checks run on every `on` call (_weightless: 1.46 -> 0.95 µs)."""
    found = layer.__dict__.get(name, _MISSING)
    if found is not _MISSING:
        return found
    key = (type(layer), name)
    found = _class_attrs.get(key, _UNSEEN)
    if found is _UNSEEN:
        found = getattr(type(layer), name, _MISSING)
        if not _is_compiling():  # Dynamo breaks the graph on a dict mutated mid-trace
            _class_attrs[key] = found
    return default if found is _MISSING else found



def _var_override(layer, x, residual) -> bool:
    return _attr(layer, "variance_size_override") is not None


def _weight_dtype_differs(layer, x, residual) -> bool:
    # Older vLLM returned x.to(dtype) * weight, promoted to the weight's dtype;
    # vLLM 0.33 rounds the normed x to the weight's dtype before the product.
    # IR ops take the product in float32 and return x's dtype.
    return module_attr(layer, "weight").dtype != x.dtype


def _weightless(layer, x, residual) -> bool:
    # vLLM 0.33 RMSNorm(has_weight=False) passes weight=None (pass_weight /
    # pass_weight_add); the port passes self.weight, so it declines such calls.
    flag = "pass_weight" if residual is None else "pass_weight_add"
    return _attr(layer, flag, True) is False or _attr(layer, "has_weight", True) is False


_REFUSE = {
    "variance_size_override (norm over a prefix of the hidden size) has no IR op": _var_override,
    "weight dtype differs from x dtype (legacy result would be promoted)": _weight_dtype_differs,
    "weightless norm (has_weight=False / pass_weight=False): the port passes a weight": _weightless,
}

register_port(Port(
    name="rms_norm",
    params=("x", "residual=None"),
    refuse=_REFUSE,
    variants=(
        Variant(op="rms_norm", when={"residual": None},
                args=("x", "self.weight", "self.variance_epsilon")),
        # vLLM's fused kernel adds in place: x <- normed output, residual <- x + residual,
        # and returns the two input tensors.
        Variant(op="fused_add_rms_norm", when={"residual": TENSOR},
                args=("x", "residual", "self.weight", "self.variance_epsilon"),
                returns=(0, 1), write_back={"x": 0, "residual": 1}),
    ),
))

register_port(Port(
    name="gemma_rms_norm",
    params=("x", "residual=None"),
    refuse={"weight dtype differs from x dtype": _weight_dtype_differs},
    variants=(
        Variant(op="gemma_rms_norm", when={"residual": None},
                args=("x", "self.weight", "self.variance_epsilon")),
        # Gemma's norm is never in place (forward_cuda compiles forward_native).
        Variant(op="gemma_fused_add_rms_norm", when={"residual": TENSOR},
                args=("x", "residual", "self.weight", "self.variance_epsilon"),
                returns=(0, 1), inplace_methods=()),
    ),
))
