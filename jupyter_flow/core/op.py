"""Ops (functions made into workflow steps) and lazy Nodes (an op applied to arguments).

Calling an op runs nothing: it returns a :class:`Node` that records the op and its
arguments. Arguments may themselves be Nodes (graph edges), lists/tuples/dicts holding
Nodes, or plain values (parameters that enter the cache key).
"""

from __future__ import annotations

import inspect
import itertools
import textwrap
import numbers
from typing import Any, Callable, Iterable, Iterator

from .errors import FlowError
from .resources import normalise as normalise_resources

_node_counter = itertools.count()
RETURN = "return"  # output name of an op with a single return value


class Op:
    """A function that jupyter_flow schedules, caches and records.

    >>> @op
    ... def double(x):
    ...     return 2 * x
    >>> node = double(21)        # a lazy Node; nothing ran
    >>> node.op.name
    'double'
    """

    def __init__(
        self,
        func: Callable,
        *,
        name: str | None = None,
        retries: int = 0,
        timeout: float | None = None,
        cache: bool = True,
        resources: dict[str, Any] | None = None,
        isolate: bool = False,
        outputs: Iterable[str] | None = None,
        source: str | None = None,
        captured: dict[str, Any] | None = None,
    ):
        if not callable(func):
            raise FlowError(f"jf.op needs a function, got {type(func).__name__}")
        self.func = func
        self.name = name or getattr(func, "__name__", "op")
        label = f"op {self.name!r}"
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise FlowError(f"{label}: retries must be an integer >= 0, got {retries!r}")
        if timeout is not None and (
            not isinstance(timeout, numbers.Real) or isinstance(timeout, bool) or timeout <= 0
        ):
            raise FlowError(f"{label}: timeout must be a positive number of seconds, got {timeout!r}")
        resources = normalise_resources(resources, label)
        self.retries = retries
        self.timeout = float(timeout) if timeout is not None else None
        self.cache = bool(cache)
        self.resources = resources
        self.isolate = bool(isolate)
        self.outputs = tuple(outputs) if outputs else (RETURN,)
        # The source travels with the op (workers and resuming processes cannot read it
        # back from a file): explicit for notebook cells, read now for functions.
        self.source = source if source is not None else _read_source(func)
        # Values the op reads that are not arguments (a cell's captured names).
        self.captured = captured
        try:
            self.signature: inspect.Signature | None = inspect.signature(func)
        except (TypeError, ValueError):
            self.signature = None
        self._simple: tuple | None = None  # (signature, its SimpleParameters), see below
        self._fingerprint: Any = None  # the latest code analysis (core.keys), pickled along

    @property
    def simple_parameters(self) -> "SimpleParameters | None":
        """The signature's parameters when they are all plain, worked out once per op (and
        again if a subclass replaces ``signature``): calling the op 10,000 times for a big
        graph, and keying its nodes, then needs no ``Signature.bind``."""
        simple = getattr(self, "_simple", None)
        if simple is None or simple[0] is not self.signature:
            simple = self._simple = (self.signature, _simple_parameters(self.signature))
        return simple[1]

    @property
    def multi_output(self) -> bool:
        return self.outputs != (RETURN,)

    def __call__(self, *args: Any, **kwargs: Any) -> "Node":
        simple = self.simple_parameters
        if simple is not None and _fits(simple, args, kwargs):
            return Node(self, args, kwargs)
        if self.signature is not None:  # bind says exactly what is wrong (or binds *args, **kw)
            try:
                self.signature.bind(*args, **kwargs)
            except TypeError as err:
                raise FlowError(f"op {self.name!r}: {err}; check the arguments of the call") from None
        return Node(self, args, kwargs)

    def options(self, **changes: Any) -> "Op":
        """A copy of this op with some settings changed: ``train.options(retries=3)``."""
        settings = dict(
            name=self.name, retries=self.retries, timeout=self.timeout, cache=self.cache,
            resources=self.resources, isolate=self.isolate, outputs=self.outputs,
            source=self.source, captured=self.captured,
        )
        settings.update(changes)
        return Op(self.func, **settings)

    def __repr__(self) -> str:
        return f"<jf.op {self.name}>"

    def __reduce__(self):
        return (
            _rebuild_op,
            (self.func, self.name, self.retries, self.timeout, self.cache, self.resources,
             self.isolate, self.outputs, self.source, self.captured, self._fingerprint),
        )


class SimpleParameters:
    """A signature whose parameters are all plain (positional or keyword, no ``*args``,
    ``**kwargs``, ``/`` or ``*``): names in order, defaults, and the required ones."""

    __slots__ = ("names", "defaults", "position", "required")

    def __init__(self, names: tuple[str, ...], defaults: dict[str, Any]):
        self.names = names
        self.defaults = defaults
        self.position = {name: i for i, name in enumerate(names)}
        self.required = tuple(i for i, name in enumerate(names) if name not in defaults)


