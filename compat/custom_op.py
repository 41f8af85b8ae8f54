"""irshim's own vLLM-compatible CustomOp base: legacy semantics, registry, custom_ops.

It behaves like vLLM's `vllm.model_executor.custom_op.CustomOp` so that irshim
works, and is tested, without vLLM:

- `@CustomOp.register("rms_norm")` sets `cls.name` and fills `op_registry`;
- `@CustomOp.register_oot` / `register_oot(name="RMSNorm")` substitutes an
  out-of-tree class when the in-tree class *named* so is instantiated;
- `enabled()` / `default_on()` follow the `custom_ops` list (`all` | `none` |
  `+name` | `-name`), settable with `set_custom_ops([...])`;
- `__init__` binds `_forward_method` once: the platform's `forward_*` when the
  op is enabled, `forward_native` otherwise (hip -> cuda; cpu, xpu, tpu and oot
  -> native by default).

The only difference from vLLM: `forward` goes through irshim's shim, which in
`off` mode calls `_forward_method` and nothing else; and `__call__` does what
nn.Module.__call__ does, without its two Python frames while no hook, tracer or
profiler is about.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.autograd.profiler as _autograd_profiler
import torch.compiler as _compiler
import torch.jit._trace as _jit_trace
import torch.nn as nn
import torch.nn.modules.module as _nn_module

from irshim.ir import ConfigError, device_family

from . import flags as _flags

logger = logging.getLogger(__name__)

CUSTOM_OPS = "custom_ops"
_CUSTOM_OPS_SYNTAX = "a list with 'all' or 'none' at most once, then '+name' / '-name' entries"

PLATFORM_METHOD = {"cuda": "forward_cuda", "rocm": "forward_hip", "xpu": "forward_xpu", "cpu": "forward_cpu"}
"""device family -> the forward_* that an enabled op binds on it."""

BASE_DEFAULTS = {
    "forward_hip": "forward_cuda",
    "forward_cpu": "forward_native",
    "forward_xpu": "forward_native",
    "forward_tpu": "forward_native",
    "forward_oot": "forward_native",
}
"""What the base class's own forward_* delegate to (vLLM's defaults)."""

FORWARD_METHODS = ("forward_native", "forward_cuda", "forward_hip", "forward_cpu",
                   "forward_xpu", "forward_tpu", "forward_oot")

_custom_ops: tuple[str, ...] = ("all",)
_warned_unregistered: set[type] = set()
_lock = threading.Lock()


def validate_custom_ops(custom_ops: Iterable[str]) -> tuple[str, ...]:
    """vLLM's rules: one of 'all'/'none' (added as 'all' if missing), never +x and -x together."""
    if isinstance(custom_ops, str):
        raise ConfigError(CUSTOM_OPS, custom_ops, _CUSTOM_OPS_SYNTAX, "pass a list such as ['none', '+rms_norm']")
    items = tuple(custom_ops)
    for item in items:
        if not isinstance(item, str) or not (item in ("all", "none") or (item[:1] in "+-" and len(item) > 1)):
            raise ConfigError(CUSTOM_OPS, list(items), _CUSTOM_OPS_SYNTAX, f"entry {item!r} is not all, none, +name or -name")
    bases = [i for i in items if i in ("all", "none")]
    if len(bases) > 1:
        raise ConfigError(CUSTOM_OPS, list(items), _CUSTOM_OPS_SYNTAX, f"{bases} given; keep one of 'all' / 'none'")
    clash = sorted({i[1:] for i in items if i[0] == "+"} & {i[1:] for i in items if i[0] == "-"})
    if clash:
        raise ConfigError(CUSTOM_OPS, list(items), _CUSTOM_OPS_SYNTAX, f"cannot both enable and disable {clash}")
    return items if bases else items + ("all",)


