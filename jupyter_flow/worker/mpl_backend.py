"""The matplotlib backend of Dask workers: Agg drawing, and ``plt.show()`` as images in the cell.

Selected by ``display_hooks.install`` (``module://jupyter_flow.worker.mpl_backend``). Each figure
remembers the task that created it, so ``plt.show()`` and the end of an op show and close
only that op's figures, even when several ops run at once in one worker.
"""

from __future__ import annotations

from matplotlib.backend_bases import FigureManagerBase
from matplotlib.backends.backend_agg import FigureCanvasAgg

from . import capture


class FigureCanvasFlow(FigureCanvasAgg):
    """An Agg canvas tagged with the task (output record) that created it."""

    def __init__(self, figure=None):
        super().__init__(figure)
        record = capture.current()
        self.jupyter_flow_owner = record.token if record is not None else None


FigureCanvas = FigureCanvasFlow
FigureManager = FigureManagerBase


def show(*args, **kwargs) -> None:
    """Show the running op's open figures in its cell (as PNG images) and close them."""
    record = capture.current()
    if record is not None:
        record.show_figures()
