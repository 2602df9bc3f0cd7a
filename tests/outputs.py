"""Cell outputs as a user compares them: what a cell shows, without the run's progress display."""

from __future__ import annotations

import base64

PROGRESS = "application/vnd.jupyter.widget-view+json"


def is_bookkeeping(data: dict) -> bool:
    """The run's progress display (widget or its text summary) and the "restored from cache" mark."""
    text = data.get("text/plain", "")
    first = text.splitlines()[0] if text else ""
    return PROGRESS in data or "restored from cache" in text or ": run " in first


def shown(cell) -> list[tuple]:
    """(kind, content) for each output of a cell: streams merged, displays by MIME data."""
    out: list[tuple] = []
    for output in cell.outputs:
        if output.output_type == "stream":
            if out and out[-1][0] == output.name:  # the kernel may split a stream in chunks
                out[-1] = (output.name, out[-1][1] + output.text)
            else:
                out.append((output.name, output.text))
        elif "data" in output:
            data = output["data"]
            if is_bookkeeping(data):
                continue
            kind = "image" if "image/png" in data else "html" if "text/html" in data else "text"
            out.append((kind, tuple(sorted(data.items()))))
        elif output.output_type == "error":
            out.append(("error", output["ename"]))
    return out


def images(cell) -> list[bytes]:
    return [base64.b64decode(o["data"]["image/png"]) for o in cell.outputs
            if "data" in o and "image/png" in o["data"]]


def marks(cell) -> list[str]:
    return [o["data"]["text/plain"] for o in cell.outputs
            if "restored from cache" in o.get("data", {}).get("text/plain", "")]
