"""Triton providers: provider name ``triton`` (and ``triton_inplace`` where an op
has an in-place form), one module per op family.

Importing this package registers the impls and puts ``triton`` first in the
CUDA platform default of every op it covers. Each module also defines a
``torch.library.triton_op`` per op in the namespace ``irshim_triton``: the
graph-visible form that torch.compile (and the IR lowering pass) uses, while
eager IR calls launch the kernels directly (see ``_support.py``).
"""

from __future__ import annotations

from irshim.ir.priority import set_platform_default

from . import activation, compare, layernorm, quant, rope  # noqa: F401  (compare registers, OPS below)

OPS = (*layernorm.OPS, *activation.OPS, *quant.OPS, *rope.OPS, *compare.OPS)
"""Names of the IR ops that have a ``triton`` provider."""

for _name in OPS:
    set_platform_default(_name, "cuda", ["triton", "native"])
