"""irshim's functional IR: ops as pure torch functions, providers, one dispatcher.

Knows nothing of CustomOp. See DESIGN.md ("The IR contract").
"""

if __name__ != "irshim.ir":  # e.g. `ir` found through a checkout's root on sys.path
    raise ImportError(
        f"{__file__} is irshim's `ir` folder, imported here as {__name__!r}; it is the package "
        "`irshim.ir` (pip install -e . from the checkout) and must not be imported under another name: "
        "its ops and providers would register twice"
    )

from . import ops, priority, tolerances
from .errors import ConfigError
from .op import IrOp, IrOpImpl, capturing_cuda_graph, get_op, register_op, set_priority, tracing
from .platform import device_family
from .providers import load_providers

__all__ = [
    "ConfigError",
    "IrOp",
    "IrOpImpl",
    "device_family",
    "get_op",
    "load_providers",
    "ops",
    "priority",
    "register_op",
    "set_priority",
    "tolerances",
    "tracing",
    "capturing_cuda_graph",
]
