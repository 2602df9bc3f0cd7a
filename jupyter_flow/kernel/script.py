"""Notebooks as plain scripts: ``jupyter flow export NOTEBOOK -o flow.py``.

The script reads like code: ordinary cells stay as statements, and each ``%%flow`` cell
becomes a function with its inputs as parameters and its outputs as return values,
decorated with ``@nb.flow("<the cell's %%flow line>")``::

    @nb.flow("count --retries 1")
    def count(lines):
        from collections import Counter
        counts = Counter(word for line in lines for word in words_of(line))
        return counts

    counts = count(lines)

Calling the function runs the cell's body through the same ``%%flow`` machinery the kernel
uses (an IPython shell whose namespace is the script's globals), so the op has the same
name, options, inputs and cache key as in the notebook: running the script restores what
the notebook computed. The decorator takes the body from the function's source, one
indentation level removed (the export indents every line of the cell, strings included, by
exactly four spaces, so the body is the cell as written). A cell that cannot be a function
(a ``--shell`` command, IPython syntax) stays a string: ``nb.flow_text(line, body)``.
"""

from __future__ import annotations

import ast
import builtins
import functools
import inspect
import keyword
import re
import sys
from pathlib import Path
from typing import Any, Callable

from ..core.errors import FlowError

INDENT = "    "

HEADER = '''"""{name}: exported from {source} by `jupyter flow export`.

Run it with `python {name}`. Each %%flow cell of the notebook is a function here, decorated
with its %%flow line; calling it runs the cell as the same op, so unchanged cells are restored
from the notebook's cache. Edit a cell's body here or in the notebook.
"""
from jupyter_flow.kernel.script import Notebook

nb = Notebook()
'''


class Notebook:
    """The notebook machinery a script needs: an IPython shell over the script's globals."""

    def __init__(self):
        from IPython.core.interactiveshell import InteractiveShell

        self.shell = InteractiveShell.instance(user_module=sys.modules["__main__"])
        self.shell.run_line_magic("load_ext", "jupyter_flow")
        self.count = 0

    @property
    def namespace(self) -> dict:
        return self.shell.user_ns

    def get_ipython(self):
        """The shell, for the lines IPython syntax of an ordinary cell became."""
        return self.shell

    def cell(self, source: str) -> None:
        """Run one cell as the notebook would; a failing cell stops the script with its error."""
        self.count += 1
        result = self.shell.run_cell(source, store_history=True)
        if not result.success:
            error = result.error_in_exec or result.error_before_exec
            print(f"cell {self.count} failed: {type(error).__name__}: {error}", file=sys.stderr)
            raise SystemExit(1)

    def flow_text(self, line: str, body: str, outputs: tuple[str, ...] = ()) -> Any:
        """Run ``%%flow line`` over ``body``; the outputs' values (one value, a tuple, or None)."""
        self.cell(f"%%flow {line}\n{body}")
        return self._outputs(outputs)

    def flow(self, line: str) -> Callable[[Callable], Callable]:
        """Decorate an exported ``%%flow`` cell: calling the function runs the cell as its op."""

        def decorate(function: Callable) -> Callable:
            body, outputs = function_cell(function)
            signature = inspect.signature(function)

            @functools.wraps(function)
            def run(*args: Any, **kwargs: Any) -> Any:
                try:
                    bound = signature.bind(*args, **kwargs)
                except TypeError as err:
                    raise FlowError(f"cell {function.__name__!r} (%%flow {line}): {err}") from None
                # The cell reads its inputs from the namespace, as in the notebook.
                self.namespace.update(bound.arguments)
                return self.flow_text(line, body, outputs)

            return run

        return decorate

    def _outputs(self, names: tuple[str, ...]) -> Any:
        values = tuple(self.namespace[name] for name in names)
        if not values:
            return None
        return values[0] if len(values) == 1 else values


def function_cell(function: Callable) -> tuple[str, tuple[str, ...]]:
    """The cell body and output names of an exported ``%%flow`` function.

    >>> body, outputs = function_cell(_example)
    >>> body
    'total = x + 1\n'
    >>> outputs
    ('total',)
    """
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError) as err:
        raise FlowError(f"cell {function.__name__!r}: its source is not available ({err}); "
                        "an exported %%flow cell must be a function in a file") from None
    lines = source.splitlines()
    tree = ast.parse(source)
    definition = tree.body[0]
    if not isinstance(definition, ast.FunctionDef) or not definition.body:
        raise FlowError(f"cell {function.__name__!r}: @nb.flow decorates a plain function")
    last = definition.body[-1]
    outputs: tuple[str, ...] = ()
    if isinstance(last, ast.Return):
        value = last.value
        if isinstance(value, ast.Name):
            outputs = (value.id,)
        elif isinstance(value, ast.Tuple) and all(isinstance(e, ast.Name) for e in value.elts):
            outputs = tuple(e.id for e in value.elts)  # type: ignore[attr-defined]
        elif not (value is None or (isinstance(value, ast.Constant) and value.value is None)):
            raise FlowError(f"cell {function.__name__!r}: end the function with `return NAME, ...` "
                            "(the cell's outputs)")
        end = last.lineno - 1  # lines before the return
    else:
        end = last.end_lineno or len(lines)
    start = _header_end(lines, definition.lineno - 1) + 1
    body = [line[len(INDENT):] if line.startswith(INDENT) else line.lstrip(" ") for line in lines[start:end]]
    return "\n".join(body).rstrip() + "\n", outputs


def _header_end(lines: list[str], index: int) -> int:
    """The index of the line ending the ``def ...:`` header that starts at ``index``."""
    for i in range(index, len(lines)):
        code = lines[i].split("#", 1)[0].rstrip()
        if code.endswith(":"):
            return i
    return index


