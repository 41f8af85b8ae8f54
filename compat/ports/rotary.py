"""Port of vLLM's RotaryEmbedding (registered ``rotary_embedding``) onto the IR op of the same name.

``layer(positions, query, key=None)`` is ``rotary_embedding(positions, query,
key, layer.head_size, layer.rotary_dim, layer.cos_sin_cache,
layer.is_neox_style)``. vLLM's fused kernel (forward_cuda, and forward_xpu
when there is a key) rotates query and key in place and returns them: the
variants write the IR outputs back into them on those paths.

The IR op returns an empty tensor where key is None (a torch schema cannot
return None); `_RotaryPort` gives the caller vLLM's ``(query, None)``.

Refused (the legacy path runs, counted as ``port_refused``):
- an ``offsets`` argument (older vLLM's batched rotary for multi-LoRA): not
  in the call convention, so binding the call refuses it;
- a class whose forward methods are not RotaryEmbedding's own: vLLM
  registers several variants under ``rotary_embedding`` that inherit the name
  but compute something else (DeepSeek's scaling, multimodal M-RoPE with
  ``[3, T]`` positions, ...). Variants that only change the cache
  (linear / dynamic-NTK / YaRN / Llama-3 scaling) keep the base forward
  and are ported: the cache is an argument of the op;
- a cache on another device than the query (the legacy path moves it there
  on its first call; later calls are compared).
"""

from __future__ import annotations

from typing import Any

import irshim.ir.ops.rotary  # noqa: F401  (registers the op this port maps onto)

from . import TENSOR, Port, PortPlan, Refusal, Variant, register_port

FAITHFUL_CLASSES = frozenset({
    "irshim.compat.layers.rotary_embedding.RotaryEmbedding",
    "vllm.model_executor.layers.rotary_embedding.RotaryEmbedding",  # single-module layout (vLLM <= 0.9)
    "vllm.model_executor.layers.rotary_embedding.base.RotaryEmbedding",
    "vllm.model_executor.layers.rotary_embedding.base.RotaryEmbeddingBase",
})
"""Classes whose forward_* methods compute exactly the op (rotation by the cache rows)."""

_BASE_MODULES = ("irshim.compat.custom_op", "vllm.model_executor.custom_op", "torch.")

_foreign: dict[type, str | None] = {}


def foreign_forward(cls: type) -> str | None:
    """``Class.method`` of the first forward method not defined by a faithful class or a base; cached."""
    if cls in _foreign:
        return _foreign[cls]
    found = None
    for name in sorted(n for n in dir(cls) if n.startswith("forward")):
        owner = next((k for k in cls.__mro__ if name in k.__dict__), None)
        if owner is None:
            continue
        qualname = f"{owner.__module__}.{owner.__qualname__}"
        if qualname not in FAITHFUL_CLASSES and not owner.__module__.startswith(_BASE_MODULES):
            found = f"{owner.__qualname__}.{name}"
            break
    _foreign[cls] = found
    return found


def _other_forward(layer: Any, positions: Any, query: Any, key: Any) -> bool:
    return foreign_forward(type(layer)) is not None


def _cache_elsewhere(layer: Any, positions: Any, query: Any, key: Any) -> bool:
    cache = layer.cos_sin_cache
    return cache.is_cuda != query.is_cuda or cache.get_device() != query.get_device()


_REFUSE = {
    "the class overrides RotaryEmbedding's forward methods (another rotary variant: not this op)": _other_forward,
    "cos_sin_cache is on another device than query (the legacy path moves it on its first call)": _cache_elsewhere,
}

_ARGS = ("positions", "query", "key", "self.head_size", "self.rotary_dim", "self.cos_sin_cache",
         "self.is_neox_style")


class _KeylessPlan(PortPlan):
    """A plan for a call without key: ``(query, None)`` like the legacy method."""

    __slots__ = ()

    def run(self) -> Any:
        return super().run()[0], None

    def rebind(self, mapping: dict[int, Any]) -> PortPlan:
        plan = super().rebind(mapping)
        return _KeylessPlan(plan.op, plan.args, plan.returns, plan.write_back)


class _RotaryPort(Port):
    """The table's Port, with key=None calls returning None in the key's place."""

    def plan(self, layer: Any, args: tuple, kwargs: Any, legacy_method: str) -> PortPlan | str:
        plan = super().plan(layer, args, kwargs, legacy_method)
        if isinstance(plan, PortPlan) and plan.args[2] is None:
            return _KeylessPlan(plan.op, plan.args, plan.returns, plan.write_back)
        return plan

    def call_on(self, layer: Any, args: tuple, kwargs: Any, legacy_method: str) -> Any:
        out = super().call_on(layer, args, kwargs, legacy_method)
        if type(out) is Refusal or out[1] is None:
            return out
        key = args[2] if len(args) > 2 else kwargs.get("key")
        return out if key is not None else (out[0], None)


register_port(_RotaryPort(
    name="rotary_embedding",
    params=("positions", "query", "key=None"),
    refuse=_REFUSE,
    variants=(
        Variant(op="rotary_embedding", when={"key": TENSOR}, args=_ARGS, returns=(0, 1),
                write_back={"query": 0, "key": 1}, inplace_methods=("forward_cuda", "forward_xpu")),
        # vLLM's XPU kernel needs a key: without one, forward_xpu runs forward_native (not in place).
        Variant(op="rotary_embedding", when={"key": None}, args=_ARGS, returns=(0, 1),
                write_back={"query": 0}, inplace_methods=("forward_cuda",)),
    ),
))
