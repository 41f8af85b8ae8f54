"""The IR's ops, one module per family; `irshim.ir.ops.<name>` is the op object.

Ops registered later (for example compat's automatic ops) are reachable here too.
"""

from ..op import IrOp
from . import activation, compare, layernorm, quant, rotary  # noqa: F401  (register the ops)
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
from .compare import compare_pairs, tolerance_stats  # noqa: F401
from .layernorm import fused_add_rms_norm, gemma_fused_add_rms_norm, gemma_rms_norm, rms_norm  # noqa: F401
from .quant import (  # noqa: F401
    dynamic_per_token_scaled_fp8_quant,
    dynamic_scaled_fp8_quant,
    fused_add_rms_norm_static_fp8_quant,
    per_token_group_fp8_quant,
    rms_norm_dynamic_per_token_fp8_quant,
    rms_norm_static_fp8_quant,
    static_scaled_fp8_quant,
)
from .rotary import rotary_embedding  # noqa: F401


def __getattr__(name: str) -> IrOp:
    try:
        return IrOp.registry[name]
    except KeyError:
        raise AttributeError(f"no IR op {name!r}; registered: {sorted(IrOp.registry)}") from None


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(IrOp.registry))
