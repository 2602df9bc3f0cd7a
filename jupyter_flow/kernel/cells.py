"""A ``%%flow`` cell's code: what it reads and assigns, and the function built from it.

A cell body becomes ``def _cell(<inputs from other flow ops>): <body>; return {outputs}``,
compiled from the cell's own AST so tracebacks (even remote ones) carry line numbers of
the cell as the user sees it, ``%%flow`` line included.
"""

from __future__ import annotations

import ast
import builtins
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from ..core.errors import FlowError
from ..core.outputs import VALUE as _DISPLAYED_VALUE

VALUE = _DISPLAYED_VALUE  # the value of the cell's last expression: displayed by the worker, never stored
MAGIC_LINES = 1  # the ``%%flow`` line above the body


class CellError(FlowError):
    """A problem with a ``%%flow`` cell found before anything is submitted."""


@dataclass
class CellCode:
    """What a cell body reads (before assigning) and assigns at top level."""

    label: str
    body: str
    tree: ast.Module
    reads: list[str]  # names read before being assigned, builtins excluded
    assigns: list[str]  # public top-level names assigned, in order
    has_value: bool  # the last statement is an expression


def shell_code(command: str, label: str, files: dict[str, str]) -> CellCode:
    """What a ``%%flow --shell`` cell reads: the ``{name}`` fields of its command (not the
    files it writes, nor the shell's own ``${VAR}``)."""
    from ..core import command_template

    trouble = command_template.problem(command)
    if trouble:
        raise CellError(f"cell {label!r}: {trouble}")
    reads = [f for f in command_template.fields(command) if f not in files]
    return CellCode(label, command, ast.Module(body=[], type_ignores=[]), reads, list(files), False)


def filename(label: str) -> str:
    return f"<flow cell {label}>"


def parse(body: str, label: str) -> CellCode:
    """Analyse a cell body; CellError for IPython-only syntax or a syntax error.

    >>> code = parse("y = x + 1\\nz = y * 2", "demo")
    >>> code.reads, code.assigns
    (['x'], ['y', 'z'])
    """
    try:
        tree = ast.parse(body)
    except SyntaxError as err:
        ipython_line = _ipython_syntax_line(body)
        if ipython_line is not None:
            number, text = ipython_line
            marker = _SHELL_OR_MAGIC.match(text)
            kind = "a shell command (!)" if marker and marker.group(1) == "!" else "an IPython magic (%)"
            raise CellError(
                f"cell {label!r}, line {number + MAGIC_LINES}: {text.strip()!r} is {kind}; flow cells run "
                "on Dask workers without IPython. Move it to an ordinary cell, or use subprocess/Python calls."
            ) from None
        line = (err.lineno or 0) + MAGIC_LINES
        raise CellError(f"cell {label!r}, line {line}: syntax error: {err.msg}") from None
    assigns = [n for n in dict.fromkeys(_top_level_assigned(tree.body)) if not n.startswith("_")]
    # As in Jupyter, a last expression ending with ";" is not displayed.
    has_value = bool(tree.body) and isinstance(tree.body[-1], ast.Expr) and not _quiet(body)
    reads = [n for n in _all_reads(tree) if not hasattr(builtins, n)]
    return CellCode(label, body, tree, reads, assigns, has_value)


def _quiet(body: str) -> bool:
    """The cell's last line of code ends with ";" (comments aside), like IPython's check."""
    import io
    import tokenize

    try:
        tokens = [t for t in tokenize.generate_tokens(io.StringIO(body).readline)
                  if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
                                    tokenize.DEDENT, tokenize.ENDMARKER)]
    except (tokenize.TokenError, SyntaxError):
        return False
    return bool(tokens) and tokens[-1].string == ";"


_SHELL_OR_MAGIC = re.compile(r"^\s*(?:[\w.,\s\[\]()*]+=\s*)?(!|%)")


def _ipython_syntax_line(body: str) -> tuple[int, str] | None:
    """The first line that IPython would rewrite into a ``get_ipython()`` call."""
    from IPython.core.inputtransformer2 import TransformerManager

    transformed = TransformerManager().transform_cell(body)
    if "get_ipython()" not in transformed or "get_ipython()" in body:
        return None
    for number, line in enumerate(body.splitlines(), start=1):
        if _SHELL_OR_MAGIC.match(line) or line.rstrip().endswith("?"):
            return number, line
    return None


def _top_level_assigned(statements: Iterable[ast.stmt]) -> Iterable[str]:
    """Names bound at module level (including inside top-level if/for/with/try blocks)."""
    for node in statements:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.name
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue  # modules stay where they are imported; workers import them again
        # Loop variables and ``with ... as`` names are scaffolding, not results (an open
        # file cannot even be stored); ``--out`` still names them when wanted.
        scaffolding: set[int] = set()
        for child in ast.walk(node):
            if isinstance(child, (ast.For, ast.AsyncFor)):
                scaffolding.update(id(n) for n in ast.walk(child.target))
            elif isinstance(child, (ast.With, ast.AsyncWith)):
                for item in child.items:
                    if item.optional_vars is not None:
                        scaffolding.update(id(n) for n in ast.walk(item.optional_vars))
        for child in ast.walk(node):
            if (isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store) and id(child) not in scaffolding
                    and not _inside_scope(node, child)):
                yield child.id


