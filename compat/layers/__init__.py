"""Legacy layer classes on irshim's CustomOp, with vLLM's names and attributes."""

from .activation import (
    FastGELU,
    FatreluAndMul,
    GeluAndMul,
    MulAndSilu,
    NewGELU,
    QuickGELU,
    ReLUSquaredActivation,
    SiluAndMul,
)
from .layernorm import GemmaRMSNorm, RMSNorm

__all__ = [
    "FastGELU",
    "FatreluAndMul",
    "GeluAndMul",
    "GemmaRMSNorm",
    "MulAndSilu",
    "NewGELU",
    "QuickGELU",
    "RMSNorm",
    "ReLUSquaredActivation",
    "SiluAndMul",
]
