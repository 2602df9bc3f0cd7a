"""What an op shows while it runs, captured on its worker as Jupyter outputs.

A worker has no IPython shell, so nothing an op prints or displays would reach a notebook
by itself. While an op runs, everything it shows is recorded, in order, in the shapes a
notebook stores (``nbformat`` outputs)::

    {"output_type": "stream", "name": "stdout", "text": "..."}
    {"output_type": "display_data", "data": {"text/plain": ..., "image/png": ...}, "metadata": {}}
    {"output_type": "execute_result", ...}       # the value of a cell's last expression

- ``print``/stderr writes come through the worker's per-thread stream router;
- ``display()`` (IPython's, the ``display`` builtin of notebooks, and
  ``IPython.display.display`` imported inside the op) is routed to the task's record
  (display_hooks.py) and formatted into MIME bundles by IPython's own ``DisplayFormatter``;
- matplotlib runs on the ``jupyter_flow.worker.mpl_backend`` backend (Agg drawing):
  ``plt.show()`` shows the op's open figures as PNG images and closes them, and figures
  still open when the op ends are shown once, as Jupyter's inline backend does.

The record is sent to the submitting process as it grows (``output`` events, a few times a
second) and stored with the task's outputs under the reserved name ``DISPLAYS``
(core/outputs.py), so a cache hit shows exactly what the first run showed. Sizes are
bounded: text beyond :data:`STREAM_LIMIT` characters and outputs beyond
:data:`DISPLAY_LIMIT` bytes are replaced by a short note, and an object whose display
fails shows a one-line error.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import logging
import os
import sys
import threading
import time
import types
from typing import Any, Callable

from ..core.outputs import RESERVED, VALUE

log = logging.getLogger("jupyter_flow.engine")


STREAM_LIMIT = 1_000_000  # characters of stdout + stderr an op's record keeps
DISPLAY_LIMIT = 5 * 2**20  # bytes of one display (its JSON)
RECORD_LIMIT = 20 * 2**20  # bytes of all displays of one op
MAX_ITEMS = 5000  # outputs of one op
LIVE_LIMIT = 256 * 1024  # bytes of one output sent as it happens; larger ones come with the record
FAILED_LIMIT = 4 * 2**20  # bytes of outputs sent with a failure (a failed op stores no record)
FLUSH_S = 0.25  # how often new outputs are sent while an op runs

MPL_BACKEND = "module://jupyter_flow.worker.mpl_backend"

_local = threading.local()
_tokens = itertools.count(1)


# ------------------------------------------------------------------------ the record


class StreamBuffer(io.TextIOBase):
    """stdout or stderr of one task: text goes to the record and to the task's log."""

    def __init__(self, record: "OutputRecord", name: str):
        self.record = record
        self.name = name

    def write(self, text) -> int:
        if not isinstance(text, str):
            text = text.decode(errors="replace") if isinstance(text, (bytes, bytearray)) else str(text)
        muted = getattr(_local, "muted", None)
        if muted is not None:
            muted.append(text)
            return len(text)
        self.record.write(self.name, text)
        return len(text)

    def getvalue(self) -> str:
        return self.record.logs[self.name].getvalue()

    def writable(self) -> bool:
        return True


