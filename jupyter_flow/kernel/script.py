"""Notebooks as plain scripts: ``jupyter flow export NOTEBOOK -o flow.py``.

The exported script replays the notebook's code cells in order through the same cell
machinery the kernel uses (an IPython shell with jupyter_flow loaded), so each
``%%flow`` cell becomes the same op, with the same normalised source and the same cache
key: running the script restores what the notebook computed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..core.errors import FlowError

HEADER = '''"""{name}: exported from {source} by `jupyter flow export`.

Run it with `python {name}`; each %%flow cell below is the notebook's op, so unchanged
cells are restored from the cache. Edit the cells here or in the notebook.
"""
from jupyter_flow.kernel.script import Notebook

nb = Notebook()
'''


class Notebook:
    """Replays cells in one namespace; ``%%flow`` cells go through the ``%%flow`` magic."""

    def __init__(self):
        from IPython.core.interactiveshell import InteractiveShell

        self.shell = InteractiveShell.instance()
        self.shell.run_line_magic("load_ext", "jupyter_flow")
        self.count = 0

    @property
    def namespace(self) -> dict:
        return self.shell.user_ns

    def cell(self, source: str) -> None:
        """Run one cell; a failing cell stops the script with its error."""
        self.count += 1
        result = self.shell.run_cell(source, store_history=True)
        if not result.success:
            error = result.error_in_exec or result.error_before_exec
            print(f"cell {self.count} failed: {type(error).__name__}: {error}", file=sys.stderr)
            raise SystemExit(1)


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
    parts = [HEADER.format(name=output.name, source=notebook.name)]
    count = 0
    for cell in nb.cells:
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        source = cell.source
        if "'''" in source:
            source = source.replace("\\", "\\\\").replace("'''", "\\'\\'\\'")
            parts.append(f"\nnb.cell('''{source}\n''')\n")
        else:
            parts.append(f"\nnb.cell(r'''{source}\n''')\n")
        count += 1
    output.write_text("".join(parts))
    return count
