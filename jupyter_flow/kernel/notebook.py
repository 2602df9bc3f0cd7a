"""The notebook's graph: one op per ``%%flow`` cell, edges inferred from variable names.

Each kernel keeps one :class:`FlowNotebook`. A cell op's inputs are resolved when a run
is planned: a name that another flow cell outputs (and that the namespace still holds
as that cell's loaded value, or not at all) is an edge; any other name is captured from
the namespace by value at that moment and enters the cache key.
"""

from __future__ import annotations

import ast
import builtins
import functools
import hashlib
import os
import sys
import types
from dataclasses import dataclass, field
from typing import Any

from ..core import keys as keylib
from ..core.errors import FlowError
from ..core.graph import order
from ..core.op import Node, Op
from ..core.outputs import DISPLAYS, restore_modules, stored_outputs
from . import cells
from .params import values as param_values
from .cells import VALUE, CellError, CellCode

_MISSING = object()


@dataclass
class CellOp:
    """One ``%%flow`` cell as the notebook's graph knows it."""

    name: str
    text: str  # the whole cell, ``%%flow`` line first (for tracebacks)
    code: CellCode
    outputs: list[str]
    declared_inputs: list[str] = field(default_factory=list)  # --in
    retries: int = 0
    timeout: float | None = None
    cache: bool = True
    resources: dict = field(default_factory=dict)
    cluster: str | None = None
    provenance: dict = field(default_factory=dict)  # notebook, cell_id, cell_index, source_hash
    map_over: str | None = None  # --map: the list variable whose elements the cell runs on
    shell_files: dict | None = None  # --shell: output variable -> the file the command writes

    @property
    def reads(self) -> list[str]:
        return list(dict.fromkeys(self.declared_inputs + self.code.reads))


@dataclass
class Plan:
    """Nodes for some cells, ready for ``engine.submit``."""

    targets: list[Node]
    nodes: dict[str, Node]  # cell name -> node
    captured: dict[Node, dict]
    provenance: dict[Node, dict]
    cluster: str | None


