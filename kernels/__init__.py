"""irshim's in-tree providers (entry point `irshim.providers: kernels`).

Importing this package registers every provider family it holds. A family
whose toolkit is missing (no `triton` in this environment) registers nothing
and says so at debug level: the ops then run their `native` semantics.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

try:
    import triton as _triton_lib  # noqa: F401
except ImportError as exc:  # pragma: no cover - CI always has triton
    logger.debug("irshim.kernels: triton is not importable (%s); no triton providers registered", exc)
else:
    from . import triton as _triton_family  # noqa: F401  (registers the impls)
