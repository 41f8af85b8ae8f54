"""Functionalize ``maybe_inplace`` IR nodes before AOTAutograd, checking donation.

A ``maybe_inplace`` call donates its activation arguments: their contents are
undefined afterwards. A graph that reads a donated value later is wrong in
eager mode already (it would see whatever an in-place provider left there), so
this pass refuses it with an error naming both nodes. Otherwise the node is
retargeted to the op's default, functional overload; Inductor's re-inplacing
pass recovers the in-place update where the donated buffer is dead, and an
in-place provider chosen by lowering runs on a copy (see `lowering.py`).
"""

from __future__ import annotations

import logging

from torch import fx

from .nodes import ir_nodes

logger = logging.getLogger(__name__)


class DonationError(RuntimeError):
    """A value donated to an in-place IR op is read after the op."""


def _later_readers(graph: fx.Graph, node: fx.Node, donated: fx.Node) -> list[fx.Node]:
    order = {n: i for i, n in enumerate(graph.nodes)}
    return [user for user in donated.users if user is not node and order[user] > order[node]]


def functionalize_inplace(graph: fx.Graph) -> int:
    """Retarget every safe ``maybe_inplace`` node to the default overload; return how many."""
    count = 0
    for node, op, overload in ir_nodes(graph):
        if overload != "maybe_inplace":
            continue
        for index, name in zip(op.activation_indices, op.activations):
            donated = node.args[index] if index < len(node.args) else node.kwargs.get(name)
            if not isinstance(donated, fx.Node):
                continue
            readers = _later_readers(graph, node, donated)
            if readers:
                raise DonationError(
                    f"node {node.name!r} ({op.name}.maybe_inplace) donates argument {name!r} "
                    f"(node {donated.name!r}) to an in-place op, but {[r.name for r in readers]} "
                    "read it afterwards and would see overwritten data. Call the default "
                    f"overload (irshim.ir.ops.{op.name}(...)) instead, or stop reading {donated.name!r}."
                )
        node.target = op.torch_op
        count += 1
        logger.debug("functionalized %s (%s.maybe_inplace)", node.name, op.name)
    return count
