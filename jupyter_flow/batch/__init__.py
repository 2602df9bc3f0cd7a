"""Papermill batches: one notebook run per parameter point, children of one batch run."""

from .runner import batch, compare

__all__ = ["batch", "compare"]
