"""Per-run feedback in the cell: a live ipywidgets table, and a text summary everywhere.

One display is shown per run as a MIME bundle holding a widget view, an HTML table and a
plain-text summary: JupyterLab renders the widget (updated live from the run's state).
When the run ends the display is replaced by the static HTML and text alone and the
widget is closed, so a saved notebook, reopened later or shown by nbviewer or GitHub,
shows the final table, not "Error displaying widget: model not found" (a widget's model
lives only as long as its kernel).
"""

from __future__ import annotations

import html
import threading
import time
from typing import Any

from ..engine.execution import RunExecution

_COLOURS = {
    "PENDING": "#9e9e9e", "WAITING": "#f0ad4e", "RUNNING": "#1e88e5", "SUCCESS": "#43a047",
    "CACHED": "#7cb342", "FAILED": "#e53935", "CANCELED": "#757575", "SKIPPED": "#bdbdbd", "LOST": "#6d4c41",
}


def _rows(execution: RunExecution) -> list[dict[str, Any]]:
    now = time.time()
    rows = []
    for task in execution.snapshot():  # published by the run: no lock taken here
        status = task.status
        if task.duration is not None:
            duration = task.duration
        elif task.started is not None and status == "RUNNING":
            duration = now - task.started
        else:
            duration = None
        rows.append({
            "op": task.name if task.index is None else f"{task.name}[{task.index}]",
            "status": status,
            "how": "cached" if task.cached else ("ran" if status == "SUCCESS" else (task.reason or "")),
            "duration": "" if duration is None else f"{duration:.2f} s",
            "worker": task.worker or "",
        })
    return rows


def summary_text(execution: RunExecution, title: str) -> str:
    rows = _rows(execution)
    head = f"{title}: run {execution.run_id} {execution.status.value}"
    width = max([len(r["op"]) for r in rows] + [2])
    lines = [head]
    for row in rows:
        extra = "  ".join(v for v in (row["how"], row["duration"], row["worker"]) if v)
        lines.append(f"  {row['op']:<{width}}  {row['status']:<8}  {extra}".rstrip())
    if execution.error and execution.done.is_set() and execution.status.value != "SUCCESS":
        lines.append(f"  error: {execution.error}")
    return "\n".join(lines)


def summary_html(execution: RunExecution, title: str, dashboard: str | None) -> str:
    rows = _rows(execution)
    cells = []
    pad = "padding:2px 12px 2px 0"  # JupyterLab's table styles do not reach a widget's HTML
    for row in rows:
        colour = _COLOURS.get(row["status"], "#000")
        cells.append(
            "<tr>" + f"<td style='{pad}'>{html.escape(row['op'])}</td>"
            + f"<td style='{pad};color:{colour};font-weight:600'>{row['status']}</td>"
            + "".join(f"<td style='{pad}'>{html.escape(str(row[k]))}</td>" for k in ("how", "duration", "worker"))
            + "</tr>"
        )
    link = (f" · <a href='{html.escape(dashboard, quote=True)}' target='_blank'>Dask dashboard</a>"
            if dashboard else "")
    status = execution.status.value
    return (
        f"<div><b>{html.escape(title)}</b> · run <code>{execution.run_id}</code> · "
        f"<span style='color:{_COLOURS.get(status, '#000')}'>{status}</span>{link}"
        "<table style='border-collapse:collapse;margin-top:4px'>"
        "<tr>" + "".join(f"<th align='left' style='{pad}'>{name}</th>"
                         for name in ("op", "status", "cached/ran", "duration", "worker"))
        + "</tr>" + "".join(cells) + "</table></div>"
    )


class RunDisplay:
    """The output area of one run; ``refresh()`` redraws it, ``finish()`` writes the final text."""

    def __init__(self, execution: RunExecution, title: str, *, live: bool):
        from IPython.display import display

        self.execution = execution
        self.title = title
        self.dashboard = _dashboard(execution)
        self.widget = None
        if live:
            try:
                import ipywidgets

                self.widget = ipywidgets.HTML(summary_html(execution, title, self.dashboard))
            except ImportError:  # no ipywidgets: the text/HTML summary is all there is
                self.widget = None
        # Saved while live, the file keeps the static table (jupyter_flow.server.saving).
        self.handle = display(self._bundle(), raw=True, display_id=True,
                              metadata={"jupyter_flow": {"static_fallback": True}})

    def _bundle(self) -> dict:
        bundle = {"text/plain": summary_text(self.execution, self.title),
                  "text/html": summary_html(self.execution, self.title, self.dashboard)}
        if self.widget is not None:
            bundle["application/vnd.jupyter.widget-view+json"] = {
                "model_id": self.widget.model_id, "version_major": 2, "version_minor": 0,
            }
        return bundle

    def refresh(self) -> None:
        if self.widget is not None:
            self.widget.value = summary_html(self.execution, self.title, self.dashboard)

    def finish(self) -> None:
        """The final table, static: the live widget is closed and no longer referenced."""
        widget, self.widget = self.widget, None
        if self.handle is not None:
            self.handle.update(self._bundle(), raw=True)
        if widget is not None:
            widget.close()

    def follow(self, on_end=None) -> threading.Thread:
        """Keep the display updated from a background thread until the run ends."""

        def loop():
            while not self.execution.done.wait(0.25):
                self.refresh()
            self.finish()
            if on_end is not None:
                on_end()

        thread = threading.Thread(target=loop, name=f"jupyter-flow-display-{self.execution.run_id}", daemon=True)
        thread.start()
        return thread


def _dashboard(execution: RunExecution) -> str | None:
    handle = execution.handle
    return handle.dashboard_link if handle is not None else None
