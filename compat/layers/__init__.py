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
from .quant_fp8 import QuantFP8
from .rotary_embedding import RotaryEmbedding

__all__ = [
    "FastGELU",
    "FatreluAndMul",
    "GeluAndMul",
    "GemmaRMSNorm",
    "MulAndSilu",
    "NewGELU",
    "QuantFP8",
    "QuickGELU",
    "RMSNorm",
    "ReLUSquaredActivation",
    "RotaryEmbedding",
    "SiluAndMul",
]