class OutputRecord:
    """The ordered outputs of one task, and what of them was already sent live."""

    def __init__(self, emit: Callable[[int, list], None] | None = None):
        self.items: list[dict] = []
        self.sizes: list[int] = []
        self.sent = 0
        self.token = next(_tokens)
        self.logs = {"stdout": io.StringIO(), "stderr": io.StringIO()}
        self.buffers = {"stdout": StreamBuffer(self, "stdout"), "stderr": StreamBuffer(self, "stderr")}
        self.modules: dict[str, str] = {}
        self.png_cache: dict[int, bytes] = {}  # id(figure) -> PNG drawn after the op's code ended
        self.lock = threading.RLock()
        self._emit = emit
        self._open: tuple[str, list[str]] | None = None  # the stream chunk being written
        self._deferred = False  # a large output waits for the stored record: stop sending live
        self._stream_chars = 0
        self._display_bytes = 0
        self._notes: set[str] = set()

    # -- writing ------------------------------------------------------------------------
    def write(self, name: str, text: str) -> None:
        with self.lock:
            self.logs[name].write(text)
            room = STREAM_LIMIT - self._stream_chars
            if room <= 0:
                return
            piece = text[:room]
            self._stream_chars += len(piece)
            if self._open is not None and self._open[0] == name:
                self._open[1].append(piece)
            else:
                self._close_stream()
                self._open = (name, [piece])
            if len(piece) < len(text):
                self._note("stream", f"[jupyter_flow] output truncated here: an op keeps at most "
                                     f"{STREAM_LIMIT:,} characters of printed output")

    def _close_stream(self) -> None:
        if self._open is not None:
            name, pieces = self._open
            self._open = None
            text = "".join(pieces)
            if text:
                self._append({"output_type": "stream", "name": name, "text": text}, len(text))

    def _append(self, item: dict, size: int) -> None:
        if len(self.items) >= MAX_ITEMS:
            if "items" not in self._notes:
                self._notes.add("items")
                self.items.append(_stderr(f"[jupyter_flow] further outputs were not kept: an op keeps at most "
                                          f"{MAX_ITEMS} outputs"))
                self.sizes.append(200)
            return
        self.items.append(item)
        self.sizes.append(size)

    def _note(self, kind: str, text: str) -> None:
        if kind not in self._notes:
            self._notes.add(kind)
            self._close_stream()
            self._append(_stderr(text), len(text))

    def add_display(self, data: dict, metadata: dict | None = None, *, output_type: str = "display_data",
                    display_id: str | None = None, update: bool = False) -> None:
        """Add a formatted display (or update an earlier one with the same ``display_id``)."""
        item: dict[str, Any] = {"output_type": output_type, "data": data, "metadata": metadata or {}}
        if output_type == "execute_result":
            item["execution_count"] = None
        if display_id:
            item["transient"] = {"display_id": display_id}
        text = json.dumps(item)
        size = len(text)
        with self.lock:
            if size > DISPLAY_LIMIT:
                kinds = ", ".join(sorted(data))
                self._close_stream()
                self._append(_stderr(f"[jupyter_flow] a {kinds} output of {size / 2**20:.1f} MiB was not kept "
                                     f"(at most {DISPLAY_LIMIT // 2**20} MiB per output); write large results "
                                     "to files instead"), 200)
                return
            if self._display_bytes + size > RECORD_LIMIT:
                self._note("record", f"[jupyter_flow] further displays were not kept: an op keeps at most "
                                     f"{RECORD_LIMIT // 2**20} MiB of displayed outputs")
                return
            self._display_bytes += size
            self._close_stream()
            if update and display_id:
                for index in range(len(self.items) - 1, self.sent - 1, -1):
                    earlier = self.items[index]
                    if (earlier.get("transient") or {}).get("display_id") == display_id:
                        earlier["data"], earlier["metadata"] = item["data"], item["metadata"]
                        self.sizes[index] = size
                        return
                item["output_type"] = "update_display_data"
            self._append(item, size)

    def clear(self) -> None:
        """``clear_output()`` inside the op: drop what was not shown yet."""
        with self.lock:
            self._open = None
            del self.items[self.sent:]
            del self.sizes[self.sent:]

    # -- sending --------------------------------------------------------------------------
    def send_live(self, *, final: bool = False, failed: bool = False) -> None:
        """Send the outputs not sent yet (those up to the first large one, unless ``failed``:
        a failed op stores no record, so everything goes now, within FAILED_LIMIT)."""
        with self.lock:
            if self._emit is None:
                return
            if final:
                self._close_stream()
            elif self._open is not None and sum(map(len, self._open[1])) > 0:
                self._close_stream()
            if self.sent >= len(self.items):
                return
            batch: list[dict] = []
            total = 0
            for item, size in zip(self.items[self.sent:], self.sizes[self.sent:]):
                if failed:
                    if total + size > FAILED_LIMIT:
                        batch.append(_stderr("[jupyter_flow] further outputs of this failed op were not kept"))
                        break
                elif self._deferred or size > LIVE_LIMIT:
                    self._deferred = True
                    break
                batch.append(item)
                total += size
            if not batch:
                return
            try:
                self._emit(self.sent, batch)
            except Exception:  # a closing worker cannot send; the stored record still has it all
                log.debug("jupyter_flow: could not send live outputs", exc_info=True)
                return
            self.sent += len(batch)

    def payload(self) -> dict | None:
        """What is stored under ``DISPLAYS`` (None when the op showed nothing)."""
        with self.lock:
            self._close_stream()
            if not self.items and not self.modules:
                return None
            payload: dict[str, Any] = {"outputs": list(self.items)}
            if self.modules:
                payload["modules"] = dict(self.modules)
            return payload

    # -- values, figures ------------------------------------------------------------------
    def show_value(self, value: Any) -> None:
        """The value of a cell's last expression, as Jupyter's displayhook shows it."""
        if value is None:
            return
        figure = _figure(value)
        data, metadata = format_bundle(value)
        if data:
            self.add_display(data, metadata, output_type="execute_result")
        if figure is not None:
            _close_figure(figure)  # shown once, not again as an open figure

    def show_figures(self, *, final: bool = False) -> None:
        """Show this task's open figures as images and close them (``plt.show()``)."""
        for figure in owned_figures(self):
            if final:
                png = _png(figure)
                if png is not None:
                    self.png_cache[id(figure)] = png
            data, metadata = format_bundle(figure)
            if data:
                self.add_display(data, metadata)
            _close_figure(figure)