def _example(x):
    total = x + 1
    return total


# ---------------------------------------------------------------------------- export


def export(notebook: str | Path, output: str | Path) -> int:
    """Write ``notebook``'s code cells as a script at ``output``; returns the cell count."""
    import nbformat

    notebook, output = Path(notebook), Path(output)
    if not notebook.is_file():
        raise FlowError(f"notebook {str(notebook)!r} not found")
    try:
        nb = nbformat.read(notebook, as_version=4)
    except Exception as err:  # nbformat raises several kinds for a bad file
        raise FlowError(f"{str(notebook)!r} is not a readable notebook: {err}") from None
    sources = [cell.source for cell in nb.cells if cell.cell_type == "code" and cell.source.strip()]
    writer = _Writer(sources)
    parts = [HEADER.format(name=output.name, source=notebook.name)]
    body = [writer.cell(source) for source in sources]
    if writer.needs_get_ipython:
        parts.append("get_ipython = nb.get_ipython\n")
    if writer.needs_display:
        parts.append("from IPython.display import display  # noqa: E402\n")
    parts.extend(body)
    output.write_text("".join(parts))
    return len(sources)


class _Writer:
    """Turns cells into script text, knowing what earlier cells defined."""

    def __init__(self, sources: list[str]):
        from .magics import FlowMagics

        self.parser = FlowMagics.flow_cell.parser
        self.variables: set[str] = set()  # values earlier cells assigned (candidate parameters)
        self.taken = set(_all_names(sources))  # names a function must not shadow
        self.functions: set[str] = set()
        self.needs_get_ipython = False
        self.needs_display = False

    def cell(self, source: str) -> str:
        if source.lstrip().startswith("%%flow"):
            return self._flow(source.lstrip())
        return self._plain(source)

    # -- ordinary cells: statements (IPython syntax as the calls IPython makes of it)
    def _plain(self, source: str) -> str:
        code = source
        try:
            tree = ast.parse(source)
        except SyntaxError:
            from IPython.core.inputtransformer2 import TransformerManager

            code = TransformerManager().transform_cell(source)
            self.needs_get_ipython = True
            try:
                tree = ast.parse(code)
            except SyntaxError:
                return f"\nnb.cell({_literal(source)})\n"
        self.variables.update(_assigned_values(tree))
        if "display" in _names_read(tree) and "display" not in self.variables:
            self.needs_display = True
        return "\n" + code.rstrip() + "\n"

    # -- %%flow cells: functions
    def _flow(self, source: str) -> str:
        from . import cells

        first, _, body = source.partition("\n")
        line = first[len("%%flow"):].strip()
        try:
            args = self.parser.parse_args(_split(line))
        except SystemExit:
            return f"\nnb.cell({_literal(source)})\n"
        if args.shell:
            outputs = [item.partition("=")[0] for item in args.outputs or []] or [args.name]
            self.variables.update(outputs)
            return f"\n{_assign(outputs)}nb.flow_text({_literal(line)}, {_literal(body)}, {tuple(outputs)!r})\n"
        try:
            code = cells.parse(body, args.name or "(unnamed)")
        except FlowError:  # IPython syntax or a syntax error: the cell as the notebook has it
            return f"\nnb.cell({_literal(source)})\n"
        outputs = list(dict.fromkeys(args.outputs)) if args.outputs is not None else code.assigns
        name = args.name or (outputs[0] if outputs else "cell")
        reads = list(dict.fromkeys(list(args.inputs) + code.reads))
        params = [n for n in reads if n in self.variables]
        function = self._function_name(name)
        self.variables.update(outputs)
        indented = "\n".join(INDENT + text if text else text for text in body.rstrip().split("\n"))
        returned = ", ".join(outputs) if outputs else "None"
        call = f"{function}({', '.join(params)})"
        return (f"\n\n@nb.flow({_literal(line)})\ndef {function}({', '.join(params)}):\n{indented}\n"
                f"{INDENT}return {returned}\n\n\n{_assign(outputs)}{call}\n")

    def _function_name(self, name: str) -> str:
        ident = re.sub(r"\W", "_", name)
        if not ident.isidentifier() or keyword.iskeyword(ident):
            ident = f"cell_{ident}"
        candidate = ident
        if candidate in self.taken or hasattr(builtins, candidate) or candidate in self.functions:
            candidate = f"{ident}_op"
        n = 2
        while candidate in self.functions:
            candidate = f"{ident}_op{n}"
            n += 1
        self.functions.add(candidate)
        return candidate


def _assign(outputs: list[str]) -> str:
    return f"{', '.join(outputs)} = " if outputs else ""


def _literal(text: str) -> str:
    """``text`` as a Python string literal that reads like the cell (triple-quoted when it can)."""
    if "'''" not in text and "\\" not in text:
        return f"'''{text}'''" if "\n" in text else repr(text)
    return repr(text)


def _split(line: str) -> list[str]:
    import shlex

    try:
        return shlex.split(line)
    except ValueError:
        return line.split()


def _assigned_values(tree: ast.Module) -> set[str]:
    """Top-level names a cell binds to values, by the rule ``%%flow`` outputs follow
    (``cells._top_level_assigned``), less its functions and classes (globals, not inputs)."""
    from . import cells

    defined = {node.name for node in tree.body
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    return set(cells._top_level_assigned(tree.body)) - defined


def _names_read(tree: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _all_names(sources: list[str]) -> set[str]:
    """Every name any cell binds at its top level (a function must not shadow one)."""
    names: set[str] = set()
    for source in sources:
        text = source.lstrip()
        if text.startswith("%%flow"):
            text = text.partition("\n")[2]
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names
