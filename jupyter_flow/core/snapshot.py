"""A run's graph as a flat table of nodes, so that a graph of any depth can be stored
and loaded again (``jf.resume`` in another process).

Pickling the targets themselves follows each node's arguments to its upstream nodes: a
chain of a few hundred ops needs more nested calls than pickle allows ("excessively deep
recursion"). Here each node is a row — its op, its arguments with upstream nodes replaced
by the row numbers of those nodes, its map index — listed upstream first, so writing and
reading are loops over rows, whatever the depth.
"""

from __future__ import annotations

from typing import Any

from .graph import Graph
from .op import Node, OutputRef

FORMAT = 1  # bump when the rows change shape; load() keeps reading every older format


class NodeSlot:
    """Stands for the node of row ``row`` (or one of its outputs) in an argument template."""

    __slots__ = ("row", "output")

    def __init__(self, row: int, output: str | None = None):
        self.row = row
        self.output = output

    def __reduce__(self):
        return (NodeSlot, (self.row, self.output))

    def __repr__(self) -> str:
        return f"NodeSlot({self.row}{'' if self.output is None else ', ' + repr(self.output)})"


class GraphSnapshot:
    """The nodes of a graph, upstream first: ``rows[i] = (op, args, kwargs, index)``.

    >>> from .op import op
    >>> inc = op(lambda x: x + 1, name="inc")
    >>> x = 0
    >>> for _ in range(2000):
    ...     x = inc(x)
    >>> shot = GraphSnapshot.of(Graph(x))
    >>> len(shot.rows), shot.targets()  # doctest: +ELLIPSIS
    (2000, <jf.Node inc#...>)
    """

    __slots__ = ("format", "rows", "target_rows", "shape")

    def __init__(self, rows: list[tuple], target_rows: list[tuple[int, str | None]], shape: str,
                 format: int = FORMAT):
        self.format = format
        self.rows = rows
        self.target_rows = target_rows
        self.shape = shape  # "single" | "list" | "tuple": how the targets were given

    def __reduce__(self):
        return (GraphSnapshot, (self.rows, self.target_rows, self.shape, self.format))

    @classmethod
    def of(cls, graph: Graph) -> "GraphSnapshot":
        row_of = {node: i for i, node in enumerate(graph.nodes)}  # graph.nodes: upstream first
        rows = [(node.op, _template(node.args, row_of), _template(node.kwargs, row_of), node.index)
                for node in graph.nodes]
        targets: list[tuple[int, str | None]] = [
            (row_of[t.node], t.output) if isinstance(t, OutputRef) else (row_of[t], None) for t in graph.target_list]
        shape = "single" if graph.single else ("tuple" if graph.shape_type is tuple else "list")
        return cls(rows, targets, shape)

    def targets(self) -> Any:
        """The targets as they were given to ``jf.run``: new nodes, same ops and arguments."""
        nodes: list[Node] = []
        for op, args, kwargs, index in self.rows:
            nodes.append(Node(op, _fill(args, nodes), _fill(kwargs, nodes), index=index))
        targets = [nodes[row] if output is None else OutputRef(nodes[row], output)
                   for row, output in self.target_rows]
        if self.shape == "single":
            return targets[0]
        return tuple(targets) if self.shape == "tuple" else targets


def load(stored: Any) -> Any:
    """The targets held by a stored snapshot: a :class:`GraphSnapshot`, or (snapshots
    written before it existed) the pickled node, list or tuple of nodes itself."""
    if isinstance(stored, GraphSnapshot):
        if stored.format > FORMAT:
            from .errors import FlowError

            raise FlowError(f"this graph snapshot has format {stored.format}, newer than this version of "
                            f"jupyter_flow reads ({FORMAT}); upgrade jupyter_flow to resume it")
        return stored.targets()
    return stored


def _template(value: Any, row_of: dict) -> Any:
    """``value`` with every node in it replaced by its row (only through lists, tuples and
    dicts, where ``Node.upstream`` finds nodes); a value holding no node stays as it is."""
    if isinstance(value, Node):
        return NodeSlot(row_of[value])
    if isinstance(value, OutputRef):
        return NodeSlot(row_of[value.node], value.output)
    return _rebuilt(value, _template, row_of)


def _fill(value: Any, nodes: list[Node]) -> Any:
    if isinstance(value, NodeSlot):
        node = nodes[value.row]
        return node if value.output is None else OutputRef(node, value.output)
    return _rebuilt(value, _fill, nodes)


def _rebuilt(value: Any, convert, context) -> Any:
    """``value`` (a list, tuple or dict) with ``convert`` applied to its items; the value
    itself when nothing in it changed (a named tuple of parameters stays one)."""
    if isinstance(value, (list, tuple)):
        items = [convert(v, context) for v in value]
        if all(new is old for new, old in zip(items, value)):
            return value
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        entries = {k: convert(v, context) for k, v in value.items()}
        if all(entries[k] is v for k, v in value.items()):
            return value
        return entries
    return value
