"""The soft-migration shim from CustomOp layers to IR ops. Knows ir, never kernels.

    IRSHIM_DISPATCH=shadow python serve.py     # compare, record, return legacy results
    IRSHIM_DISPATCH=on IRSHIM_OPS=none,+rms_norm python serve.py

Classes built on `irshim.compat.CustomOp` follow the flags without any call;
`install()` intercepts vLLM's CustomOp (or another base with its protocol).
The IRSHIM_* variables are validated when the flags module loads (with any
layer, CustomOp or the names below); a malformed value stops start-up.

Names here load on first use, so that the `irshim` command (which lives in this
package) starts without importing torch and can report a bad setting itself.
"""

from __future__ import annotations

if __name__ != "irshim.compat":  # e.g. `compat` found through a checkout's root on sys.path
    raise ImportError(
        f"{__file__} is irshim's `compat` folder, imported here as {__name__!r}; it is the package "
        "`irshim.compat` (pip install -e . from the checkout) and must not be imported under another name: "
        "its ops and providers would register twice"
    )


import importlib
from typing import Any

_EXPORTS = {
    "ConfigError": ("flags", "ConfigError"),
    "Flags": ("flags", "Flags"),
    "override": ("flags", "override"),
    "reload_flags": ("flags", "reload"),
    "CustomOp": ("custom_op", "CustomOp"),
    "get_custom_ops": ("custom_op", "get_custom_ops"),
    "set_custom_ops": ("custom_op", "set_custom_ops"),
    "install": ("intercept", "install"),
    "installed": ("intercept", "installed"),
    "uninstall": ("intercept", "uninstall"),
    "Const": ("ports", "Const"),
    "Port": ("ports", "Port"),
    "Variant": ("ports", "Variant"),
    "find_port": ("ports", "find_port"),
    "register_port": ("ports", "register_port"),
    "recorder": ("records", "recorder"),
    "ShadowMismatch": ("shadow", "ShadowMismatch"),
}
_SUBMODULES = ("auto", "flags", "layers")

__all__ = sorted([*_EXPORTS, *_SUBMODULES, "flush"])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return __all__


def flush() -> int:
    """Write buffered observation records now (also done periodically and at exit)."""
    from .records import recorder

    return recorder.flush()
