"""Fusion on IR nodes: an RMS norm whose output only feeds an FP8 quant becomes one fused op.

One pattern per pair (the table below), each written against IR nodes:

    y = rms_norm(x, w, eps)                       q = rms_norm_static_fp8_quant(x, w, eps, s)
    q = static_scaled_fp8_quant(y, s)     ==>

    y = rms_norm(x, w, eps)                       t = rms_norm_dynamic_per_token_fp8_quant(x, w, eps, ub)
    t = dynamic_per_token_..._quant(y, ub) ==>    (t's getitem users unchanged)

    f = fused_add_rms_norm(x, r, w, eps)          g = fused_add_rms_norm_static_fp8_quant(x, r, w, eps, s)
    y = f[0]; res = f[1]                  ==>     q = g[0]; res = g[1]
    q = static_scaled_fp8_quant(y, s)

The norm output must have no other user (else the norm would run twice). Run it
after the residual-add fusion, which makes the ``fused_add_rms_norm`` nodes.
Fake values (``example_value`` / ``val``) are carried to the new nodes so that
lowering can judge providers on them.
"""

from __future__ import annotations

import logging
import operator
from dataclasses import dataclass

from torch import fx

from ..op import get_op
from .nodes import ir_op_of

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NormQuantPattern:
    norm: str       # producer op, its output 0 quantized
    quant: str      # consumer op, quantizing its argument 0
    fused: str      # fused op: the norm's arguments, then the quant's other arguments
    tuple_norm: bool  # the norm returns (out, residual): its output 0 is a getitem


PATTERNS = (
    NormQuantPattern("rms_norm", "static_scaled_fp8_quant", "rms_norm_static_fp8_quant", False),
    NormQuantPattern("rms_norm", "dynamic_per_token_scaled_fp8_quant", "rms_norm_dynamic_per_token_fp8_quant", False),
    NormQuantPattern("fused_add_rms_norm", "static_scaled_fp8_quant", "fused_add_rms_norm_static_fp8_quant", True),
)
_NORM_OVERLOADS = {"default", "maybe_inplace"}  # a donated in-place call may be replaced by a functional one


def _getitem_index(node: fx.Node) -> int | None:
    if node.op == "call_function" and node.target is operator.getitem and isinstance(node.args[1], int):
        return node.args[1]
    return None


def _match(quant: fx.Node, pattern: NormQuantPattern):
    """(norm node, norm output node) when `quant` consumes a sole-use norm output, else None."""
    source = quant.args[0] if quant.args else None
    if not isinstance(source, fx.Node) or len(source.users) != 1:
        return None
    if pattern.tuple_norm:
        if _getitem_index(source) != 0 or not isinstance(source.args[0], fx.Node):
            return None
        norm = source.args[0]
        if any(_getitem_index(u) is None for u in norm.users):
            return None  # the tuple escapes whole: leave it
    else:
        norm = source
    hit = ir_op_of(norm)
    if hit is None or hit[0].name != pattern.norm or hit[1] not in _NORM_OVERLOADS:
        return None
    if pattern.tuple_norm:
        if sum(1 for u in norm.users if _getitem_index(u) == 0) != 1:
            return None
    return norm, source


def _defined_before(arg, node: fx.Node, order: dict[fx.Node, int]) -> bool:
    return not isinstance(arg, fx.Node) or order[arg] < order[node]


def fuse_norm_quant(graph: fx.Graph) -> int:
    """Apply every pattern wherever it matches; return the number of fusions."""
    fused = 0
    order = {n: i for i, n in enumerate(graph.nodes)}
    for quant in list(graph.nodes):
        hit = ir_op_of(quant)
        if hit is None or hit[1] != "default":
            continue
        for pattern in PATTERNS:
            if hit[0].name != pattern.quant:
                continue
            matched = _match(quant, pattern)
            if matched is None:
                continue
            norm, out = matched
            extra = tuple(quant.args[1:])
            if pattern.tuple_norm:
                # Insert at the norm (its residual may be used before the quant): the
                # quant's other arguments (the scale) must exist by then.
                if not all(_defined_before(a, norm, order) for a in extra):
                    logger.debug("not fusing %s into %s: its scale is computed after the norm", quant.name, norm.name)
                    continue
                anchor = norm
            else:
                anchor = quant  # the norm's only user: everything it reads exists here
            _replace(graph, pattern, norm, out, quant, extra, anchor)
            fused += 1
            order = {n: i for i, n in enumerate(graph.nodes)}
            break
    return fused


def _replace(graph: fx.Graph, pattern: NormQuantPattern, norm: fx.Node, out: fx.Node, quant: fx.Node,
             extra: tuple, anchor: fx.Node) -> None:
    fused_op = get_op(pattern.fused)
    args = (*norm.args, *extra)
    with graph.inserting_before(anchor):
        call = graph.call_function(fused_op.torch_op, args)
    call.meta["stack_trace"] = quant.meta.get("stack_trace")
    if pattern.tuple_norm:
        # q = call[0] replaces the quant; the norm's residual getitems read call[1].
        with graph.inserting_after(call):
            q = graph.call_function(operator.getitem, (call, 0))
        q.meta.update({k: v for k, v in quant.meta.items() if k in ("example_value", "val", "stack_trace")})
        residuals = [u for u in norm.users if _getitem_index(u) == 1]
        for key in ("example_value", "val"):
            if key in quant.meta and key in norm.meta:
                call.meta[key] = (quant.meta[key], norm.meta[key][1])
        quant.replace_all_uses_with(q)
        graph.erase_node(quant)
        for r in residuals:
            r.args = (call, 1)
        graph.erase_node(out)
        graph.erase_node(norm)
    else:
        for key in ("example_value", "val"):
            if key in quant.meta:
                call.meta[key] = quant.meta[key]
        quant.replace_all_uses_with(call)
        graph.erase_node(quant)
        graph.erase_node(norm)
    logger.debug("fused %s + %s into %s", norm.name, quant.name, fused_op.name)
