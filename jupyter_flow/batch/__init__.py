"""Papermill batches: one notebook run per parameter point, children of one batch run.

``batch`` and ``compare`` load ``runner`` on first use, so ``import jupyter_flow`` (which
imports this package, see there) stays light.
"""

from typing import Any

__all__ = ["batch", "compare"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'jupyter_flow.batch' has no attribute {name!r}")
