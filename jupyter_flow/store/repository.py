"""``Store``: every read and write of runs, tasks, owners, cache index, artifacts, schedules, clusters.

One class for callers, made of one part per aggregate, each in its own module over the
same engine and transactions (``store/transactions.py``):

- ``runs.py``: runs, tasks, cancel requests, pins, the change feed (``task_inserts.py``:
  the bulk insert of a run's task rows);
- ``owners.py``: owners, heartbeats and fencing, signing keys, clusters;
- ``cache.py``: the cache index and single-flight claims;
- ``artifact_index.py``: the artifact registry and what garbage collection keeps;
- ``schedules.py``: schedules and leases.

Runs, tasks and cache entries come back as typed records (``store/records.py``:
``RunRecord``, ``TaskRecord``, ``CacheEntry``), and are accepted as records or dicts; the
other aggregates' rows are plain dicts. Timestamps are timezone-aware UTC datetimes, JSON
columns are Python objects, statuses and kinds are plain strings.
"""

from __future__ import annotations

from jupyter_flow.store.artifact_index import ArtifactIndex
from jupyter_flow.store.cache import Cache
from jupyter_flow.store.owners import Owners
from jupyter_flow.store.runs import Runs
from jupyter_flow.store.schedules import Schedules


class Store(Runs, Owners, Cache, ArtifactIndex, Schedules):
    """The jupyter_flow metadata store (SQLite file or PostgreSQL database).

    >>> store = Store("sqlite://")          # in-memory; usually Store() or Store(url)
    >>> owner = store.register_owner()
    >>> store.create_run({"id": "R1", "kind": "api", "status": "RUNNING", "owner_id": owner},
    ...                  [{"id": "T1", "node": "n1", "name": "clean"}])
    >>> store.update_tasks(owner, [{"id": "T1", "status": "SUCCESS"}])
    []
    >>> store.get_run("R1")["task_counts"]
    {'SUCCESS': 1}
    >>> store.close()
    """
