"""Compiler path: IR ops as single FX nodes, passes over them, lowering to providers."""

from .backend import IrPasses, backend, last_lowering
from .fusion import fuse_residual_add_norm
from .inplace import DonationError, functionalize_inplace
from .lowering import LoweredImpl, Selection, lower_ir_nodes
from .quant_fusion import fuse_norm_quant

__all__ = [
    "DonationError",
    "IrPasses",
    "LoweredImpl",
    "Selection",
    "backend",
    "fuse_norm_quant",
    "fuse_residual_add_norm",
    "functionalize_inplace",
    "last_lowering",
    "lower_ir_nodes",
]
