"""Discovery of provider packages through the `irshim.providers` entry points.

Each entry point names a module (or a callable) that registers impls on IR ops
when loaded. The in-tree `irshim.kernels` is one such entry; a vendor package
declares its own in its packaging metadata. Loading is lazy (first priority
resolution) so that `import irshim.ir` stays cheap and free of import cycles.
"""

from __future__ import annotations

import importlib.metadata
import logging
import threading
import types

logger = logging.getLogger(__name__)

GROUP = "irshim.providers"

_lock = threading.RLock()
_loaded: list[str] | None = None
failures: dict[str, str] = {}
"""Entry points that failed to load, name -> error, for `irshim status`."""


def load_providers() -> list[str]:
    """Load every provider entry point once; return the names that loaded."""
    global _loaded
    if _loaded is not None:
        return _loaded
    with _lock:
        if _loaded is not None:
            return _loaded
        # Set before loading: provider modules register impls, which may
        # resolve priorities and so call back here.
        _loaded = []
        for entry in importlib.metadata.entry_points(group=GROUP):
            try:
                obj = entry.load()
                if callable(obj) and not isinstance(obj, types.ModuleType):
                    obj()
            except Exception as exc:  # a broken vendor package must not stop the model
                failures[entry.name] = f"{type(exc).__name__}: {exc}"
                logger.warning("irshim provider package %r (%s) failed to load: %s",
                               entry.name, entry.value, exc)
                continue
            _loaded.append(entry.name)
            logger.debug("loaded irshim provider package %r (%s)", entry.name, entry.value)
        return _loaded
