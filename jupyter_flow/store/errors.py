"""Store errors beyond the core ``FlowError`` family (all are ``StoreError`` subclasses)."""

from __future__ import annotations

from jupyter_flow.core.errors import FencedWrite, StoreError


class RunNotFound(StoreError):
    """No run with that id exists in the store."""


class CancelConflict(FencedWrite):
    """A cancel was requested for a run that has already finished."""


class RunActive(StoreError):
    """The run is still PENDING or RUNNING; cancel it first (or delete with ``force=True``)."""


class ScheduleNotFound(StoreError):
    """No schedule with that id (or name) exists in the store."""


class ScheduleExists(StoreError):
    """Another schedule already has that name (names are unique)."""
