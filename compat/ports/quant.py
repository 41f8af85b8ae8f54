"""Port of QuantFP8 (vLLM's ``quant_fp8``, and irshim's layer of that name) onto the FP8 IR ops.

Which IR op a call maps to depends on the layer's configuration, not on which
arguments are None, so the port holds one table per mode and picks it from the
layer: static per-tensor -> ``static_scaled_fp8_quant`` (the caller's scale is
returned beside q, as QuantFP8 does), dynamic per-tensor / per-token /
per-group -> the matching dynamic op. Everything else is refused (legacy runs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from irshim.ir.ops import quant as _quant_ops  # noqa: F401  (registers the FP8 ops the tables name)

from . import TENSOR, Port, PortPlan, Refusal, Variant, register_port

PARAMS = ("x", "scale=None", "scale_ub=None")


def _shape(layer) -> tuple[int, int]:
    return tuple(layer.group_shape)


def _mode(layer) -> str | None:
    row_col = _shape(layer)
    if getattr(layer, "is_group_quant", False):
        return None if layer.static else "group"
    if layer.static:
        return "static" if row_col == (-1, -1) else None
    return {(1, -1): "per_token", (-1, -1): "per_tensor"}.get(row_col)


REFUSE = {
    "ROCm FP8 (float8_e4m3fnuz, max 224) has no IR op": lambda layer, x, scale, scale_ub: torch.version.hip is not None,
    "num_token_padding pads q with rows the IR ops do not produce":
        lambda layer, x, scale, scale_ub: getattr(layer, "num_token_padding", None) is not None,
    "column-major or ue8m0 (power-of-two) scales have no IR op":
        lambda layer, x, scale, scale_ub: bool(getattr(layer, "column_major_scales", False)
                                                or getattr(layer, "use_ue8m0", False)),
    "static scales other than one per tensor have no IR op":
        lambda layer, x, scale, scale_ub: layer.static and (_mode(layer) is None or scale is None
                                                            or scale.numel() != 1),
    "this dynamic group shape has no IR op": lambda layer, x, scale, scale_ub: _mode(layer) is None,
    "group size does not divide the hidden size (legacy pads the last group)":
        lambda layer, x, scale, scale_ub: _mode(layer) == "group" and x.shape[-1] % layer.group_size != 0,
    "scale_ub only applies to dynamic per-token quantization":
        lambda layer, x, scale, scale_ub: scale_ub is not None and _mode(layer) != "per_token",
}

_MODES: dict[str, Port] = {
    mode: Port(name="quant_fp8", params=PARAMS, refuse=REFUSE, variants=(variant,))
    for mode, variant in {
        "static": Variant(op="static_scaled_fp8_quant", when={"scale": TENSOR}, args=("x", "scale")),
        "per_tensor": Variant(op="dynamic_scaled_fp8_quant", when={"scale": None}, args=("x",), returns=(0, 1)),
        "per_token": Variant(op="dynamic_per_token_scaled_fp8_quant", when={"scale": None},
                             args=("x", "scale_ub"), returns=(0, 1)),
        "group": Variant(op="per_token_group_fp8_quant", when={"scale": None},
                         args=("x", "self.group_size"), returns=(0, 1)),
    }.items()
}
_NO_MODE = Refusal("this QuantFP8 configuration has no IR op")


class _StaticPlan(PortPlan):
    """A static quant plan: returns (q, the caller's scale) like QuantFP8."""

    __slots__ = ()

    def run(self) -> Any:
        return super().run(), self.args[1]

    def rebind(self, mapping: dict[int, Any]) -> _StaticPlan:
        plan = super().rebind(mapping)
        return _StaticPlan(plan.op, plan.args, plan.returns, plan.write_back)


class QuantFP8Port(Port):
    """Dispatches to the table of the layer's mode (see `_MODES`)."""

    def plan(self, layer: Any, args: tuple, kwargs: Mapping[str, Any], legacy_method: str) -> PortPlan | str:
        mode = _mode(layer)
        port = _MODES.get(mode) if mode else None
        if port is None:
            bound = self.bind(args, kwargs)
            if isinstance(bound, str):
                return bound
            for reason, predicate in REFUSE.items():
                try:
                    if predicate(layer, **bound):
                        return reason
                except Exception as exc:  # a predicate that cannot decide refuses
                    return f"{reason} (check raised {type(exc).__name__}: {exc})"
            return str(_NO_MODE)
        plan = port.plan(layer, args, kwargs, legacy_method)
        if mode == "static" and isinstance(plan, PortPlan):
            return _StaticPlan(plan.op, plan.args, plan.returns, plan.write_back)
        return plan

    def call_on(self, layer: Any, args: tuple, kwargs: Mapping[str, Any], legacy_method: str) -> Any:
        mode = _mode(layer)
        if mode is None:
            plan = self.plan(layer, args, kwargs, legacy_method)
            return Refusal(plan) if isinstance(plan, str) else plan.run()
        result = _MODES[mode].call_on(layer, args, kwargs, legacy_method)  # the mode table's compiled runner
        if mode == "static" and type(result) is not Refusal:
            bound = self.bind(args, kwargs)
            return result, bound["scale"]
        return result


register_port(QuantFP8Port(
    name="quant_fp8",
    params=PARAMS,
    refuse=REFUSE,
    variants=tuple(port.variants[0] for port in _MODES.values()),
))