class FlowNotebook:
    """The per-kernel registry of flow cells and the values loaded from their outputs."""

    def __init__(self, namespace: dict):
        self.namespace = namespace
        self.cells: dict[str, CellOp] = {}
        self.loaded: dict[str, tuple[str, Any]] = {}  # variable -> (artifact hash, value put in namespace)

    # --------------------------------------------------------------- define
    def define(self, cell: CellOp, *, check_names: bool = True) -> CellOp:
        """Add or replace a cell op; CellError (registry unchanged) for cycles or unknown names."""
        previous = self.cells.get(cell.name)
        self.cells[cell.name] = cell
        try:
            self._check_cycles()
            if check_names:
                self.resolve(cell)
        except FlowError:
            if previous is None:
                del self.cells[cell.name]
            else:
                self.cells[cell.name] = previous
            raise
        return cell

    def producer(self, variable: str, consumer: str) -> CellOp | None:
        """The flow cell whose output ``variable`` is (the latest defined wins)."""
        found = None
        for cell in self.cells.values():
            if cell.name != consumer and variable in cell.outputs:
                found = cell
        return found

    def _is_edge(self, variable: str, consumer: str, declared: bool) -> CellOp | None:
        producer = self.producer(variable, consumer)
        if producer is None:
            return None
        current = self.namespace.get(variable, _MISSING)
        if current is _MISSING or declared:
            return producer
        loaded = self.loaded.get(variable)
        # Reassigned in an ordinary cell since it was loaded: the user's value wins.
        return producer if loaded is not None and loaded[1] is current else None

    def resolve(self, cell: CellOp) -> tuple[dict[str, CellOp], list[str]]:
        """(edges: variable -> producing cell, captured variable names) for ``cell`` now."""
        edges: dict[str, CellOp] = {}
        captured: list[str] = []
        missing: list[str] = []
        for variable in cell.reads:
            producer = self._is_edge(variable, cell.name, variable in cell.declared_inputs)
            if producer is not None:
                edges[variable] = producer
            elif variable in self.namespace:
                captured.append(variable)
            elif not hasattr(builtins, variable):
                missing.append(variable)
        if missing:
            names = ", ".join(repr(m) for m in missing)
            raise CellError(
                f"cell {cell.name!r} reads {names}, defined nowhere: not in the namespace and not an "
                "output of another %%flow cell. Define it in an earlier cell (or run that cell first)."
            )
        return edges, captured

    def _check_cycles(self) -> None:
        deps: dict[str, set[str]] = {}
        for cell in self.cells.values():
            deps[cell.name] = {
                producer.name for variable in cell.reads
                if (producer := self._is_edge(variable, cell.name, variable in cell.declared_inputs)) is not None
            }
        try:
            order(deps)
        except FlowError as err:
            raise CellError(f"{err} (check the --in/--out of these %%flow cells)") from None

    def upstream_of(self, names: list[str]) -> list[str]:
        """``names`` and every flow cell they depend on, upstream first."""
        deps: dict[str, list[str]] = {}
        stack = list(names)
        while stack:
            name = stack.pop()
            if name in deps:
                continue
            edges, _ = self.resolve(self.cells[name])
            deps[name] = sorted({producer.name for producer in edges.values()})
            stack.extend(deps[name])
        return order(deps)

    # ----------------------------------------------------------------- plan
    def plan(self, names: list[str]) -> Plan:
        """Nodes for ``names`` and their upstream cells, with captured values taken now."""
        unknown = [n for n in names if n not in self.cells]
        if unknown:
            raise FlowError(f"no %%flow cell named {', '.join(map(repr, unknown))}; known: {sorted(self.cells)}")
        nodes: dict[str, Node] = {}
        captured_by_node: dict[Node, dict] = {}
        provenance: dict[Node, dict] = {}
        cluster = None
        for name in self.upstream_of(names):
            cell = self.cells[name]
            edges, captured = self.resolve(cell)
            values = {variable: self.namespace[variable] for variable in captured}
            inputs = {p: nodes[edges[p].name][p] for p in edges}
            if cell.shell_files is not None:
                node = self._shell_node(cell, inputs, values)
            elif cell.map_over is not None:
                node = self._mapped_node(cell, inputs, values)
            else:
                params = list(edges)
                function = cells.build_function(cell.code, params, cell.outputs, values)
                op = Op(function, name=cell.name, retries=cell.retries, timeout=cell.timeout, cache=cell.cache,
                        resources=cell.resources, outputs=[*cell.outputs, VALUE], source=cell.code.body)
                node = op(*[inputs[p] for p in params])
            nodes[name] = node
            captured_by_node[node] = _data_read_before_assigned(cell.code, values)
            provenance[node] = dict(cell.provenance)
            cluster = cluster or cell.cluster
        return Plan([nodes[n] for n in names], nodes, captured_by_node, provenance, cluster)

    def _mapped_node(self, cell: CellOp, inputs: dict, values: dict) -> Node:
        """``--map ITEMS``: the cell's body once per element, then its outputs as lists."""
        from ..core.composites import map_op

        items = cell.map_over
        params = [items] + [p for p in inputs if p != items]
        # The element is the function's parameter: the whole list among its globals would
        # put every element into every element's key (one more element reran them all).
        element_globals = {name: value for name, value in values.items() if name != items}
        function = cells.build_function(cell.code, params, cell.outputs, element_globals)
        each = Op(function, name=f"{cell.name}.each", retries=cell.retries, timeout=cell.timeout,
                  cache=cell.cache, resources=cell.resources, outputs=[*cell.outputs, VALUE],
                  source=cell.code.body)
        others = {p: inputs[p] for p in params[1:]}
        if items in inputs:
            mapped = map_op(each, inputs[items], **others)
        elif isinstance(values.get(items), (list, tuple)):
            mapped = map_op(each, values[items], **others)
        else:
            raise CellError(f"cell {cell.name!r}: --map {items}: {items} must be a list, or another flow "
                            f"cell's output that is one; it is a {type(values.get(items)).__name__}")
        gather = Op(_per_output, name=cell.name, outputs=[*cell.outputs, VALUE], cache=cell.cache)
        return gather(mapped, list(cell.outputs))

    def _shell_node(self, cell: CellOp, inputs: dict, values: dict) -> Node:
        """``--shell``: the command with its fields taken from the notebook."""
        from ..core.files import FlowFile
        from ..core.shell import shell

        files, params = {}, {}
        for field_name in cell.code.reads:
            producer = self.producer(field_name, cell.name)
            if field_name in inputs and producer is not None and producer.shell_files:
                files[field_name] = inputs[field_name]  # a file another shell cell wrote
            elif field_name in inputs:
                params[field_name] = inputs[field_name]
            elif isinstance(values.get(field_name), FlowFile):
                files[field_name] = values[field_name]
            else:
                params[field_name] = values[field_name]
        outputs = cell.shell_files or {}
        return shell(cell.code.body, inputs=files, outputs=outputs, params=params, name=cell.name,
                     retries=cell.retries, timeout=cell.timeout, resources=cell.resources or None,
                     cache=cell.cache, stdout=None if outputs else cell.name)

    def cell_of(self, task_name: str) -> str | None:
        """The cell a task belongs to (a mapped cell's per-element tasks included)."""
        if task_name in self.cells:
            return task_name
        base = task_name[: -len(".each")] if task_name.endswith(".each") else None
        return base if base in self.cells else None

    # -------------------------------------------------------------- hydrate
    def hydrate(self, tasks, artifacts) -> list[str]:
        """Put the outputs of finished cell tasks into the namespace; returns the names set."""
        changed = []
        for task in tasks:
            if task.status not in ("SUCCESS", "CACHED") or task.name not in self.cells:
                continue
            stored = stored_outputs(task.outputs)
            missing = [n for n in self.cells[task.name].outputs if n not in stored]
            if missing and DISPLAYS in (task.outputs or {}):
                # Modules are kept by name in the op's record: import them here.
                modules = restore_modules(artifacts.get(task.outputs[DISPLAYS]))
                for variable in missing:
                    if variable in modules:
                        self.namespace[variable] = modules[variable]
                        changed.append(variable)
            for variable, digest in stored.items():
                if variable == VALUE:
                    continue
                loaded = self.loaded.get(variable)
                current = self.namespace.get(variable, _MISSING)
                if loaded is not None and loaded[0] == digest and loaded[1] is current:
                    continue  # already there, untouched
                value = artifacts.get(digest)
                self.namespace[variable] = value
                self.loaded[variable] = (digest, value)
                changed.append(variable)
        return changed

    def import_modules(self, tasks) -> list[str]:
        """Run the top-level imports of finished cells here too, so later cells can use the
        modules (they are never stored: the kernel imports them by name)."""
        done = []
        for task in tasks:
            cell = self.cells.get(task.name)
            if cell is None or task.status not in ("SUCCESS", "CACHED"):
                continue
            for statement in _top_level_imports(cell.code.tree.body):
                text = ast.unparse(statement)
                try:
                    exec(compile(ast.Module(body=[statement], type_ignores=[]), f"<flow cell {cell.name} imports>",
                                 "exec"), self.namespace)
                except Exception as err:  # importable on the worker only (e.g. a GPU library)
                    print(f"[jupyter_flow] `{text}` (cell {cell.name!r}) ran on the worker but fails in this "
                          f"kernel: {type(err).__name__}: {err}", file=sys.stderr)
                    continue
                done.append(text)
        return done


