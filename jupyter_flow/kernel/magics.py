"""``%%flow`` and ``%flow``: notebook cells as cached, distributed, recorded ops.

>>> %load_ext jupyter_flow                         # doctest: +SKIP
>>> %%flow load                                    # doctest: +SKIP
... data = read_table(path)
"""

from __future__ import annotations

import ast
import os
import re
import sys
from typing import Any, Callable

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from ..core import shell as shell_lib
from ..core.errors import FlowError, RunCanceled
from ..core.resources import normalise as normalise_resources
from ..core.status import RunKind
from . import cells, params, session
from .cells import VALUE, CellError
from .notebook import CellOp, FlowNotebook, notebook_path, source_hash, stale_report

LINE_COMMANDS = ("run", "status", "graph", "runs", "show", "resume", "cancel", "cluster", "params")


class FlowUsageError(FlowError):
    """A bad flag or argument of ``%%flow``/``%flow``; shown with the usage."""


def _short(err: BaseException) -> BaseException:
    """Show ``err`` as one message, not a traceback through jupyter_flow's internals."""
    message = f"{type(err).__name__}: {err}"
    try:
        err._render_traceback_ = lambda: [message]
    except AttributeError:  # exceptions that refuse attributes show their normal traceback
        pass
    return err


def _flow_errors_short(method: Callable) -> Callable:
    def wrapper(self, *args):
        try:
            return method(self, *args)
        except FlowError as err:
            if not hasattr(err, "_render_traceback_"):
                _short(err)
            raise err.with_traceback(None) from None

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    wrapper.__wrapped__ = method
    return wrapper


def _resources(pairs: list[str], name: str) -> dict:
    """``--resources cores=4 memory=16GB GPU=1 walltime=01:00:00`` as an op's request."""
    out: dict = {}
    for pair in pairs:
        key, sep, amount = pair.partition("=")
        if not sep or not key or not amount:
            raise CellError(f"cell {name!r}: --resources takes NAME=AMOUNT pairs such as cores=4 memory=16GB "
                            f"GPU=1 walltime=01:00:00, got {pair!r}")
        if key in ("memory", "walltime"):
            out[key] = amount  # units, or Slurm's bare minutes for walltime=90
            continue
        try:
            number = float(amount)
            out[key] = int(number) if number.is_integer() else number
        except ValueError:
            out[key] = amount  # normalise says what is wrong with it
    return normalise_resources(out, f"cell {name!r}", error=CellError)