def _simple_parameters(signature: inspect.Signature | None) -> SimpleParameters | None:
    if signature is None:
        return None
    names, defaults = [], {}
    for param in signature.parameters.values():
        if param.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD:
            return None
        names.append(param.name)
        if param.default is not inspect.Parameter.empty:
            defaults[param.name] = param.default
    return SimpleParameters(tuple(names), defaults)


def _fits(simple: SimpleParameters, args: tuple, kwargs: dict) -> bool:
    """Whether ``Signature.bind(*args, **kwargs)`` would succeed (same rules, no objects)."""
    count = len(args)
    if count > len(simple.names):
        return False
    position = simple.position
    for name in kwargs:
        at = position.get(name)
        if at is None or at < count:  # unknown, or given positionally too
            return False
    names = simple.names
    return all(at < count or names[at] in kwargs for at in simple.required)


def _rebuild_op(func, name, retries, timeout, cache, resources, isolate, outputs, source, captured,
                fingerprint=None):
    rebuilt = Op(func, name=name, retries=retries, timeout=timeout, cache=cache,
                 resources=resources, isolate=isolate, outputs=outputs, source=source,
                 captured=captured)
    # An unpickled op keeps the analysis made where it was defined: there its helpers'
    # sources could be read, here (a resuming process) they may not.
    rebuilt._carried = fingerprint
    return rebuilt


class MapOp(Op):
    """``jf.map(op, node)``: ``op`` over a list that another op produces at run time.

    The engine expands it when the list is known: one task per item (each cached and
    recorded like any op call), then a task gathering their values into a list. Its own
    cache key comes from the mapped op's code, the parameters and the upstream key, so a
    fully cached rerun needs no expansion.
    """

    def __init__(self, inner: Op):
        if not isinstance(inner, Op) or isinstance(inner, MapOp):
            raise FlowError(f"jf.map: the first argument must be an op, got {type(inner).__name__}")
        super().__init__(_expanded_by_the_engine, name=f"map:{inner.name}", cache=inner.cache,
                         source=inner.source)
        self.inner = inner

    def __reduce__(self):
        return (MapOp, (self.inner,))


def _expanded_by_the_engine(items, **params):
    raise FlowError("a jf.map over a node is expanded by the engine; it is not called directly")


def _read_source(func: Callable) -> str | None:
    if getattr(func, "__name__", "") == "<lambda>":
        return None
    try:
        return textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError):
        return None


def op(func: Callable | None = None, **settings: Any):
    """Make a function an op: ``@jf.op`` or ``@jf.op(retries=2, timeout=600)``.

    ``resources={"cores": 4, "memory": "16GB", "walltime": "02:00:00", "GPU": 1}`` says
    what it needs (core/resources.py): on a Slurm profile with pools it chooses the pool;
    elsewhere the job shape is advisory and GPU (or any other name) strict.

    >>> @op(retries=1)
    ... def load(n):
    ...     return list(range(n))
    >>> load.retries
    1
    """
    allowed = {"name", "retries", "timeout", "cache", "resources", "isolate"}
    unknown = set(settings) - allowed
    if unknown:
        raise FlowError(
            f"jf.op got unknown setting(s) {sorted(unknown)}; allowed: {sorted(allowed)}"
        )
    if func is None:
        return lambda f: Op(f, **settings)
    if isinstance(func, Op):
        return func.options(**settings) if settings else func
    return Op(func, **settings)


class Node:
    """An op applied to arguments; nothing runs until ``jf.run``.

    ``index`` is set for nodes made by ``jf.map`` (their position in the mapped list).
    """

    __slots__ = ("op", "args", "kwargs", "uid", "index", "__weakref__")

    def __init__(self, op_: Op, args: tuple, kwargs: dict, index: int | None = None):
        self.op = op_
        self.args = tuple(args)
        self.kwargs = dict(kwargs)
        self.uid = next(_node_counter)
        self.index = index

    def __getitem__(self, output: str) -> "OutputRef":
        if output not in self.op.outputs:
            raise FlowError(
                f"op {self.op.name!r} has no output {output!r}; its outputs are {list(self.op.outputs)}"
            )
        return OutputRef(self, output)

    def upstream(self) -> Iterator["Node"]:
        """Nodes this node's arguments refer to (directly or inside lists/tuples/dicts)."""
        for value in itertools.chain(self.args, self.kwargs.values()):
            yield from iter_nodes(value)

    def __repr__(self) -> str:
        return f"<jf.Node {self.op.name}#{self.uid}>"

    def __bool__(self) -> bool:
        return True


class OutputRef:
    """One named output of a multi-output node, usable as an argument."""

    __slots__ = ("node", "output")

    def __init__(self, node: Node, output: str):
        self.node = node
        self.output = output

    def __repr__(self) -> str:
        return f"<jf.OutputRef {self.node.op.name}[{self.output!r}]>"


def iter_nodes(value: Any) -> Iterator[Node]:
    """Yield every Node referenced by an argument value."""
    if isinstance(value, Node):
        yield value
    elif isinstance(value, OutputRef):
        yield value.node
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from iter_nodes(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from iter_nodes(item)


def contains_node(value: Any) -> bool:
    return next(iter_nodes(value), None) is not None