def _stderr(text: str) -> dict:
    return {"output_type": "stream", "name": "stderr", "text": text.rstrip("\n") + "\n"}


def current() -> OutputRecord | None:
    """The record of the task running in this thread, if any."""
    return getattr(_local, "record", None)


def activate(record: OutputRecord | None) -> OutputRecord | None:
    """Make ``record`` this thread's record; returns the previous one."""
    previous = getattr(_local, "record", None)
    _local.record = record
    return previous


# ---------------------------------------------------------------------- formatting

_FORMATTER: Any = None
_FORMATTER_LOCK = threading.Lock()


def _formatter():
    global _FORMATTER
    with _FORMATTER_LOCK:
        if _FORMATTER is None:
            from IPython.core.formatters import DisplayFormatter

            formatter = DisplayFormatter()
            # What Jupyter's inline backend registers: a figure displays as its PNG.
            formatter.formatters["image/png"].for_type_by_name("matplotlib.figure", "Figure", _png)
            _FORMATTER = formatter
        return _FORMATTER


def _png(figure: Any) -> bytes | None:
    if not figure.axes and not getattr(figure, "lines", None):
        return None  # an empty figure shows nothing, as in Jupyter
    from ..artifacts.figures import figure_png

    return figure_png(figure)


def format_bundle(obj: Any, include=None, exclude=None) -> tuple[dict, dict]:
    """(MIME bundle, metadata) of ``obj`` as Jupyter would show it; never raises.

    Formatters that fail are dropped with a one-line note on the op's stderr; an object
    whose ``repr`` fails shows a short text saying so.
    """
    muted: list[str] = []
    previous = getattr(_local, "muted", None)
    _local.muted = muted  # IPython prints a failing formatter's traceback: keep it out of the record
    try:
        try:
            data, metadata = _formatter().format(obj, include=include, exclude=exclude)
        except Exception as err:  # e.g. _ipython_display_ raising
            data, metadata = {}, {}
            muted.append(f"{type(err).__name__}: {err}")
    finally:
        _local.muted = previous
    if not data and not muted and hasattr(obj, "_ipython_display_"):
        return {}, {}  # the object displayed itself
    data = jsonable(data)
    if "text/plain" not in data:
        data["text/plain"] = safe_repr(obj)
    if muted:
        record = current()
        if record is not None:
            errors = "; ".join(dict.fromkeys(_final_lines("".join(muted))))[:500]
            record.write("stderr", f"[jupyter_flow] displaying a {type(obj).__name__} failed in part: {errors}\n")
    return data, jsonable(metadata or {})


def _final_lines(text: str) -> list[str]:
    """The "ExcType: message" line closing each traceback in ``text``."""
    blocks = text.split("Traceback (most recent call last):")
    found = []
    for block in blocks:
        lines = [line.strip() for line in block.strip().splitlines() if line.strip()]
        if lines:
            found.append(lines[-1])
    return found