def _inside_scope(root: ast.AST, target: ast.AST) -> bool:
    """True if ``target`` lies inside a nested function, lambda, class or comprehension."""
    scopes = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda,
              ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
    stack: list[tuple[ast.AST, bool]] = [(root, False)]
    while stack:
        node, nested = stack.pop()
        if node is target:
            return nested
        for child in ast.iter_child_nodes(node):
            stack.append((child, nested or isinstance(node, scopes)))
    return False


class _Reads(ast.NodeVisitor):
    """Names a cell reads before assigning them, statement by statement."""

    def __init__(self):
        self.bound: set[str] = set()
        self.reads: list[str] = []

    def _load(self, name: str) -> None:
        if name not in self.bound:
            self.reads.append(name)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self._load(node.id)
        else:
            self.bound.add(node.id)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self.visit(target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.visit(node.value)
        if isinstance(node.target, ast.Name):
            self._load(node.target.id)
        self.visit(node.target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
        self.visit(node.target)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self.visit(node.target)

    def visit_For(self, node: ast.For) -> None:
        self.visit(node.iter)
        self.visit(node.target)
        for statement in node.body + node.orelse:
            self.visit(statement)

    visit_AsyncFor = visit_For

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.bound.add((alias.asname or alias.name).split(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            self.bound.add(alias.asname or alias.name)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self.bound.add(node.name)
        for statement in node.body:
            self.visit(statement)

    def _nested(self, node: ast.AST, params: Iterable[str], body: list) -> None:
        """A nested scope: its free names are read from the cell when it is called."""
        inner = _Reads()
        inner.bound = set(params)
        for child in body:
            for sub in ast.walk(child):
                if isinstance(sub, ast.Name) and not isinstance(sub.ctx, ast.Load):
                    inner.bound.add(sub.id)
                elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    inner.bound.add(sub.name)
                elif isinstance(sub, (ast.Import, ast.ImportFrom)):
                    for alias in sub.names:
                        inner.bound.add((alias.asname or alias.name).split(".")[0])
        for child in body:
            inner.visit(child)
        self._deferred.extend(inner.reads)

    @property
    def _deferred(self) -> list[str]:
        # Free names of nested scopes are checked against everything the cell binds,
        # since a function body runs later than its definition.
        if not hasattr(self, "_later"):
            self._later: list[str] = []
        return self._later

    def visit_FunctionDef(self, node) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        for default in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
            self.visit(default)
        params = [a.arg for a in node.args.args + node.args.posonlyargs + node.args.kwonlyargs]
        params += [a.arg for a in (node.args.vararg, node.args.kwarg) if a is not None]
        self.bound.add(node.name)
        self._nested(node, params, node.body)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        for default in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
            self.visit(default)
        params = [a.arg for a in node.args.args + node.args.posonlyargs + node.args.kwonlyargs]
        params += [a.arg for a in (node.args.vararg, node.args.kwarg) if a is not None]
        self._nested(node, params, [ast.Expr(node.body)])

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in node.decorator_list + node.bases + [k.value for k in node.keywords]:
            self.visit(expr)
        self.bound.add(node.name)
        self._nested(node, [], node.body)

    def _comprehension(self, node, elements: list) -> None:
        first, *rest = node.generators
        self.visit(first.iter)  # evaluated in the enclosing scope
        targets: set[str] = set()
        for generator in node.generators:
            targets.update(n.id for n in ast.walk(generator.target) if isinstance(n, ast.Name))
        inner = _Reads()
        inner.bound = set(self.bound) | targets
        for generator in node.generators:
            for cond in generator.ifs:
                inner.visit(cond)
        for generator in rest:
            inner.visit(generator.iter)
        for element in elements:
            inner.visit(element)
        self.reads.extend(inner.reads)
        self._deferred.extend(getattr(inner, "_later", []))

    def visit_ListComp(self, node) -> None:
        self._comprehension(node, [node.elt])

    visit_SetComp = visit_GeneratorExp = visit_ListComp

    def visit_DictComp(self, node) -> None:
        self._comprehension(node, [node.key, node.value])

    def visit_Global(self, node) -> None:
        return None

    visit_Nonlocal = visit_Global


def _all_reads(code_tree: ast.Module) -> list[str]:
    scope = _Reads()
    for statement in code_tree.body:
        scope.visit(statement)
    bound = scope.bound
    later = [n for n in getattr(scope, "_later", []) if n not in bound]
    return list(dict.fromkeys(scope.reads + later))


def build_function(code: CellCode, params: list[str], outputs: list[str], namespace: dict[str, Any]) -> Callable:
    """``def _cell(*params): <body>; return {outputs, "_": last value}`` with ``namespace`` as globals."""
    function_object = _compile_cell(code, params, outputs, namespace, ())
    # A name the cell assigns is local to the function; one it also reads first from the
    # notebook (``x = x + 1``, ``scores = scores.copy()``) starts from the notebook's value.
    carried = [name for name in function_object.__code__.co_varnames if name in namespace and name not in params]
    if carried:
        function_object = _compile_cell(code, params, outputs, namespace, carried)
    return function_object


_CARRIED = "_flow_notebook_values_"


def _compile_cell(code: CellCode, params: list[str], outputs: list[str], namespace: dict[str, Any],
                  carried: Iterable[str]) -> Callable:
    tree = ast.parse(code.body)  # a fresh copy: compiling rewrites it
    body = list(tree.body)
    carried = list(carried)
    value_expr: ast.expr = ast.Constant(None)
    if code.has_value:
        last = body.pop()
        temp = "_flow_cell_value_"
        body.append(ast.Assign(targets=[ast.Name(temp, ast.Store())], value=last.value, lineno=last.lineno,
                               col_offset=last.col_offset, end_lineno=last.end_lineno,
                               end_col_offset=last.end_col_offset))
        value_expr = ast.Name(temp, ast.Load())
    last_line = max([getattr(n, "end_lineno", 1) or 1 for n in body] + [1])
    prelude = []
    for name in carried:
        load = ast.parse(f"{name} = {_CARRIED}[{name!r}]").body[0]
        for node in ast.walk(load):
            node.lineno = node.end_lineno = 1
            node.col_offset = node.end_col_offset = 0
        prelude.append(load)
    keys = [ast.Constant(name) for name in outputs] + [ast.Constant(VALUE)]
    values = [ast.Name(name, ast.Load()) for name in outputs] + [value_expr]
    returned = ast.Return(ast.Dict(keys=keys, values=values))
    for node in ast.walk(returned):
        node.lineno = node.end_lineno = last_line
        node.col_offset = node.end_col_offset = 0
    function = ast.FunctionDef(
        name="_cell",
        args=ast.arguments(posonlyargs=[], args=[ast.arg(p) for p in params], vararg=None, kwonlyargs=[],
                           kw_defaults=[], kwarg=None, defaults=[]),
        body=prelude + body + [returned], decorator_list=[], returns=None, type_comment=None,
        lineno=1, col_offset=0,
    )
    module = ast.Module(body=[function], type_ignores=[])
    ast.fix_missing_locations(module)
    ast.increment_lineno(module, MAGIC_LINES)
    compiled = compile(module, filename(code.label), "exec")
    scope: dict[str, Any] = dict(namespace)
    scope["__builtins__"] = builtins
    if carried:
        scope[_CARRIED] = {name: namespace[name] for name in carried}
    exec(compiled, scope)  # defines _cell in its own globals; nothing of the cell runs here
    function_object = scope.pop("_cell")
    function_object.__qualname__ = function_object.__name__ = f"cell_{_identifier(code.label)}"
    # cloudpickle drops the file name of code it ships; the code's name survives, and
    # lets a remote traceback's frame be mapped back to the cell.
    marker = filename(code.label)
    function_object.__code__ = function_object.__code__.replace(co_name=marker, co_qualname=marker)
    return function_object


def _identifier(label: str) -> str:
    return re.sub(r"\W", "_", label)


_FRAME = re.compile(r'^  File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>.+?)\s*$')


def cell_traceback(traceback_text: str, cells: dict[str, str],
                   code_names: Callable[[str], str | None] | None = None) -> str:
    """A remote traceback with jupyter_flow's own frames removed and cell lines filled in.

    ``cells`` maps a cell label to its full text (``%%flow`` line first); ``code_names``
    names the files IPython compiled ordinary cells under ("Cell In[5]"), so a helper
    defined in the notebook is shown where it was defined.

    >>> print(cell_traceback('  File "/tmp/ipykernel_1/2.py", line 3, in helper\\n    return 1 / x',
    ...                      {}, code_names=lambda path: "Cell In[4]"))
      Cell In[4], line 3, in helper
        return 1 / x
    """
    lines = traceback_text.rstrip().splitlines()
    out: list[str] = []
    skipping = False
    for line in lines:
        match = _FRAME.match(line)
        if match:
            path = match.group("file")
            skipping = "/jupyter_flow/" in path.replace("\\", "/")
            if skipping:
                continue
            where = path if path.startswith("<flow cell ") else match.group("func")
            name = where[len("<flow cell "):-1] if where.startswith("<flow cell ") else None
            if name is not None:
                out.append(f"  Cell {name!r}, line {match.group('line')}")
                text = cells.get(name, "").splitlines()
                number = int(match.group("line"))
                if 0 < number <= len(text):
                    out.append("    " + text[number - 1].strip())
                skipping = True  # the source line below (if any) is already written
                continue
            label = code_names(path) if code_names is not None else None
            if label:
                out.append(f"  {label}, line {match.group('line')}, in {match.group('func')}")
                continue
            out.append(line)
            continue
        if skipping and line.startswith("    "):
            continue
        skipping = False
        out.append(line)
    return "\n".join(out)