def _top_level_imports(statements) -> list[ast.stmt]:
    """Import statements a cell runs unconditionally at top level (also inside ``try:``)."""
    found: list[ast.stmt] = []
    for node in statements:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.Try):
            found.extend(_top_level_imports(node.body))
    return found


def _per_output(rows: list, names: list) -> Any:
    """A mapped cell's per-element outputs, as one list per output name."""
    return {**{name: [row[name] for row in rows] for name in names}, VALUE: None}


def _data_read_before_assigned(code: CellCode, values: dict[str, Any]) -> dict[str, Any]:
    """Captured data the key analysis would miss: names the cell also assigns (``x = x + 1``).

    The key analysis finds the names a cell only reads through the op's globals (and
    treats functions and modules there as code); what it takes for bound is added here.
    """
    free, _ = keylib._names_read(code.tree)
    return {
        name: value for name, value in values.items()
        if name not in free and not isinstance(value, (types.ModuleType, types.FunctionType, type, Op))
    }


def source_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def notebook_path() -> str | None:
    """The notebook this kernel runs: where JupyterLab says it (``JPY_SESSION_NAME``), where a
    batch says it (``JUPYTER_FLOW_NOTEBOOK``), or the notebook on the command line of the
    process that started the kernel (``papermill in.ipynb out.ipynb``, ``jupyter nbconvert
    --execute x.ipynb``)."""
    return os.environ.get("JPY_SESSION_NAME") or os.environ.get("JUPYTER_FLOW_NOTEBOOK") or _launcher_notebook()


@functools.lru_cache(maxsize=1)
def _launcher_notebook() -> str | None:
    """The first existing ``.ipynb`` argument of the parent process (Linux ``/proc``)."""
    parent = os.getppid()
    try:
        with open(f"/proc/{parent}/cmdline", "rb") as handle:
            arguments = [a.decode(errors="replace") for a in handle.read().split(b"\0") if a]
        cwd = os.readlink(f"/proc/{parent}/cwd")
    except OSError:  # not Linux, or the parent is gone
        return None
    for argument in arguments[1:]:
        value = argument.split("=", 1)[-1] if argument.startswith("--") else argument
        if value.endswith(".ipynb"):
            path = os.path.join(cwd, value)
            if os.path.isfile(path):
                return os.path.abspath(path)
    return None


def stale_report(notebook: FlowNotebook, engine) -> dict[str, str]:
    """For every cell: "cached" when its current key has a cache entry, else why it is stale."""
    report: dict[str, str] = {}
    runnable = []
    for name in notebook.cells:
        try:
            notebook.upstream_of([name])
            runnable.append(name)
        except FlowError as err:  # e.g. a --define-only cell whose input nothing produces yet
            report[name] = f"not runnable: {err}"
    if not runnable:
        return report
    plan = notebook.plan(runnable)
    from ..core.graph import Graph

    graph = Graph(list(plan.nodes.values()))
    upstream_keys: dict[Node, str] = {}
    states = {}
    memo: dict = {}
    for node in graph.nodes:
        key = keylib.task_key(node, upstream_keys, captured=plan.captured.get(node), memo=memo)
        upstream_keys[node] = key.key
        states[node] = key
    engine.writer.flush()  # the store is read below: this process's own writes first
    hits = engine.store.lookup_cache([k.key for k in states.values() if k.disabled_reason is None])
    previous = engine.store.last_components(
        list(plan.nodes), {name: states[node].components.get("origin") for name, node in plan.nodes.items()})
    for name, node in plan.nodes.items():
        key = states[node]
        if key.disabled_reason:
            report[name] = key.disabled_reason
        elif key.key in hits:
            report[name] = "cached"
        else:
            report[name] = keylib.explain(key.components, previous.get(name), params=param_values())
    return report
