"""Papermill batches: one notebook run per parameter point, children of one batch run."""

from .runner import batch, compare  # noqa: F401
