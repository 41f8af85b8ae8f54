"""Ports of the activation layers (vLLM's activation.py) onto IR ops: x -> op(x, attrs)."""

from __future__ import annotations

from . import Port, Variant, register_port

_GATED_ODD = {"odd last dimension cannot be split in halves": lambda layer, x: x.shape[-1] % 2 == 1}

for _name, _attrs, _refuse in (
    ("silu_and_mul", (), _GATED_ODD),
    ("mul_and_silu", (), _GATED_ODD),
    ("gelu_and_mul", ("self.approximate",), _GATED_ODD),
    ("fatrelu_and_mul", ("self.threshold",), _GATED_ODD),
    ("gelu_new", (), {}),
    ("gelu_fast", (), {}),
    ("quick_gelu", (), {}),
    ("relu2", (), {}),
):
    register_port(Port(name=_name, params=("x",), refuse=_refuse,
                       variants=(Variant(op=_name, args=("x", *_attrs)),)))
