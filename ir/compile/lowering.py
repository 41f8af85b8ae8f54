"""Lower IR nodes to the provider the priority picks for their fake arguments.

Each ``torch.ops.irshim.<op>`` node becomes a call of a `LoweredImpl`, a small
picklable callable that runs the chosen provider. The node is not traced here:
AOTAutograd traces through the callable, so ``native`` dissolves into aten ops
that Inductor fuses with their neighbours, and a Triton provider (which calls
its ``torch.library.triton_op`` while tracing) becomes a kernel Inductor sees.
The priority in force when the pass runs decides.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from torch import fx

from ..op import IrOp, get_op
from .nodes import fake_args, ir_nodes

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Selection:
    """What lowering did with one IR node."""

    node: str
    op: str
    overload: str
    provider: str | None  # None: left unlowered
    reason: str = ""


class LoweredImpl:
    """Callable graph target running one provider of one op with functional semantics."""

    def __init__(self, op_name: str, provider: str):
        self.op_name, self.provider = op_name, provider
        self.__name__ = self.__qualname__ = f"irshim_{op_name}__{provider}"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        op = get_op(self.op_name)
        impl = op._impls[self.provider]
        if impl.inplace:
            args = op._clone_activations(args)
        return impl.impl_fn(*args, **kwargs)

    def __reduce__(self):
        return (LoweredImpl, (self.op_name, self.provider))

    def __repr__(self) -> str:
        return self.__name__


def lower_ir_nodes(graph: fx.Graph) -> list[Selection]:
    """Replace every IR node by its chosen provider; return what was chosen for each.

    `maybe_inplace` nodes must have been functionalized first (`inplace.py`).
    Nodes that cannot be lowered keep dispatching at run time and are reported.
    """
    selections = []
    for node, op, overload in ir_nodes(graph):
        if overload != "default":
            selections.append(Selection(node.name, op.name, overload, None, "not functionalized"))
            continue
        try:
            args, kwargs = fake_args(node)
            impl = op.dispatch(*args, **kwargs)
        except Exception as exc:  # a predicate that cannot judge fakes, or missing metadata
            selections.append(Selection(node.name, op.name, overload, None, f"{type(exc).__name__}: {exc}"))
            continue
        node.target = LoweredImpl(op.name, impl.provider)
        selections.append(Selection(node.name, op.name, overload, impl.provider))
    for s in selections:
        if s.provider is None:
            logger.warning("IR node %s (%s.%s) left unlowered: %s", s.node, s.op, s.overload, s.reason)
        else:
            logger.debug("IR node %s (%s) lowered to provider %s", s.node, s.op, s.provider)
    return selections


def priority_fingerprint() -> str:
    """Every op's effective priority and each listed provider's source hash."""
    parts = []
    for name in sorted(IrOp.registry):
        op = IrOp.registry[name]
        for provider in op.get_priority():
            parts.append(f"{name}:{provider}:{op.impls[provider].source_hash}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()
