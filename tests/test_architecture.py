"""The package's shape, checked from its source (issue 18 point 4): no import cycle, imports
that point one way between the layers, and no module too long to read.

Imports are read with ``ast`` from every module of ``jupyter_flow/``, those inside
functions included (a lazy import still ties two modules together), relative ones
resolved to the module they name. ``from package import name`` counts as importing the
submodule ``package.name`` when there is one, else the package itself.

Each check has an allowance for what is true today and is being fixed; the allowance must
shrink: a test fails when something not listed appears, and also when something listed
has been fixed (remove it from the list, so the list ends empty).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "jupyter_flow"

# issue 18 point 1: being removed. Each entry is one strongly connected component of the
# module graph: modules that reach each other through imports, around one or more circles.
KNOWN_CYCLES: list[frozenset[str]] = [
    # point 4: the preview child's entry point (preview._main) opens an ArtifactStore, which
    # calls preview_elsewhere (both files are being split with the store, branch `store`)
    frozenset({"jupyter_flow.artifacts.preview", "jupyter_flow.artifacts.store"}),
]

# The one-way rule (README, "Layout"): which layers each layer may import. A layer is a
# subpackage of jupyter_flow (``cli`` is jupyter_flow/cli.py, ``_version`` the version).
#
#   core  <-  store, artifacts  <-  worker (not store), deploy (not artifacts)  <-  engine
#         <-  kernel  <-  batch  <-  server (not kernel), cli
#
# ``jupyter_flow/__init__.py``, the public facade (``jf.*``, lazy imports), may import
# every layer, and no module may import it: its names come from the modules that define them.
MAY_IMPORT: dict[str, set[str]] = {
    "_version": set(),
    "core": set(),
    "store": {"core"},
    "artifacts": {"core"},
    "worker": {"core", "artifacts"},  # workers never open the database
    "deploy": {"core", "store"},  # store: ``describe()`` lists the clusters runs are using
    "engine": {"core", "store", "artifacts", "worker", "deploy"},
    "kernel": {"core", "store", "artifacts", "worker", "deploy", "engine"},
    "batch": {"core", "store", "artifacts", "worker", "deploy", "engine", "kernel"},
    "server": {"_version", "core", "store", "artifacts", "deploy", "engine", "batch"},
    "cli": {"core", "store", "artifacts", "deploy", "engine", "kernel", "batch"},
}

# Imports against the one-way rule today, as (importing module, imported module).
# issue 18: being removed.
KNOWN_LAYER_BREACHES: set[tuple[str, str]] = set()

MAX_LINES = 600
# Modules over MAX_LINES today, by path under jupyter_flow/: being split (issue 18).
KNOWN_LONG_MODULES: set[str] = {
    "core/keys.py",
    "server/service.py",
    "cli.py",
}
# Not held to MAX_LINES: alembic migrations (one per schema change, never edited again).
LONG_ALLOWED = ("store/migrations/",)


# ----------------------------------------------------------------------- the graph


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The jupyter_flow modules ``name`` imports, anywhere in its source."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def resolve(dotted: str) -> str | None:
        """``dotted`` itself, or the longest of its prefixes that is a module."""
        while dotted:
            if dotted in known:
                return dotted
            dotted = dotted.rpartition(".")[0]
        return None

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "jupyter_flow":
                    target = resolve(alias.name)
                    if target:
                        found.add(target)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                dotted = ".".join(base + ([node.module] if node.module else []))
            else:
                dotted = node.module or ""
            if dotted.split(".")[0] != "jupyter_flow":
                continue
            for alias in node.names:
                target = resolve(f"{dotted}.{alias.name}") if f"{dotted}.{alias.name}" in known else resolve(dotted)
                if target:
                    found.add(target)
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    known = set(modules)
    return {name: imported_modules(name, path, known) for name, path in modules.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The components of more than one module (Tarjan's algorithm, without recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[frozenset[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = counter
                    counter += 1
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph.get(target, ())))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    members = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        members.add(member)
                        if member == node:
                            break
                    if len(members) > 1:
                        components.append(frozenset(members))
    return components


def a_cycle(graph: dict[str, set[str]], component: frozenset[str]) -> list[str]:
    """A shortest circle through ``component``'s first module: ``[a, b, ..., a]``."""
    start = min(component)
    previous: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target in sorted(graph[node] & component):
            if target == start:
                path = [node]
                while previous[path[-1]] is not None:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if target not in previous:
                previous[target] = node
                queue.append(target)
    return sorted(component)


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None  # None: jupyter_flow/__init__.py


def allowed(name: str) -> str:
    return "only " + ", ".join(sorted(MAY_IMPORT[name])) if MAY_IMPORT[name] else "nothing of jupyter_flow"


