"""Recognising IR ops in FX graphs and reading their arguments' fake values."""

from __future__ import annotations

from typing import Any

import torch
from torch import fx

from ..op import NAMESPACE, IrOp


def ir_op_of(node: fx.Node) -> tuple[IrOp, str] | None:
    """(op, overload name) when `node` calls ``torch.ops.irshim.<op>.<overload>``."""
    target = node.target
    if node.op != "call_function" or not isinstance(target, torch._ops.OpOverload):
        return None
    if target.namespace != NAMESPACE:
        return None
    op = IrOp.registry.get(target._opname)
    return None if op is None else (op, target._overloadname)


def meta_value(arg: Any) -> Any:
    """The fake value standing for `arg` at trace time (Dynamo: example_value; AOT: val)."""
    if isinstance(arg, fx.Node):
        if "example_value" in arg.meta:
            return arg.meta["example_value"]
        if "val" in arg.meta:
            return arg.meta["val"]
        raise LookupError(f"node {arg.name} carries no fake value (meta 'example_value' or 'val')")
    return arg


def fake_args(node: fx.Node) -> tuple[tuple, dict]:
    """The node's args and kwargs with every graph value replaced by its fake value."""
    args = fx.node.map_aggregate(node.args, meta_value)
    kwargs = fx.node.map_aggregate(node.kwargs, meta_value)
    return tuple(args), dict(kwargs)


def ir_nodes(graph: fx.Graph) -> list[tuple[fx.Node, IrOp, str]]:
    found = []
    for node in graph.nodes:
        hit = ir_op_of(node)
        if hit is not None:
            found.append((node, *hit))
    return found
