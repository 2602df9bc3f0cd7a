"""Composition of ops into bigger nodes: pipeline, parallel, funnel, map.

Each composite is an ordinary Node, so composites nest and cache like any op.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from .errors import FlowError
from .op import MapOp, Node, Op, OutputRef


def _collect(*values):
    return list(values)


# Built-in op whose value is the list of its arguments' values. Its name is what graphs
# show: "parallel" for jf.parallel, "map:OP" for a map, "funnel:OP" for a funnel's inputs.
# The name is not part of the cache key (the code and inputs are), so every collector with
# the same inputs shares one cache entry.
_COLLECT = Op(_collect, name="parallel")
_COLLECTORS: dict[str, Op] = {"parallel": _COLLECT}


def _collector(name: str) -> Op:
    op_ = _COLLECTORS.get(name)
    if op_ is None:
        op_ = _COLLECTORS[name] = Op(_collect, name=name)
    return op_


def _as_node(item: Any, where: str) -> Node | OutputRef:
    if isinstance(item, (Node, OutputRef)):
        return item
    if isinstance(item, Op):
        return item()
    raise FlowError(f"{where}: expected an op or a node (an op called with its arguments), got {type(item).__name__}")


def pipeline(steps: Sequence[Any]) -> Node:
    """Chain steps: each step gets the previous step's value as its first argument.

    The first step is a node (or an op taking no arguments); later steps are ops or
    ``(op, {kwargs})`` pairs.

    >>> from .op import op
    >>> inc = op(lambda x: x + 1, name="inc")
    >>> pipeline([inc(1), inc, inc]).op.name
    'inc'
    """
    steps = list(steps)
    if not steps:
        raise FlowError("jf.pipeline needs at least one step")
    current = _as_node(steps[0], "jf.pipeline step 0")
    for position, step in enumerate(steps[1:], start=1):
        kwargs: dict = {}
        if isinstance(step, tuple) and len(step) == 2 and isinstance(step[1], dict):
            step, kwargs = step
        if not isinstance(step, Op):
            raise FlowError(
                f"jf.pipeline step {position}: expected an op (it receives the previous value), "
                f"got {type(step).__name__}"
            )
        current = step(current, **kwargs)
    return current if isinstance(current, Node) else _COLLECT(current)


def parallel(items: Iterable[Any]) -> Node:
    """A node whose value is the list of the items' values (items run concurrently)."""
    nodes = [_as_node(item, "jf.parallel item") for item in items]
    return _COLLECT(*nodes)


def funnel(items: Iterable[Any], into: Op) -> Node:
    """``into(list of the items' values)``: fan-in of parallel branches."""
    if not isinstance(into, Op):
        raise FlowError(f"jf.funnel: into= must be an op, got {type(into).__name__}")
    nodes = [_as_node(item, "jf.funnel item") for item in items]
    return into(_collector(f"funnel:{into.name}")(*nodes))


def map_op(op_: Op, items: Iterable[Any] | Node | OutputRef, **params: Any) -> Node:
    """A node whose value is ``[op(item, **params) for item in items]``, one task per item.

    ``items`` is a list, or a node whose value is a list known only at run time (dynamic
    fan-out): its mapped tasks are created when that node has run.

    >>> from .op import op
    >>> square = op(lambda x: x * x, name="square")
    >>> map_op(square, [1, 2, 3]).op.name, map_op(square, square(4)).op.name
    ('map:square', 'map:square')
    """
    if not isinstance(op_, Op):
        raise FlowError(f"jf.map: the first argument must be an op, got {type(op_).__name__}")
    if isinstance(items, (Node, OutputRef)):
        return MapOp(op_)(items, **params)
    nodes = []
    for index, item in enumerate(items):
        node = op_(item, **params)
        node.index = index
        nodes.append(node)
    return _collector(f"map:{op_.name}")(*nodes)
