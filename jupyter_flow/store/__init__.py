"""The metadata store: runs, tasks, owners, cache index, artifact registry, clusters.

The only package that opens SQL sessions. ``Store()`` opens (and migrates) the store at
``resolve_db_url()``: a SQLite file under ``JUPYTER_FLOW_HOME`` unless configured.
"""

from jupyter_flow.store.errors import CancelConflict, RunActive, RunNotFound, ScheduleExists, ScheduleNotFound
from jupyter_flow.store.repository import Store

__all__ = ["CancelConflict", "RunActive", "RunNotFound", "ScheduleExists", "ScheduleNotFound", "Store"]
