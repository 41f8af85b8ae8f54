"""vLLM general plugin: install irshim on vLLM's CustomOp in every process vLLM starts.

Declared in pyproject.toml as

    [project.entry-points."vllm.general_plugins"]
    irshim = "irshim.compat.vllm_plugin:register"

vLLM calls `register()` once per process (API server, engine core, each GPU
worker) before it builds a model. With `IRSHIM_DISPATCH` unset or `off` it
returns at once: this module imports nothing but `os` and `logging`, so vLLM
pays one environment read. Otherwise it validates the IRSHIM_* settings (a
malformed value stops start-up with a message naming it) and intercepts
`vllm.model_executor.custom_op.CustomOp`; classes defined later are covered
too. The run id is exported (`IRSHIM_RUN_ID`) so that processes started after
this one write their records into the same run folder.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

DISPATCH = "IRSHIM_DISPATCH"  # same name as irshim.compat.flags.DISPATCH (not imported: it loads torch)


def register() -> None:
    """The entry point vLLM calls; idempotent (vLLM may call it more than once)."""
    mode = (os.environ.get(DISPATCH) or "off").strip().lower()
    if mode == "off":
        logger.debug("irshim: %s is off (or unset); vLLM's CustomOps are left untouched", DISPATCH)
        return
    from . import flags
    from .intercept import install
    from .records import run_id

    settings = flags.current()  # validated when the flags module loaded
    base = install()
    if base is None:
        logger.warning("irshim: %s=%s but vLLM's CustomOp could not be imported; nothing intercepted",
                       DISPATCH, settings.dispatch)
        return
    run = run_id()  # exported to the environment: workers started later share the run folder
    logger.info("irshim: %s=%s, intercepting %s.%s; records go to %s", DISPATCH, settings.dispatch,
                base.__module__, base.__qualname__, os.path.join(str(settings.report_dir), run))
