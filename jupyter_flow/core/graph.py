"""A workflow graph: the nodes reachable from some targets, in dependency order."""

from __future__ import annotations

from graphlib import CycleError, TopologicalSorter
from typing import Any, Hashable, Iterable, Mapping

from .errors import FlowError
from .op import Node, OutputRef


class Graph:
    """Nodes reachable from ``targets``, topologically ordered (upstream first).

    ``targets`` is a node, or a list/tuple of nodes; :meth:`shape` restores results in
    the same shape.

    >>> from .op import op
    >>> inc = op(lambda x: x + 1, name="inc")
    >>> g = Graph(inc(inc(1)))
    >>> [n.op.name for n in g.nodes]
    ['inc', 'inc']
    """

    def __init__(self, targets: Any):
        if isinstance(targets, (Node, OutputRef)):
            self.target_list = [targets]
            self.single = True
        elif isinstance(targets, (list, tuple)) and targets:
            self.target_list = list(targets)
            self.single = False
        else:
            raise FlowError(
                "jf.run needs a node (an op called with its arguments) or a non-empty list of "
                f"nodes, got {type(targets).__name__}"
            )
        for item in self.target_list:
            if not isinstance(item, (Node, OutputRef)):
                raise FlowError(
                    f"jf.run: every target must be a node, got {type(item).__name__}; "
                    "did you call the op (train(data)) rather than pass it (train)?"
                )
        self.shape_type = type(targets) if not self.single else None
        self.deps: dict[Node, list[Node]] = {}
        stack = [t.node if isinstance(t, OutputRef) else t for t in self.target_list]
        while stack:
            node = stack.pop()
            if node in self.deps:
                continue
            ups = list(dict.fromkeys(node.upstream()))
            self.deps[node] = ups
            stack.extend(reversed(ups))  # popped first to last: ids follow the items' order
        self.nodes: list[Node] = order(self.deps, label=lambda n: n.op.name)
        self.position = {node: i for i, node in enumerate(self.nodes)}

    def target_nodes(self) -> list[Node]:
        return [t.node if isinstance(t, OutputRef) else t for t in self.target_list]

    def downstream(self) -> dict[Node, list[Node]]:
        down: dict[Node, list[Node]] = {n: [] for n in self.nodes}
        for node, ups in self.deps.items():
            for up in ups:
                down[up].append(node)
        return down

    def shape(self, values: list) -> Any:
        """Give results the shape the targets were given in."""
        if self.single:
            return values[0]
        return self.shape_type(values) if self.shape_type is tuple else list(values)


def order(deps: Mapping[Hashable, Iterable[Hashable]], label=str) -> list:
    """Topological order of ``deps`` (node → upstream nodes); a cycle is a FlowError naming it."""
    sorter = TopologicalSorter(deps)
    try:
        return list(sorter.static_order())
    except CycleError as err:
        cycle = err.args[1] if len(err.args) > 1 else []
        names = " -> ".join(str(label(n)) for n in cycle)
        raise FlowError(f"the graph has a cycle: {names}; break it by changing inputs or outputs") from None
