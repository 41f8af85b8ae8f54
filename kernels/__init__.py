"""irshim's in-tree providers (entry point `irshim.providers: kernels`).

Importing this package registers every provider family it holds. A family
whose toolkit is missing (no `triton` in this environment) registers nothing
and says so at debug level: the ops then run their `native` semantics.

Imported under any other name than `irshim.kernels` it registers nothing:
with a checkout's root on sys.path, transformers probes for Hugging Face's
`kernels` package by importing this folder as `kernels` (it then sees no
version and moves on); registering here would add every provider twice.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

if __name__ != "irshim.kernels":
    logger.debug("%s imported as %r: not irshim.kernels, nothing registered", __file__, __name__)
else:
    try:
        import triton as _triton_lib  # noqa: F401
    except ImportError as exc:  # pragma: no cover - CI always has triton
        logger.debug("irshim.kernels: triton is not importable (%s); no triton providers registered", exc)
    else:
        from . import triton as _triton_family  # noqa: F401  (registers the impls)
