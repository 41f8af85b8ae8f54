"""Automatic IR ops for intercepted classes without a port.

The op's providers are the class's own methods: ``native`` is forward_native,
and every platform method the class really implements (not a base default
that delegates elsewhere) is a provider named after it (``forward_cuda``, ...),
supported on its device family only. Its priority comes from the IR's sources
(`IRSHIM_PRIORITY`, e.g. ``quant_fp8=native``; `irshim.ir.set_priority` does
not know automatic ops, use `op.set_priority`), and by default mirrors the
legacy choice: the platform method when the class is enabled in custom_ops,
else ``native``. So turning an unported op `on` changes which code decides,
not which code runs.

A call runs the chosen method on the layer itself, so parameters, buffers,
scalar attributes, optional and keyword arguments, tuple returns and in-place
methods (returning their input or None) all behave as in the legacy call. In
shadow mode the method runs on snapshots of the inputs, with the layer's
buffers swapped for copies and its attributes restored afterwards, so the IR
side cannot change what the model sees.

Automatic ops live in `registry` (by name), not in `irshim.ir.ops`: they have
no torch schema (a method of a module is not a pure function), so under
torch.compile the chosen method is traced inline instead of staying one node.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import torch

from irshim.ir import ConfigError, device_family
from irshim.ir import priority as _ir_priority
from irshim.ir.tolerances import Tolerance, comparison_tolerance

from . import flags as _flags
from .custom_op import FORWARD_METHODS, PLATFORM_METHOD

PROVIDER_FAMILY = {"forward_cuda": "cuda", "forward_hip": "rocm", "forward_cpu": "cpu", "forward_xpu": "xpu"}
"""forward_* -> the device family it runs on (forward_tpu / forward_oot: none of ours)."""

registry: dict[str, AutoOp] = {}
_lock = threading.Lock()


class AutoOp:
    """An IR op whose providers are one class's forward_* methods."""

    def __init__(self, cls: type, name: str, base: type):
        from .dispatch import effective_method

        self.cls, self.name, self.base = cls, name, base
        self.providers: dict[str, str] = {"native": "forward_native"}
        for method in FORWARD_METHODS[1:]:
            effective = effective_method(cls, method, base)
            if effective != method or getattr(cls, method, None) is base.__dict__.get(method):
                continue  # a base default (delegates, or raises NotImplementedError)
            self.providers[method] = method
        self._overrides: list[list[str]] = []
        self._cache: tuple[tuple[int, int], list[str]] | None = None

    def __repr__(self) -> str:
        return f"AutoOp({self.name!r}, providers={list(self.providers)})"

    def supported(self, provider: str) -> bool:
        family = PROVIDER_FAMILY.get(provider)
        return provider == "native" or family == device_family()

    # --------------------------------------------------------------- priority
    def default_priority(self) -> list[str]:
        enabled = getattr(self.cls, "enabled", None)
        try:
            on = bool(enabled()) if callable(enabled) else True
        except Exception:
            on = True
        method = PLATFORM_METHOD.get(device_family(), "forward_cuda")
        from .dispatch import effective_method

        method = effective_method(self.cls, method, self.base)
        return [method, "native"] if on and method in self.providers else ["native"]

    def requested_priority(self) -> tuple[list[str], str]:
        if self._overrides:
            return list(self._overrides[-1]), "op.set_priority"
        requested, source = _ir_priority.requested(self.name, device_family())
        if source == _ir_priority.ENV_VAR:
            unknown = [p for p in requested if p not in self.providers]
            if unknown:
                raise ConfigError(_ir_priority.ENV_VAR, _ir_priority.env_value(),
                                  f"providers of automatic op {self.name!r}: {sorted(self.providers)}",
                                  f"{self.cls.__qualname__} has no method(s) for {unknown}")
            return requested, source
        if source in ("none",) or source.startswith("platform default"):
            return self.default_priority(), "legacy choice"
        return requested, source

    def get_priority(self) -> list[str]:
        key = (_ir_priority.generation, _flags.generation)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        requested, _ = self.requested_priority()
        chosen = [p for p in requested if p in self.providers and self.supported(p)]
        if "native" not in chosen:
            chosen.append("native")
        self._cache = (key, chosen)
        return chosen

    def dispatch(self) -> str:
        """The provider a call would run (automatic ops accept every argument)."""
        return self.get_priority()[0]

    @contextlib.contextmanager
    def set_priority(self, providers: list[str]) -> Iterator[None]:
        unknown = [p for p in providers if p not in self.providers]
        if unknown:
            raise ValueError(f"automatic op {self.name!r} has no provider(s) {unknown}; it has {sorted(self.providers)}")
        entry = list(providers)
        self._overrides.append(entry)
        self._cache = None
        try:
            yield
        finally:
            self._overrides.remove(entry)
            self._cache = None

    # ------------------------------------------------------------------ calls
    def plan(self, layer: Any, args: tuple, kwargs: dict, legacy: str, shadow: bool) -> AutoPlan | str:
        provider = self.dispatch()
        method = self.providers[provider]
        if shadow and method == legacy:
            # Never compare code with itself: the candidate becomes the op's semantics.
            provider, method = "native", "forward_native"
            if legacy == "forward_native":
                return "same_code"
        elif method == legacy:
            # The legacy choice itself: run the layer's bound method, which may be
            # more than the plain forward_* (vLLM's maybe_compile wraps
            # forward_native in torch.compile when compile_native is set).
            method = "_forward_method"
        return AutoPlan(self, layer, provider, method, args, kwargs, guard=shadow)


