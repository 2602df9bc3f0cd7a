"""Every documented path works after the README's install: whatever jupyter_flow imports,
and whatever the demo notebooks import, is a declared requirement (or an extra the README
names), so no user meets a raw ``ModuleNotFoundError`` after a successful batch."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

# Imported only where the user chose the feature, each behind a check that says what to install.
OPTIONAL = {
    "numpy": "only to store or show a numpy value, which the user's own code made",
    "pynvml": "GPU facts when present; nvidia-smi otherwise",
    "dask-jobqueue": "the slurm profiles: the `slurm` extra",
    "psycopg": "PostgreSQL stores: the `postgres` extra",
    "matplotlib": "figures the user's own code made",
}
# Installed by a declared requirement and part of what that requirement is (Jupyter itself).
WITH_JUPYTERLAB = {"ipython", "jupyter-core", "jupyter-server"}
# Imported by the GPU notebooks only on a GPU worker (`try: import cupy ... except ImportError`).
GPU_WORKER_ONLY = {"cupy"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def _distributions(modules: set[str]) -> dict[str, str]:
    """Top-level module -> the distribution that installs it (third-party modules only)."""
    installed = importlib.metadata.packages_distributions()
    found = {}
    for module in modules - set(sys.stdlib_module_names) - {"jupyter_flow", "__future__"}:
        dists = installed.get(module)
        found[module] = _name(dists[0]) if dists else module.lower().replace("_", "-")
    return found


def _imports(source: str) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    return modules


def test_every_module_the_package_imports_is_a_declared_requirement():
    declared = {_name(r) for r in PROJECT["dependencies"]}
    modules = set()
    for path in (ROOT / "jupyter_flow").rglob("*.py"):
        modules |= _imports(path.read_text())
    undeclared = {module: dist for module, dist in _distributions(modules).items()
                  if dist not in declared | set(OPTIONAL) | WITH_JUPYTERLAB}
    assert undeclared == {}, f"imported by jupyter_flow but not in pyproject's dependencies: {undeclared}"


def test_the_demo_notebooks_need_only_the_install_and_the_examples_extra():
    allowed = {_name(r) for r in PROJECT["dependencies"] + PROJECT["optional-dependencies"]["examples"]}
    readme = (ROOT / "README.md").read_text()
    assert '.[examples]' in readme  # the README says how to get them
    missing = {}
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        python = []
        for cell in cells:
            lines = "".join(cell["source"]).splitlines()
            if cell["cell_type"] != "code" or (lines and lines[0].startswith("%%") and (
                    not lines[0].startswith("%%flow") or "--shell" in lines[0])):
                continue  # a shell cell's body is not Python
            # IPython magics and shell escapes are not Python either.
            python += [line for line in lines if not line.lstrip().startswith(("%", "!"))]
        python = "\n".join(python)
        for module, dist in _distributions(_imports(python)).items():
            if dist not in allowed | WITH_JUPYTERLAB | GPU_WORKER_ONLY:
                missing.setdefault(notebook.name, []).append(dist)
    assert missing == {}, f"notebooks import what neither the install nor the examples extra brings: {missing}"
