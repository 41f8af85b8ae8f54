"""The soft-migration shim from CustomOp layers to IR ops. Knows ir, never kernels.

    IRSHIM_DISPATCH=shadow python serve.py     # compare, record, return legacy results
    IRSHIM_DISPATCH=on IRSHIM_OPS=none,+rms_norm python serve.py

Classes built on `irshim.compat.CustomOp` follow the flags without any call;
`install()` intercepts vLLM's CustomOp (or another base with its protocol).
"""

from . import flags
from .flags import ConfigError, Flags, override
from .flags import reload as reload_flags

reload_flags()  # a malformed IRSHIM_* value stops start-up here, naming the variable

from .custom_op import CustomOp, get_custom_ops, set_custom_ops  # noqa: E402
from .intercept import install, installed, uninstall  # noqa: E402
from .ports import Const, Port, Variant, find_port, register_port  # noqa: E402
from .records import recorder  # noqa: E402
from .shadow import ShadowMismatch  # noqa: E402
from . import auto, layers  # noqa: E402,F401


def flush() -> int:
    """Write buffered observation records now (also done periodically and at exit)."""
    return recorder.flush()


__all__ = [
    "ConfigError",
    "Const",
    "CustomOp",
    "Flags",
    "Port",
    "ShadowMismatch",
    "Variant",
    "find_port",
    "flags",
    "flush",
    "get_custom_ops",
    "install",
    "installed",
    "layers",
    "override",
    "recorder",
    "register_port",
    "reload_flags",
    "set_custom_ops",
    "uninstall",
]