def set_custom_ops(custom_ops: Iterable[str]) -> None:
    """Set the list that `enabled()` reads (vLLM: CompilationConfig.custom_ops).

    Like vLLM, the choice is bound when a layer is constructed: existing layers
    keep their `_forward_method`.
    """
    global _custom_ops
    _custom_ops = validate_custom_ops(custom_ops)
    _flags.bump()


def get_custom_ops() -> tuple[str, ...]:
    return _custom_ops


class CustomOp(nn.Module):
    """Base class of legacy layers: one `forward_<platform>` per backend, bound at init."""

    op_registry: dict[str, type[CustomOp]] = {}
    op_registry_oot: dict[str, type[CustomOp]] = {}

    def __new__(cls, *args: Any, **kwargs: Any):
        substitute = CustomOp.op_registry_oot.get(cls.__name__)
        if substitute is not None and substitute is not cls:
            logger.debug("instantiating %s as out-of-tree %s", cls.__qualname__, substitute.__qualname__)
            cls = substitute
        return super().__new__(cls)

    def __init__(self, *, enforce_enable: bool = False) -> None:
        super().__init__()
        self._enforce_enable = enforce_enable
        self._forward_method = self.dispatch_forward()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # nn.Module.__call__ runs two Python frames (_wrapped_call_impl -> _call_impl)
        # before forward's: 2.7 µs of a 9.2 µs RMSNorm call in `on` mode on the 2-core
        # dev VM (bench_noop provider). This is their no-hooks fast path (torch 2.6-2.13;
        # tests/compat/test_module_call.py pins it) with the shim's hot paths inlined: the call
        # is 6.2 µs, of which 1.5 µs are these checks. Anything else takes torch's own
        # __call__: whatever traces or watches module calls (Dynamo, export, FX and others
        # that patch nn.Module.__call__, the profiler, which spots module calls by
        # nn.Module.__call__'s code), module.compile(), hooks, and a layer or class with
        # its own forward or _call_impl. Dynamo folds the first check to True, so it
        # traces torch's __call__ and guards on none of the others. Under torch.jit.trace
        # _call_impl runs _slow_forward, which differs from forward only while
        # trace_module records module scopes (_trace_module_map set): testing that, not
        # torch._C._get_tracing_state(), cost 1 µs less a call with a real op on the dev VM.
        if _is_dynamo_compiling() or _compiler._is_compiling_flag:
            return _Module.__call__(self, *args, **kwargs)
        d = self.__dict__
        cls = type(self)
        try:
            watched = (_autograd_profiler._is_profiler_enabled or _jit_trace._trace_module_map is not None
                       or _Module.__call__ is not _module_call or cls._call_impl is not _module_call_impl
                       or cls.forward is not _forward or "forward" in d or d.get("_compiled_call_impl") is not None
                       or d["_forward_pre_hooks"] or d["_forward_hooks"] or d["_backward_pre_hooks"]
                       or d["_backward_hooks"] or _nn_module._global_forward_pre_hooks
                       or _nn_module._global_forward_hooks or _nn_module._global_backward_pre_hooks
                       or _nn_module._global_backward_hooks)
        except KeyError:  # no hook tables: nn.Module.__init__ has not run (torch's __call__ says so)
            watched = True
        if watched:
            return _Module.__call__(self, *args, **kwargs)
        # The shim's hot paths (dispatch.call is the general one, which `forward` runs):
        # `off` is one set lookup; `on` with a port runs its cached runner; sampled
        # shadow mode counts down its run of sampled-out calls.
        if cls in _fast:
            return self._forward_method(*args, **kwargs)
        state = _on.get(cls)
        if state is None:
            state = _sampled.get(cls)
            if state is not None:  # dispatch.sample_shadow, inlined: most calls stop at the countdown
                counter = state.counter
                left = counter.left
                if left:
                    counter.left = left - 1
                    return self._forward_method(*args, **kwargs)
                return _compare_sampled(self, state, args, kwargs, self._forward_method)
        elif not kwargs:
            bound = self._forward_method
            try:  # a bound method's function (its runners' key); anything else takes the general path
                run = state.on_runners.get(bound.__func__, ())[len(args)]
            except (IndexError, AttributeError):
                run = None
            if run is not None:
                state.counter.seen += 1
                result = run(self, args)
                if type(result) is not _Refusal:
                    return result
                return _run_refused(self, state, result, args)
        return _shim_call(self, args, kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        # Reached through nn.Module.__call__ when `__call__` hands a call over (hooks,
        # tracing, profiling, compile) or when called directly: the shim's general path.
        # The hot paths are `__call__`'s.
        return _shim_call(self, args, kwargs)

    def forward_native(self, *args: Any, **kwargs: Any) -> Any:
        """Pure-PyTorch semantics of the layer (the reference)."""
        raise NotImplementedError(f"{type(self).__qualname__} has no forward_native")

    def forward_cuda(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__qualname__} has no forward_cuda")

    def forward_hip(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward_cuda(*args, **kwargs)

    def forward_cpu(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward_native(*args, **kwargs)

    def forward_xpu(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward_native(*args, **kwargs)

    def forward_tpu(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward_native(*args, **kwargs)

    def forward_oot(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward_native(*args, **kwargs)

    def dispatch_forward(self) -> Callable[..., Any]:
        if not (self._enforce_enable or self.enabled()):
            return self.forward_native
        return getattr(self, PLATFORM_METHOD.get(device_family(), "forward_cuda"))

    @classmethod
    def enabled(cls) -> bool:
        name = cls.__dict__.get("name", getattr(cls, "name", None))
        if name is None:
            if cls not in _warned_unregistered:
                _warned_unregistered.add(cls)
                logger.warning("CustomOp %s is not registered (@CustomOp.register): it follows the "
                               "'all'/'none' default of custom_ops", cls.__qualname__)
            return CustomOp.default_on()
        return (CustomOp.default_on() or f"+{name}" in _custom_ops) and f"-{name}" not in _custom_ops

    @staticmethod
    def default_on() -> bool:
        return "none" not in _custom_ops

    @classmethod
    def register(cls, name: str) -> Callable[[type], type]:
        def decorator(op_cls: type) -> type:
            with _lock:
                if name in CustomOp.op_registry:
                    raise ValueError(f"CustomOp name {name!r} is already registered by "
                                     f"{CustomOp.op_registry[name].__qualname__}; pick another name")
                op_cls.name = name
                CustomOp.op_registry[name] = op_cls
            _flags.bump()
            return op_cls

        return decorator

    @classmethod
    def register_oot(cls, _decorated: type | None = None, name: str | None = None):
        """Register an out-of-tree replacement for the in-tree class named `name` (default: cls)."""

        def decorator(op_cls: type) -> type:
            reg_name = name if name is not None else cls.__name__
            with _lock:
                if reg_name in CustomOp.op_registry_oot:
                    raise ValueError(f"an out-of-tree class is already registered for {reg_name!r}: "
                                     f"{CustomOp.op_registry_oot[reg_name].__qualname__}")
                op_cls.name = reg_name
                CustomOp.op_registry_oot[reg_name] = op_cls
            _flags.bump()
            return op_cls

        if _decorated is None:
            return decorator
        if isinstance(_decorated, type):
            return decorator(_decorated)
        raise TypeError(f"register_oot decorates classes, got {_decorated!r}")


# What CustomOp.__call__ compares and calls: torch's own functions (a patched
# nn.Module.__call__ or _call_impl is not these, and runs instead).
_Module = nn.Module
_module_call = nn.Module._wrapped_call_impl
_module_call_impl = nn.Module._call_impl
_forward = CustomOp.forward
_is_dynamo_compiling = torch.compiler.is_dynamo_compiling

# The shim's entry point; imported last because dispatch reads this module.
from .dispatch import _fast, _on, _sampled, call as _shim_call  # noqa: E402
from .dispatch import compare_sampled as _compare_sampled, run_refused as _run_refused  # noqa: E402
from .ports import Refusal as _Refusal  # noqa: E402
