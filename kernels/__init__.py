"""irshim's in-tree providers (entry point `irshim.providers: kernels`).

Importing this package registers every provider family it holds. A family
whose toolkit is missing (no `triton` in this environment) registers nothing
and says so at debug level: the ops then run their `native` semantics.
"""

from __future__ import annotations

if __name__ != "irshim.kernels":  # e.g. `kernels` found through a checkout's root on sys.path
    raise ImportError(
        f"{__file__} is irshim's `kernels` folder, imported here as {__name__!r}; it is the package "
        "`irshim.kernels` (pip install -e . from the checkout) and must not be imported under another name: "
        "its ops and providers would register twice"
    )


import logging

logger = logging.getLogger(__name__)

try:
    import triton as _triton_lib  # noqa: F401
except ImportError as exc:  # pragma: no cover - CI always has triton
    logger.debug("irshim.kernels: triton is not importable (%s); no triton providers registered", exc)
else:
    from . import triton as _triton_family  # noqa: F401  (registers the impls)
