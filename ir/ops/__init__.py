"""The IR's ops, one module per family; `irshim.ir.ops.<name>` is the op object.

Ops registered later (for example compat's automatic ops) are reachable here too.
"""

from ..op import IrOp
from . import activation, layernorm  # noqa: F401  (registers the ops)
from .activation import (  # noqa: F401
    fatrelu_and_mul,
    gelu_and_mul,
    gelu_fast,
    gelu_new,
    mul_and_silu,
    quick_gelu,
    relu2,
    silu_and_mul,
)
from .layernorm import fused_add_rms_norm, gemma_fused_add_rms_norm, gemma_rms_norm, rms_norm  # noqa: F401


def __getattr__(name: str) -> IrOp:
    try:
        return IrOp.registry[name]
    except KeyError:
        raise AttributeError(f"no IR op {name!r}; registered: {sorted(IrOp.registry)}") from None


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(IrOp.registry))
