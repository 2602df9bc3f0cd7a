"""Notebook files for tests: a Python 3 notebook written from cell sources."""

from __future__ import annotations

import nbformat


def write_notebook(path, cells):
    """A Python 3 notebook at ``path`` of code cells given as (source, tags or None)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for source, tags in cells:
        cell = nbformat.v4.new_code_cell(source)
        if tags:
            cell.metadata["tags"] = tags
        nb.cells.append(cell)
    nbformat.write(nb, path)
    return path
