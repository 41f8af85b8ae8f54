"""Which device family this process runs on; platform defaults are keyed by it."""

from __future__ import annotations

import torch

FAMILIES = ("cuda", "rocm", "xpu", "cpu")

_family: str | None = None


def device_family() -> str:
    """`cuda`, `rocm`, `xpu` or `cpu`: the accelerator torch would use, cached.

    ROCm builds of torch report through `torch.cuda`; `torch.version.hip` tells
    them apart. (A module-level cache, not functools.cache: Dynamo traces this
    from compat code and warns about cache wrappers.)
    """
    global _family
    if _family is None:
        _family = _detect()
    return _family


def _detect() -> str:
    if torch.cuda.is_available():
        return "rocm" if torch.version.hip else "cuda"
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        return "xpu"
    return "cpu"