def safe_repr(obj: Any, limit: int = 10_000) -> str:
    """``repr(obj)``, bounded; a short text when it raises."""
    try:
        text = repr(obj)
    except Exception as err:
        name = f"{type(obj).__module__}.{type(obj).__qualname__}"
        return f"<{name} object: its repr raised {type(err).__name__}: {err}>"[:500]
    return text if len(text) <= limit else text[:limit] + "…"


def jsonable(data: dict) -> dict:
    """Bytes as base64 (what ipykernel sends for images); anything else made JSON-safe."""
    out = {}
    for key, value in data.items():
        if isinstance(value, (bytes, bytearray)):
            value = base64.b64encode(bytes(value)).decode("ascii")
        try:
            value = json.loads(json.dumps(value, default=safe_repr))
        except (TypeError, ValueError):
            value = safe_repr(value)
        out[str(key)] = value
    return out


# ------------------------------------------------------------------------ matplotlib


def owned_figures(record: OutputRecord) -> list:
    """Open pyplot figures created by ``record``'s task, oldest first."""
    if "matplotlib.pyplot" not in sys.modules:
        return []
    from matplotlib._pylab_helpers import Gcf

    return [manager.canvas.figure for manager in Gcf.get_all_fig_managers()
            if getattr(manager.canvas, "jupyter_flow_owner", None) == record.token]


def _figure(value: Any) -> Any:
    if "matplotlib.figure" not in sys.modules:
        return None
    from matplotlib.figure import Figure

    return value if isinstance(value, Figure) else None


def _close_figure(figure: Any) -> None:
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(figure)


def use_flow_backend() -> None:
    """Draw with Agg and turn ``plt.show()`` into images for the cell, except inside a
    Jupyter kernel (an in-process cluster must not take the notebook's own backend)."""
    if "ipykernel" in sys.modules:
        return
    os.environ["MPLBACKEND"] = MPL_BACKEND  # read when matplotlib is imported (also by child processes)
    if "matplotlib" not in sys.modules:
        return
    import matplotlib

    if "matplotlib.pyplot" in sys.modules:
        if matplotlib.get_backend() != MPL_BACKEND:
            sys.modules["matplotlib.pyplot"].switch_backend(MPL_BACKEND)
    else:
        matplotlib.use(MPL_BACKEND)


# ------------------------------------------------------------------------- outputs


def prepare_outputs(outputs: dict[str, Any], record: OutputRecord) -> list[tuple[str, Any, int]]:
    """Turn an op's outputs into what is stored: ``[(name, value, identity)]``.

    The ``_`` value is displayed (not stored); open figures are shown and closed; modules
    are kept by name in the record (workers and kernels import them again); figures (and
    axes) are stored as their PNG image. ``identity`` lets one object bound to several
    names be stored once.
    """
    from ..artifacts.figures import StoredFigure, figure_of

    if VALUE in outputs:
        record.show_value(outputs[VALUE])
    record.show_figures(final=True)
    prepared = []
    images: dict[int, StoredFigure] = {}
    for name, value in outputs.items():
        if name == VALUE or name in RESERVED:
            continue
        if isinstance(value, types.ModuleType):
            record.modules[name] = value.__name__
            continue
        figure = figure_of(value)
        if figure is not None:
            key = id(figure)
            if key not in images:
                png = record.png_cache.get(key)
                images[key] = StoredFigure(png) if png is not None else StoredFigure.from_figure(figure)
            prepared.append((name, images[key], key))
            continue
        prepared.append((name, value, id(value)))
    return prepared


# ------------------------------------------------------------------ live outputs

_live: set[OutputRecord] = set()
_live_lock = threading.Lock()
_flusher: threading.Thread | None = None


def start_live(record: OutputRecord) -> None:
    """Send ``record``'s new outputs every FLUSH_S seconds until :func:`stop_live`."""
    global _flusher
    with _live_lock:
        _live.add(record)
        if _flusher is None or not _flusher.is_alive():
            _flusher = threading.Thread(target=_flush_loop, name="jupyter-flow-outputs", daemon=True)
            _flusher.start()


def stop_live(record: OutputRecord) -> None:
    with _live_lock:
        _live.discard(record)


def _flush_loop() -> None:
    while True:
        time.sleep(FLUSH_S)
        with _live_lock:
            records = list(_live)
        for record in records:
            record.send_live()
