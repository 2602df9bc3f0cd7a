"""What a notebook saved from JupyterLab keeps of jupyter_flow's live widgets.

A live ipywidgets output (the ``%flow params`` form) renders only while its kernel holds
the widget's model; a saved copy shows "Error displaying widget: model not found" when the
notebook is reopened. Outputs the kernel marks ``metadata.jupyter_flow.static_fallback``
carry their own static HTML and text, and this pre-save hook writes those alone to disk:
the browser keeps the live widget, the file (reopened, nbviewer, GitHub) shows the table.
"""

from __future__ import annotations

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
STATIC = ("text/html", "text/plain")


def static_fallback_output(output: dict) -> bool:
    """Whether ``output`` is a live widget of ours with a static fallback to keep instead."""
    data = output.get("data")
    meta = (output.get("metadata") or {}).get("jupyter_flow") or {}
    return (isinstance(data, dict) and WIDGET_VIEW in data and meta.get("static_fallback") is True
            and any(kind in data for kind in STATIC))


def keep_static_fallbacks(model: dict, **_kwargs) -> None:
    """``ContentsManager`` pre-save hook: drop the widget view of marked outputs."""
    if model.get("type") != "notebook" or not isinstance(model.get("content"), dict):
        return
    for cell in model["content"].get("cells") or []:
        if cell.get("cell_type") != "code":
            continue
        for output in cell.get("outputs") or []:
            if static_fallback_output(output):
                del output["data"][WIDGET_VIEW]