class AutoPlan:
    __slots__ = ("op", "layer", "provider", "method", "args", "kwargs", "guard")

    def __init__(self, op: AutoOp, layer: Any, provider: str, method: str, args: tuple, kwargs: dict,
                 guard: bool):
        self.op, self.layer, self.provider, self.method = op, layer, provider, method
        self.args, self.kwargs, self.guard = args, kwargs, guard

    def label(self) -> str:
        return f"{self.op.name}/{self.provider}"

    def tolerance(self, dtype: torch.dtype) -> Tolerance:
        return comparison_tolerance(dtype)

    def rebind(self, mapping: dict[int, torch.Tensor]) -> AutoPlan:
        def sub(value: Any) -> Any:
            if isinstance(value, torch.Tensor):
                return mapping.get(id(value), value)
            if isinstance(value, (list, tuple)):
                return type(value)(sub(v) for v in value)
            return value

        return AutoPlan(self.op, self.layer, self.provider, self.method, tuple(sub(a) for a in self.args),
                        {k: sub(v) for k, v in self.kwargs.items()}, self.guard)

    def run(self) -> Any:
        fn = getattr(self.layer, self.method)
        if not self.guard:
            return fn(*self.args, **self.kwargs)
        with _guarded(self.layer):
            return fn(*self.args, **self.kwargs)


@contextlib.contextmanager
def _guarded(layer: torch.nn.Module) -> Iterator[None]:
    """Run the IR side without letting it change the layer: buffers are copies, attributes restored."""
    saved_dicts = []
    params = []
    for module in layer.modules():
        saved_dicts.append((module, dict(module.__dict__), dict(module._buffers)))
        for name, buf in module._buffers.items():
            if buf is not None:
                module._buffers[name] = buf.clone()
        params.extend((name, p, p._version) for name, p in module._parameters.items()
                      if p is not None and not p.is_inference())
    try:
        yield
    finally:
        for module, attrs, buffers in saved_dicts:
            module.__dict__.clear()
            module.__dict__.update(attrs)
            module._buffers.clear()
            module._buffers.update(buffers)
        changed = [name for name, p, v in params if p._version != v]
        if changed:
            raise RuntimeError(
                f"the IR path of {type(layer).__qualname__} modified parameter(s) {changed} in place; "
                "irshim cannot undo that. Keep this op off (IRSHIM_OPS=-<op>) or give it a port.")


def auto_op_for(cls: type, name: str, base: type) -> AutoOp:
    with _lock:
        op = registry.get(name)
        if op is None or op.cls is not cls:
            op = AutoOp(cls, name, base)
            registry[name] = op
        return op