@magics_class
class FlowMagics(Magics):
    """The magics and the notebook's graph of one kernel."""

    def __init__(self, shell):
        super().__init__(shell)
        self.notebook = FlowNotebook(shell.user_ns)
        self.background: list[tuple[Any, Any]] = []  # (Run, RunDisplay) of --background runs
        self.last_run = None  # the Run of the latest %%flow cell or %flow run
        shell.events.register("pre_run_cell", self._load_background_results)

    # ------------------------------------------------------------------ cell
    @magic_arguments(name="%flow")
    @argument("name", nargs="?", help="the op's name (default: its first output)")
    @argument("--in", dest="inputs", nargs="+", default=[], metavar="VAR",
              help="inputs taken from other flow cells (added to those inferred)")
    @argument("--out", dest="outputs", nargs="+", default=None, metavar="VAR",
              help="outputs (default: every public top-level name the cell assigns)")
    @argument("--resources", nargs="+", default=[], metavar="NAME=AMOUNT",
              help="what the op needs: cores=4 memory=16GB walltime=01:00:00 GPU=1 (or any Dask "
                   "worker resource); on a Slurm profile with pools they choose the pool")
    @argument("--retries", type=int, default=0, metavar="N", help="retries after a failure")
    @argument("--timeout", type=float, default=None, metavar="S", help="seconds per attempt")
    @argument("--no-cache", action="store_true", help="always run; never restore from the cache")
    @argument("--force", action="store_true", help="run this op even if its result is cached")
    @argument("--cluster", default=None, metavar="PROFILE", help="cluster profile or scheduler address")
    @argument("--background", action="store_true",
              help="return at once; outputs are loaded when the run ends (at the next cell)")
    @argument("--define-only", action="store_true", help="add the op to the notebook's graph without running")
    @argument("--map", dest="map_over", default=None, metavar="ITEMS",
              help="run the cell once per element of ITEMS (another flow cell's list output); inside the "
                   "cell ITEMS is one element, and each output becomes the list of per-element values")
    @argument("--shell", action="store_true",
              help="the cell is a shell command template: {name} fields are notebook variables; "
                   "--out VAR=PATH declares the files it writes")
    @cell_magic("flow")
    @_flow_errors_short
    def flow_cell(self, line: str, cell: str):
        """Run this cell as a cached op on the Dask cluster.

        Inputs are the names the cell reads before assigning them: outputs of other
        %%flow cells become graph edges, other names are captured by value. Outputs are
        the public top-level names it assigns; they are loaded into the namespace.
        """
        args = self._parse(self.flow_cell, line)
        cell_op = self._define(args, line, cell)
        if args.define_only:
            edges, captured = self.notebook.resolve(cell_op) if not _unresolved(self.notebook, cell_op) else ({}, [])
            print(f"defined op {cell_op.name!r}: inputs {list(edges) or '-'}, captured {captured or '-'}, "
                  f"outputs {cell_op.outputs or '-'}")
            return
        self._run([cell_op.name], kind=RunKind.CELL.value, title=cell_op.name,
                  force=[cell_op.name] if args.force else [], cluster=args.cluster,
                  background=args.background, show_value=True)

    def _define(self, args, line: str, cell: str) -> CellOp:
        if args.shell:
            return self._define_shell(args, line, cell)
        code = cells.parse(cell, args.name or "(unnamed)")
        bound = {n for n in ast.walk(code.tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        bound = {n.id for n in bound} | set(_all_top_level(code))
        if args.outputs is not None:
            missing = [n for n in args.outputs if n not in bound]
            if missing:
                raise CellError(f"cell {args.name or '(unnamed)'!r}: --out {' '.join(missing)} is never assigned "
                                "at the top level of the cell")
            outputs = list(dict.fromkeys(args.outputs))
        else:
            outputs = code.assigns
        name = args.name or (outputs[0] if outputs else None)
        if not name:
            raise CellError("this %%flow cell assigns no output; give it a name: %%flow NAME")
        if not re.fullmatch(r"[\w.\-]+", name):
            raise CellError(f"op name {name!r}: use letters, digits, '_', '-' or '.'")
        code.label = name
        if args.retries < 0:
            raise CellError(f"cell {name!r}: --retries must be >= 0")
        if args.timeout is not None and args.timeout <= 0:
            raise CellError(f"cell {name!r}: --timeout must be a positive number of seconds")
        text = f"%%flow {line.strip()}".rstrip() + "\n" + cell.rstrip()
        if args.map_over is not None and args.map_over not in code.reads + list(args.inputs):
            raise CellError(f"cell {name!r}: --map {args.map_over} names a variable the cell never reads; "
                            "inside a mapped cell that name is one element of the list")
        cell_op = CellOp(
            name=name, text=text, code=code, outputs=outputs, declared_inputs=list(args.inputs),
            retries=args.retries, timeout=args.timeout, cache=not args.no_cache,
            resources=_resources(args.resources, name), cluster=args.cluster,
            provenance=self._provenance(text), map_over=args.map_over,
        )
        return self.notebook.define(cell_op, check_names=not args.define_only)

    def _define_shell(self, args, line: str, cell: str) -> CellOp:
        name = args.name
        if not name or not re.fullmatch(r"[\w.\-]+", name):
            raise CellError("a %%flow --shell cell needs a name (letters, digits, '_', '-', '.'): "
                            "%%flow NAME --shell")
        if args.map_over is not None:
            raise CellError(f"cell {name!r}: --map and --shell do not combine; map a Python cell that "
                            "calls jf.shell, or use jf.map(jf.shell(...)) in Python")
        files: dict[str, str] = {}
        for item in args.outputs or []:
            variable, sep, path = item.partition("=")
            if not sep or not variable.isidentifier() or not path:
                raise CellError(f"cell {name!r}: in a --shell cell, --out takes VAR=PATH pairs "
                                f"(the files the command writes), got {item!r}")
            if not shell_lib.inside(os.getcwd(), path):
                raise CellError(f"cell {name!r}: --out {item} is outside the working directory {os.getcwd()}; "
                                f"write the cell's files under it (e.g. --out {variable}=results/"
                                f"{os.path.basename(path) or 'out'}), or write elsewhere from Python with "
                                f"jf.shell(..., absolute_outputs=[{variable!r}])")
            files[variable] = path
        if args.timeout is not None and args.timeout <= 0:
            raise CellError(f"cell {name!r}: --timeout must be a positive number of seconds")
        command = cell.strip()
        if not command:
            raise CellError(f"cell {name!r}: the --shell cell has no command")
        text = f"%%flow {line.strip()}".rstrip() + "\n" + cell.rstrip()
        code = cells.shell_code(command, name, files)
        cell_op = CellOp(
            name=name, text=text, code=code, outputs=list(files) or [name], declared_inputs=list(args.inputs),
            retries=args.retries, timeout=args.timeout, cache=not args.no_cache,
            resources=_resources(args.resources, name), cluster=args.cluster,
            provenance=self._provenance(text), shell_files=files,
        )
        return self.notebook.define(cell_op, check_names=not args.define_only)

    def _provenance(self, text: str) -> dict:
        # cell_index is the cell's execution count ("In [N]"). In a batch it counts in the
        # executed copy, which has papermill's injected parameters cell: say so, the source
        # notebook's prompts differ.
        provenance = {"notebook": notebook_path(), "cell_id": self._cell_id(),
                      "cell_index": self.shell.execution_count, "source_hash": source_hash(text),
                      "executed_copy": True if os.environ.get("JUPYTER_FLOW_RUN_ID") else None}
        return {k: v for k, v in provenance.items() if v is not None}

    def _cell_id(self) -> str | None:
        kernel = getattr(self.shell, "kernel", None)
        try:
            parent = kernel.get_parent("shell") if kernel is not None else {}
        except TypeError:  # older ipykernel: get_parent() takes no channel
            parent = kernel.get_parent()
        return ((parent or {}).get("metadata") or {}).get("cellId")

    # ------------------------------------------------------------------ line
    @magic_arguments(name="flow")
    @argument("command", choices=LINE_COMMANDS, help="what to do (see below)")
    @argument("args", nargs="*", help="op names for run; a run id for show/resume/cancel; a profile for cluster")
    @argument("--force", action="store_true", help="run: rerun the named ops even if cached")
    @line_magic("flow")
    @_flow_errors_short
    def flow_line(self, line: str):
        """jupyter_flow commands.

        run [NAME ...]   run the notebook's graph (or up to NAME); only stale ops rerun
        status           the notebook's ops: inputs, outputs, cached or why stale
        graph            the notebook's graph (a graph view in JupyterLab, SVG elsewhere)
        runs             recent runs
        show RUN         one run and its tasks
        resume RUN       rerun what a failed or lost run did not finish
        cancel RUN       cancel a running run
        cluster [P]      use cluster profile or scheduler address P (or show the current one)
        params           a form for the parameters declared with jf.param
        """
        args = self._parse(self.flow_line, line)
        handler = getattr(self, f"_cmd_{args.command}")
        return handler(args)

    def _parse(self, magic, line: str):
        try:
            return parse_argstring(magic, line)
        except UsageError as err:
            usage = magic.parser.format_usage().replace("::", "", 1).strip()
            raise FlowUsageError(f"{err}\nusage: {usage}\n(see %{'%' if magic is self.flow_cell else ''}flow? "
                                 "for help)") from None

    def _cmd_run(self, args) -> None:
        names = args.args or list(self.notebook.cells)
        if not names:
            raise FlowError("the notebook has no %%flow cells yet")
        self._run(names, kind=RunKind.GRAPH.value, title="graph" if not args.args else " ".join(names),
                  force=names if args.force else [], cluster=None, background=False, show_value=False)

    def _cmd_status(self, args) -> None:
        from IPython.display import display
        from ..engine.runtime import get_engine

        report = stale_report(self.notebook, get_engine())
        rows = []
        for name, cell in self.notebook.cells.items():
            try:
                edges, captured = self.notebook.resolve(cell)
            except FlowError:
                edges, captured = {}, []
            rows.append((name, ", ".join(edges) or "-", ", ".join(captured) or "-", ", ".join(cell.outputs) or "-",
                         report.get(name, "?")))
        for run, _ in self.background:
            rows.append((f"(background run {run.id})", "", "", "", run.status))
        display({"text/plain": _text_table(("op", "inputs", "captured", "outputs", "state"), rows),
                 "text/html": _html_table(("op", "inputs", "captured", "outputs", "state"), rows)}, raw=True)

    def _cmd_graph(self, args) -> None:
        from IPython.display import display
        from ..engine.runtime import get_engine
        from .graph_view import graph_bundle

        display(graph_bundle(self.notebook, stale_report(self.notebook, get_engine())), raw=True)

    def _cmd_runs(self, args) -> None:
        from IPython.display import display
        from ..engine import api

        rows = [(r.id, r.name or "", r.kind, r.status, str(r.created_at or "")[:19]) for r in api.runs(limit=20)]
        header = ("id", "name", "kind", "status", "created")
        display({"text/plain": _text_table(header, rows), "text/html": _html_table(header, rows)}, raw=True)

    def _one_run(self, args, command: str) -> str:
        if len(args.args) != 1:
            raise FlowUsageError(f"%flow {command} RUN: give exactly one run id (see %flow runs)")
        return args.args[0]

    def _cmd_show(self, args) -> None:
        from IPython.display import display
        from ..engine import api

        run = api.get_run(self._one_run(args, "show"))
        rows = [(t.name, t.status, "cached" if t.cached else (t.reason or ""),
                 "" if t.duration is None else f"{t.duration:.2f} s", t.worker or "", t.attempts or 0)
                for t in run.tasks]
        header = ("op", "status", "cached/reason", "duration", "worker", "attempts")
        title = f"run {run.id} {run.name or ''} ({run.kind}) {run.status}"
        display({"text/plain": title + "\n" + _text_table(header, rows),
                 "text/html": f"<b>{_esc(title)}</b>" + _html_table(header, rows)}, raw=True)

    def _cmd_resume(self, args) -> None:
        from ..engine import api

        run = api.resume(self._one_run(args, "resume"))
        self.notebook.hydrate(run.tasks, _engine().artifacts)
        print(f"run {run.id} (resumed from {run.resumed_from}): {run.status}")

    def _cmd_cancel(self, args) -> None:
        from ..engine import api

        run = api.cancel(self._one_run(args, "cancel"))
        print(f"cancel requested for run {run.id}")

    def _cmd_cluster(self, args) -> None:
        from ..deploy import cluster as clusters

        if len(args.args) > 1:
            raise FlowUsageError("%flow cluster [PROFILE]: at most one profile or address")
        if not args.args:
            current = clusters._current[0] or clusters.default_profile()
            print(f"cluster: {current} (profiles: {', '.join(sorted(clusters.profiles()))})")
            return
        handle = clusters.use(args.args[0])
        link = handle.dashboard_link
        print(f"cluster: {handle.name} at {handle.address}" + (f"; dashboard: {link}" if link else ""))

    def _cmd_params(self, args) -> None:
        params.show_form()

    # ------------------------------------------------------------------- run
    def _run(self, names: list[str], *, kind: str, title: str, force: list[str], cluster: str | None,
             background: bool, show_value: bool) -> None:
        from ..engine.records import Run
        from .live import CellOutputs, follow
        from .progress import RunDisplay

        engine = _engine()
        params.sync()
        plan = self.notebook.plan(names)
        made_now = session.notebook_run_id(engine, create=False) is None
        parent_id = session.notebook_run_id(engine, create=True)
        try:
            execution = engine.submit(
                plan.targets, name=title, kind=kind, cluster=cluster or plan.cluster,
                force=[plan.nodes[n] for n in force], parent_id=parent_id,
                params=params.values(), notebook=notebook_path(), captured=plan.captured,
                task_provenance=plan.provenance,
            )
        except FlowError:
            session.submitted(engine, parent_id, made_now=made_now, failed=True)
            raise
        session.submitted(engine, parent_id, made_now=made_now, failed=False)
        run = Run(engine, execution.run_id, execution=execution)
        self.last_run = run
        outputs = CellOutputs(execution, engine) if not background else None
        display = RunDisplay(execution, title, live=not execution.done.is_set())
        if background and not execution.done.is_set():
            self.background.append((run, display))
            display.follow()
            print(f"run {run.id} continues in the background; its outputs are loaded when it ends "
                  "(at the start of the next cell after that)")
            return
        outputs = outputs or CellOutputs(execution, engine)
        try:
            follow(execution, outputs, display)
        except KeyboardInterrupt:
            # Canceled by the interrupt: what finished is loaded, then the cell says so in one line.
            if execution.done.is_set():
                try:
                    self._conclude(run, [], outputs)
                except FlowError:
                    pass
            raise
        self._conclude(run, names if show_value else [], outputs)

    def _conclude(self, run, shown: list[str], outputs) -> None:
        """Outputs shown once, values into the namespace, cached outputs replayed, or the op's error."""
        from IPython.display import display
        from .live import element_order

        tasks = run.tasks
        outputs.finish(tasks)
        self.notebook.hydrate(tasks, _engine().artifacts)
        self.notebook.import_modules(tasks)
        if run.status != "SUCCESS":
            raise self._failure(run)
        for task in element_order(tasks):
            if self.notebook.cell_of(task.name) not in shown or not task.cached:
                continue
            for element in self._elements_of_cached_map(task, tasks):
                outputs.replay(element)
            outputs.replay(task)
            if task.name in shown and VALUE in task.outputs and self.notebook.cells[task.name].code.has_value:
                # A cache entry from before outputs were recorded: its value was stored.
                value = _engine().artifacts.get(task.outputs[VALUE])
                if value is not None:
                    display(value)

    def _elements_of_cached_map(self, task, tasks) -> list:
        """A mapped cell restored whole is not expanded: its elements, as the run that
        computed it recorded them, so their prints and figures show again in order."""
        from ..engine.records import Task

        cell = self.notebook.cells.get(task.name)
        source = (task.provenance or {}).get("cached_from")
        element = f"{task.name}.each"
        if cell is None or cell.map_over is None or not source or any(t.name == element for t in tasks):
            return []
        store = _engine().store
        computed = store.get_task(source)
        if computed is None:  # the computing run was deleted: the values stay, the prints are gone
            return []
        rows = [r for r in store.get_tasks(computed.run_id) if r.name == element]
        return sorted((Task.from_record(r) for r in rows), key=lambda t: -1 if t.index is None else t.index)

    def _failure(self, run) -> BaseException:
        execution = run._execution
        if execution.record_error is not None:
            return _short(execution.record_error)
        states = execution.tasks
        failed = next((s for s in states if s.status.value == "FAILED"), None)
        if failed is None:
            failed = next((s for s in states if s.status.value not in ("SUCCESS", "CACHED")), None)
        if failed is None:  # every op finished, the run did not (LOST: this process was fenced)
            return _short(FlowError(f"run {run.id} ended {run.status}: {execution.error}"))
        if run.status == "CANCELED":  # one line says what happened
            stopped = next((s for s in states if s.status.value == "CANCELED"), failed)
            return _short(RunCanceled(f"run {run.id} was canceled before op {stopped.name!r} finished"))
        exc = execution.failure_for(failed)
        texts = {name: cell.text for name, cell in self.notebook.cells.items()}
        if failed.traceback:
            body = cells.cell_traceback(failed.traceback, texts, code_names=self._code_name)
        else:
            body = f"{type(exc).__name__}: {exc}"
        message = [f"op {failed.name!r} failed in run {run.id} ({run.status})", body]
        try:
            exc._render_traceback_ = lambda: message
        except AttributeError:  # an exception type without a __dict__ shows its usual traceback
            pass
        return exc.with_traceback(None)

    def _code_name(self, path: str) -> str | None:
        """"Cell In[5]" for the file IPython compiled a notebook cell under, else None."""
        compiler = getattr(self.shell, "compile", None)
        try:
            label = compiler.format_code_name(path) if compiler is not None else None
        except Exception:  # an older IPython or a foreign compiler: keep the file name
            label = None
        return f"{label[0]} {label[1]}" if label else None

    def _load_background_results(self, *info) -> None:
        """pre_run_cell hook: load the outputs of background runs that have ended."""
        still = []
        for run, display in self.background:
            execution = run._execution
            if not execution.done.is_set():
                still.append((run, display))
                continue
            names = self.notebook.hydrate(run.tasks, _engine().artifacts)
            self.notebook.import_modules(run.tasks)
            if run.status == "SUCCESS":
                print(f"[jupyter_flow] background run {run.id} ended: loaded {', '.join(names) or 'nothing new'}")
            else:
                print(f"[jupyter_flow] background run {run.id} ended {run.status}: {execution.error or ''}",
                      file=sys.stderr)
        self.background = still


def last_run():
    """The Run of this kernel's latest ``%%flow`` cell or ``%flow run`` (None before any).

    >>> from jupyter_flow.kernel.magics import last_run   # doctest: +SKIP
    >>> [(t.name, t.status) for t in last_run().tasks]     # doctest: +SKIP
    """
    from IPython import get_ipython

    magics = _loaded.get(id(get_ipython()))
    return magics.last_run if magics is not None else None


def _engine():
    from ..engine.runtime import get_engine

    return get_engine()


def _all_top_level(code) -> list[str]:
    return list(cells._top_level_assigned(code.tree.body))


def _unresolved(notebook: FlowNotebook, cell_op: CellOp) -> bool:
    try:
        notebook.resolve(cell_op)
        return False
    except FlowError:
        return True


def _esc(text: Any) -> str:
    import html

    return html.escape(str(text))


def _text_table(header: tuple, rows: list[tuple]) -> str:
    if not rows:
        return "(none)"
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def _html_table(header: tuple, rows: list[tuple]) -> str:
    head = "".join(f"<th align='left'>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_esc(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


_loaded: dict[int, FlowMagics] = {}


def load_ipython_extension(ipython) -> None:
    """Register ``%%flow`` and ``%flow`` (keeping another extension's ``%flow`` line magic)."""
    if id(ipython) in _loaded:
        return
    manager = ipython.magics_manager
    other_line = manager.magics["line"].get("flow")
    magics = FlowMagics(ipython)
    ipython.register_magics(magics)
    if other_line is not None:
        # ipyflow (or another extension) owns %flow: keep it; %%flow still works.
        manager.magics["line"]["flow"] = other_line
        print("jupyter_flow: a %flow line magic is already registered (ipyflow?); keeping it. "
              "%%flow cells work; use jf.* functions for the line commands.", file=sys.stderr)
    _loaded[id(ipython)] = magics


def unload_ipython_extension(ipython) -> None:
    magics = _loaded.pop(id(ipython), None)
    if magics is not None:
        ipython.events.unregister("pre_run_cell", magics._load_background_results)
