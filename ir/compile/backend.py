"""Plugging the IR passes into torch.compile.

Two ways:

* ``torch.compile(model, backend=irshim.ir.compile.backend())`` runs the passes
  on Dynamo's graph, then Inductor (options are passed through as config
  patches).
* An existing Inductor set-up adds the passes as a pre-grad custom pass, which
  runs on the same graph before AOTAutograd::

      torch._inductor.config.pre_grad_custom_pass = irshim.ir.compile.IrPasses()

`IrPasses.uuid()` covers every op's effective priority and its providers'
sources, so Inductor's caches miss when either changes.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import fx
from torch._inductor.custom_graph_pass import CustomGraphPass

from .fusion import fuse_residual_add_norm
from .inplace import functionalize_inplace
from .lowering import Selection, lower_ir_nodes, priority_fingerprint
from .quant_fusion import fuse_norm_quant

logger = logging.getLogger(__name__)

_SOURCES = sorted(Path(__file__).parent.glob("*.py"))

_last_selections: list[Selection] = []


def last_lowering() -> list[Selection]:
    """What the most recent pass run chose for each IR node (also gm.meta["irshim_lowering"])."""
    return list(_last_selections)


class IrPasses(CustomGraphPass):
    """Fusion, in-place functionalization and lowering, in that order, on one graph."""

    def __init__(self, *, fusion: bool = True, lowering: bool = True):
        self.fusion, self.lowering = fusion, lowering

    def __call__(self, graph: fx.Graph) -> None:
        global _last_selections
        fused = fuse_residual_add_norm(graph) if self.fusion else 0
        fused += fuse_norm_quant(graph) if self.fusion else 0  # after: it fuses the fused_add nodes made above
        functionalized = functionalize_inplace(graph)
        selections = lower_ir_nodes(graph) if self.lowering else []
        graph.lint()
        if graph.owning_module is not None:
            graph.owning_module.recompile()
            graph.owning_module.meta["irshim_lowering"] = selections
        _last_selections = selections
        logger.debug("irshim passes: %d fused, %d functionalized, %d lowered",
                     fused, functionalized, sum(s.provider is not None for s in selections))

    def uuid(self) -> str:
        digest = hashlib.sha256()
        for path in _SOURCES:
            digest.update(path.read_bytes())
        digest.update(f"fusion={self.fusion} lowering={self.lowering}".encode())
        digest.update(priority_fingerprint().encode())
        return digest.hexdigest()


def backend(*, fusion: bool = True, inner: str | Callable | None = None, **inductor_options: Any) -> Callable:
    """A torch.compile backend: the IR passes, then Inductor (or `inner`, e.g. "aot_eager")."""
    passes = IrPasses(fusion=fusion)

    def compile_with_irshim(gm: fx.GraphModule, example_inputs: list) -> Callable:
        passes(gm.graph)
        if inner is not None:
            compiler = torch._dynamo.lookup_backend(inner) if isinstance(inner, str) else inner
            return compiler(gm, example_inputs)
        from torch._inductor.compile_fx import compile_fx

        return compile_fx(gm, example_inputs, config_patches=inductor_options or None)

    return compile_with_irshim
