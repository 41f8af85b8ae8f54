"""Interception of a foreign CustomOp base (vLLM's) with wrapt, reversibly.

irshim's own CustomOp needs none of this: its forward already goes through
the shim. For a foreign base, `install()` wraps `forward` on the base, and on
any subclass that defines its own `forward`, in a wrapt FunctionWrapper around
the original; subclasses defined later are covered by a wrapped
`__init_subclass__`. Instances need nothing: they look `forward` up on their
class, so those created before and after install are covered alike.

While IRSHIM_DISPATCH is `off` the originals stay in place, so an installed base
costs nothing per call (the wrapper's frame and binding cost 1.6 µs a call on the
2-core dev VM, against a 0.3 µs budget for `off`); every change of settings puts
the wrappers in or takes them out. Nothing else changes: no attribute paths, no
subclass swaps, no state on the classes. `uninstall()` puts back the very
objects that were in each class `__dict__`.
"""

from __future__ import annotations

import importlib
import logging
import threading
from typing import Any

import wrapt

from . import dispatch as _dispatch
from . import flags as _flags
from .custom_op import CustomOp

logger = logging.getLogger(__name__)

VLLM_BASE = "vllm.model_executor.custom_op"
_MISSING = object()

_lock = threading.RLock()
_installed: dict[type, _Installation] = {}


class _Installation:
    def __init__(self, base: type):
        self.base = base
        self.wrapped: dict[type, Any] = {}
        """class -> the original `forward` object of its __dict__."""
        self.wrappers: dict[type, wrapt.FunctionWrapper] = {}
        self.init_subclass: Any = _MISSING

    def place(self, cls: type, active: bool) -> None:
        """Put the wrapper (active) or the original `forward` on `cls`."""
        wanted = self.wrappers[cls] if active else self.wrapped[cls]
        if cls.__dict__.get("forward", _MISSING) is not wanted:
            setattr(cls, "forward", wanted)


def _forward_wrapper(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    if instance is None:  # called on the class: Base.forward(layer, x)
        instance, args = args[0], args[1:]
        legacy = wrapped.__get__(instance, type(instance)) if hasattr(wrapped, "__get__") else wrapped
    else:
        legacy = wrapped
    if type(instance) in _dispatch._fast:
        return legacy(*args, **kwargs)
    return _dispatch.call(instance, args, kwargs, legacy)


def _active() -> bool:
    """Whether intercepted calls may leave the legacy path under the current settings."""
    return _flags.current().dispatch != _flags.OFF


def _wrap(installation: _Installation, cls: type) -> None:
    original = cls.__dict__.get("forward", _MISSING)
    if original is _MISSING or cls in installation.wrapped or isinstance(original, wrapt.FunctionWrapper):
        return
    installation.wrapped[cls] = original
    installation.wrappers[cls] = wrapt.FunctionWrapper(original, _forward_wrapper)
    installation.place(cls, _active())


def _settings_changed() -> None:
    with _lock:
        active = _active()
        for installation in _installed.values():
            for cls in installation.wrapped:
                installation.place(cls, active)


def _resolve_base(base: type | None) -> type | None:
    if base is not None:
        return base
    try:
        module = importlib.import_module(VLLM_BASE)
    except Exception as exc:  # not installed, or broken: nothing to intercept
        logger.debug("irshim.compat.install: vLLM not importable (%s)", exc)
        return None
    return module.CustomOp


def install(base: type | None = None) -> type | None:
    """Intercept `base` (default: vLLM's CustomOp when importable); returns the base or None.

    Idempotent and thread-safe. irshim's own CustomOp is always intercepted,
    so passing it is a no-op.
    """
    base = _resolve_base(base)
    if base is None:
        logger.info("irshim.compat.install: no foreign CustomOp base (vLLM is not importable); "
                    "irshim's own CustomOp is intercepted without install()")
        return None
    if not isinstance(base, type) or "forward" not in dir(base):
        raise TypeError(f"install(base=...) needs a CustomOp-like class with forward/forward_* methods, got {base!r}")
    if issubclass(base, CustomOp):
        return base
    with _lock:
        if base in _installed:
            return base
        installation = _Installation(base)
        _wrap(installation, base)
        stack = list(base.__subclasses__())
        while stack:
            cls = stack.pop()
            _wrap(installation, cls)
            stack.extend(cls.__subclasses__())
        installation.init_subclass = base.__dict__.get("__init_subclass__", _MISSING)
        original_init_subclass = installation.init_subclass

        def __init_subclass__(cls, **kwargs: Any) -> None:
            if original_init_subclass is not _MISSING:
                original_init_subclass.__get__(None, cls)(**kwargs)
            else:
                super(base, cls).__init_subclass__(**kwargs)
            with _lock:
                if _installed.get(base) is installation:
                    _wrap(installation, cls)

        base.__init_subclass__ = classmethod(__init_subclass__)
        _installed[base] = installation
        _dispatch.BASES.append(base)
        _flags.bump()
    logger.info("irshim intercepts %s.%s (%d forward method(s) wrapped)",
                base.__module__, base.__qualname__, len(installation.wrapped))
    return base


def uninstall(base: type | None = None) -> None:
    """Undo `install` for `base` (default: every installed base), restoring each class exactly."""
    with _lock:
        bases = [base] if base is not None else list(_installed)
        for b in bases:
            installation = _installed.pop(b, None)
            if installation is None:
                continue
            for cls, original in installation.wrapped.items():
                setattr(cls, "forward", original)
            if installation.init_subclass is _MISSING:
                delattr(b, "__init_subclass__")
            else:
                setattr(b, "__init_subclass__", installation.init_subclass)
            if b in _dispatch.BASES:
                _dispatch.BASES.remove(b)
        _flags.bump()


def installed() -> list[type]:
    return list(_installed)


_flags.on_change(_settings_changed)
