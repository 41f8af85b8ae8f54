"""Fusion on IR nodes: a residual add feeding an RMS norm becomes one fused op.

One pattern covers every norm that has a fused-add form (the table below), and
every spelling of the add that reaches a graph (``x + r`` from Dynamo,
``torch.add``, ``Tensor.add``, ``aten.add.Tensor``): models written with a
separate add get the fused kernel without a port for each legacy variant.

    s = add(a, b)                    f = fused_add_norm(a, b, w, eps)
    y = norm(s, w, eps)      ==>     y = f[0]
    ... uses of s ...                ... uses of f[1] ...
"""

from __future__ import annotations

import logging
import operator

import torch
from torch import fx

from ..op import get_op
from .nodes import ir_op_of, meta_value

logger = logging.getLogger(__name__)

FUSED_ADD = {"rms_norm": "fused_add_rms_norm", "gemma_rms_norm": "gemma_fused_add_rms_norm"}
"""norm op -> its fused residual-add form, with signature (x, x_residual, weight, epsilon)."""

_ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add, torch.ops.aten.add.Tensor}


def _add_operands(node: fx.Node) -> tuple[fx.Node, fx.Node] | None:
    """The two tensor operands of a plain same-shape, same-dtype add (alpha 1), else None."""
    is_add = (node.op == "call_function" and node.target in _ADD_FUNCTIONS) or (
        node.op == "call_method" and node.target == "add")
    if not is_add:
        return None
    if len(node.args) != 2 or any(k != "alpha" or v != 1 for k, v in node.kwargs.items()):
        return None
    a, b = node.args
    if not (isinstance(a, fx.Node) and isinstance(b, fx.Node)):
        return None
    try:
        va, vb, vs = meta_value(a), meta_value(b), meta_value(node)
    except LookupError:
        return None
    tensors = all(isinstance(v, torch.Tensor) for v in (va, vb, vs))
    if not tensors or not (va.shape == vb.shape == vs.shape and va.dtype == vb.dtype == vs.dtype):
        return None  # broadcasting or type promotion: not what the fused op computes
    return a, b


def fuse_residual_add_norm(graph: fx.Graph) -> int:
    """Apply the pattern everywhere it matches; return the number of fusions."""
    order = {n: i for i, n in enumerate(graph.nodes)}
    fused = 0
    for norm in list(graph.nodes):
        hit = ir_op_of(norm)
        if hit is None or hit[1] != "default" or hit[0].name not in FUSED_ADD:
            continue
        total = norm.args[0] if norm.args else None
        operands = _add_operands(total) if isinstance(total, fx.Node) else None
        if operands is None or len(norm.args) != 3:
            continue
        weight = norm.args[1]
        first_use = min(order[u] for u in total.users)
        if isinstance(weight, fx.Node) and order[weight] > first_use:
            continue  # the weight is computed after the sum is first used: cannot hoist
        fused_op = get_op(FUSED_ADD[hit[0].name])
        anchor = min(total.users, key=order.__getitem__)
        with graph.inserting_before(anchor):
            call = graph.call_function(fused_op.torch_op, (*operands, weight, norm.args[2]))
            out = graph.call_function(operator.getitem, (call, 0))
            residual = graph.call_function(operator.getitem, (call, 1))
        _copy_meta(call, out, residual, norm, total)
        norm.replace_all_uses_with(out)
        graph.erase_node(norm)
        total.replace_all_uses_with(residual)
        graph.erase_node(total)
        fused += 1
        logger.debug("fused %s + %s into %s", total.name, norm.name, fused_op.name)
        order = {n: i for i, n in enumerate(graph.nodes)}
    return fused


def _copy_meta(call: fx.Node, out: fx.Node, residual: fx.Node, norm: fx.Node, total: fx.Node) -> None:
    """Keep fake values on the new nodes so that later passes (lowering) can read them."""
    for node in (call, out, residual):
        node.meta["stack_trace"] = norm.meta.get("stack_trace")
    for key in ("example_value", "val"):
        if key in norm.meta and key in total.meta:
            out.meta[key], residual.meta[key] = norm.meta[key], total.meta[key]
            call.meta[key] = (norm.meta[key], total.meta[key])
