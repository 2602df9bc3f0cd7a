"""A figure computed by an op, kept as the PNG image a notebook would show.

Matplotlib figures (and axes, which drag their figure along) are live drawing state
bound to the process that made them; pickling them stores megabytes that only unpickle
cleanly under the same matplotlib and backend. An op's figure outputs are stored as the
image instead: one PNG per figure, previewed as an image, displayed as the figure was.

>>> png = b"\\x89PNG\\r\\n\\x1a\\n" + b"\\x00\\x00\\x00\\rIHDR" + (64).to_bytes(4, "big") + (48).to_bytes(4, "big")
>>> StoredFigure(png)
<stored figure 64x48 px>
"""

from __future__ import annotations

import os
from typing import Any

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class StoredFigure:
    """The PNG image of a matplotlib figure an op produced.

    It displays like the figure (``_repr_png_``) and can be saved again as a PNG; the live
    ``Figure`` stayed on the worker, so drawing on it (``ax.plot``) is not possible here:
    make the figure in the cell that uses it, or return the data and plot it there.
    """

    __slots__ = ("png",)

    def __init__(self, png: bytes):
        self.png = bytes(png)

    @classmethod
    def from_figure(cls, figure: Any) -> "StoredFigure":
        return cls(figure_png(figure))

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) in pixels, read from the PNG header."""
        if not self.png.startswith(PNG_MAGIC) or len(self.png) < 24:
            return None
        return int.from_bytes(self.png[16:20], "big"), int.from_bytes(self.png[20:24], "big")

    def _repr_png_(self) -> bytes:
        return self.png

    def savefig(self, path: str | os.PathLike, **_: Any) -> None:
        """Write the image; only PNG files can be written from a stored figure."""
        if not str(path).lower().endswith(".png"):
            raise ValueError(
                f"cannot save {str(path)!r}: this figure was made by an op and is kept as a PNG image; "
                "save it as .png, or draw the figure outside the op to save other formats"
            )
        with open(path, "wb") as handle:
            handle.write(self.png)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(
            f"a stored figure has no attribute {name!r}: the op's live matplotlib figure stayed on the "
            "worker and only its image was kept (use .png, .savefig('x.png') or display it)"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StoredFigure) and other.png == self.png

    def __hash__(self) -> int:
        return hash(self.png)

    def __reduce__(self):
        return (StoredFigure, (self.png,))

    def __repr__(self) -> str:
        size = self.size
        return f"<stored figure {size[0]}x{size[1]} px>" if size else "<stored figure>"


def figure_png(figure: Any) -> bytes:
    """The figure drawn as Jupyter's inline backend draws it (PNG, tight bounding box)."""
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight", facecolor=figure.get_facecolor())
    return buffer.getvalue()


def figure_of(value: Any) -> Any:
    """The matplotlib Figure that ``value`` is or draws on (a Figure, an Axes, or a
    list/tuple/array of Axes of one figure); None for anything else.

    Cheap for other values: nothing is imported unless matplotlib already is.
    """
    import sys

    if "matplotlib.figure" not in sys.modules:
        return None
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure, FigureBase

    if isinstance(value, Figure):
        return value
    if isinstance(value, (FigureBase, Axes)):
        return _root(value)
    if isinstance(value, (list, tuple)):
        items = list(value)
    elif type(value).__module__ == "numpy" and getattr(value, "dtype", None) == object:  # noqa: E721 (a numpy dtype)
        items = list(value.flat)
    else:
        return None
    if not items or not all(isinstance(item, Axes) for item in items):
        return None
    figures = {id(_root(item)): _root(item) for item in items}
    return next(iter(figures.values())) if len(figures) == 1 else None


def _root(artist: Any) -> Any:
    """The top-level figure of an axes or subfigure (``get_figure(root=True)`` where it exists)."""
    try:
        return artist.get_figure(root=True)
    except TypeError:  # matplotlib < 3.10: .figure is the root
        return artist.figure