def describe(components) -> str:
    return "\n".join("  " + ", ".join(sorted(c)) for c in components)


# ------------------------------------------------------------------------ the checks


def test_no_import_cycle_beyond_the_known_ones():
    graph = import_graph()
    found = strongly_connected(graph)
    new = [c for c in found if c not in KNOWN_CYCLES]
    gone = [c for c in KNOWN_CYCLES if c not in found]
    assert not new, "import cycles (imports inside functions count too):\n" + "\n".join(
        "  " + " -> ".join(a_cycle(graph, c)) + f"   (modules in the circle: {', '.join(sorted(c))})" for c in new
    ) + ("\n(KNOWN_CYCLES in tests/test_architecture.py lists the cycles being removed; a cycle whose "
         "modules changed must be listed as it is now)")
    assert not gone, ("these cycles of KNOWN_CYCLES are gone: remove them from the list in "
                      "tests/test_architecture.py\n" + describe(gone))


def test_imports_point_one_way_between_the_layers():
    graph = import_graph()
    layers = {layer(m) for m in graph} - {None}
    assert layers == set(MAY_IMPORT), f"layers without a rule in MAY_IMPORT: {sorted(layers ^ set(MAY_IMPORT))}"
    breaches = set()
    for module, targets in graph.items():
        source = layer(module)
        if source is None:
            continue  # the facade
        for target in targets:
            to = layer(target)
            if to is None or (to != source and to not in MAY_IMPORT[source]):
                breaches.add((module, target))
    new = sorted(breaches - KNOWN_LAYER_BREACHES)
    gone = sorted(KNOWN_LAYER_BREACHES - breaches)
    assert not new, "imports against the one-way rule (MAY_IMPORT in tests/test_architecture.py):\n" + "\n".join(
        (f"  {a} imports the facade jupyter_flow/__init__.py (import from the module that defines the name)"
         if layer(b) is None else
         f"  {a} imports {b} ({layer(a)} may import {allowed(layer(a))})")
        for a, b in new)
    assert not gone, ("these imports of KNOWN_LAYER_BREACHES are gone: remove them from the list\n"
                      + "\n".join(f"  {a} -> {b}" for a, b in gone))


def test_no_module_over_600_lines_beyond_the_known_ones():
    long = set()
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith(LONG_ALLOWED):
            continue
        if len(path.read_text().splitlines()) > MAX_LINES:
            long.add(relative)
    new = sorted(long - KNOWN_LONG_MODULES)
    gone = sorted(KNOWN_LONG_MODULES - long)
    assert not new, f"modules over {MAX_LINES} lines (split them by concern): {new}"
    assert not gone, (f"these modules of KNOWN_LONG_MODULES have {MAX_LINES} lines or fewer now: "
                      f"remove them from the list in tests/test_architecture.py: {gone}")


def test_a_worker_loads_no_database_or_engine_code():
    # What the layer rule is for: the modules a Dask worker imports to run a task (and a
    # cluster manager to start one) bring no SQLAlchemy, store, engine, kernel or server.
    code = textwrap.dedent("""
        import sys
        import jupyter_flow.worker.task, jupyter_flow.worker.capture, jupyter_flow.worker.isolated
        import jupyter_flow.deploy.profiles, jupyter_flow.deploy.pools
        # (the facade imports the light jupyter_flow.batch package itself: see its __init__)
        loaded = sorted(m for m in sys.modules if m == "sqlalchemy" or m.startswith((
            "jupyter_flow.store", "jupyter_flow.engine", "jupyter_flow.kernel",
            "jupyter_flow.server", "jupyter_flow.batch.")))
        print(loaded)
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]", f"a worker imports {done.stdout.strip()}"


# --------------------------------------------------------------- the checks' own tests


def test_the_cycle_finder_sees_a_cycle_through_a_lazy_import(tmp_path):
    # What the checks above rely on: a relative import inside a function is an edge, and
    # two modules importing each other are one component.
    package = tmp_path / "jupyter_flow"
    (package / "engine").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "engine" / "a.py").write_text("from . import b\n")
    (package / "engine" / "b.py").write_text("def f():\n    from .a import g\n")
    (package / "engine" / "c.py").write_text("from jupyter_flow.engine.a import x\n")
    modules = {module_name(p, tmp_path): p for p in package.rglob("*.py")}
    graph = {name: imported_modules(name, path, set(modules)) for name, path in modules.items()}
    assert graph["jupyter_flow.engine.b"] == {"jupyter_flow.engine.a"}
    assert strongly_connected(graph) == [frozenset({"jupyter_flow.engine.a", "jupyter_flow.engine.b"})]
    cycle = a_cycle(graph, strongly_connected(graph)[0])
    assert cycle == ["jupyter_flow.engine.a", "jupyter_flow.engine.b", "jupyter_flow.engine.a"]

