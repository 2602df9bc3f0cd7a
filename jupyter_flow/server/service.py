"""``FlowService``: what the REST API can do, as plain synchronous calls on the store.

Handlers translate HTTP into these calls (in a worker thread, because every store call
blocks) and translate ``ApiError`` back into a status code. Nothing here knows tornado.

>>> service = FlowService(Store("sqlite://"), artifact_store(tempfile.mkdtemp()))  # doctest: +SKIP
>>> service.list_runs(limit=10)["runs"]                                            # doctest: +SKIP
[]
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Callable

from jupyter_flow import __version__
from jupyter_flow.artifacts import ArtifactStore, validate_digest
from jupyter_flow.core.errors import ArtifactError, ArtifactUntrusted, FlowError
from jupyter_flow.core.secrets import looks_secret, redact
from jupyter_flow.engine import cluster as clusters
from jupyter_flow.server import limits
from jupyter_flow.server.errors import (  # noqa: F401  (ApiError and kin are this API's errors)
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    StoreUnavailable,
    Unprocessable,
)
from jupyter_flow.server.store_access import StoreAccess
from jupyter_flow.store import CancelConflict, RunNotFound, Store

# Task fields too large for listings; ``tasks/{id}/logs`` serves them.
LOG_FIELDS = ("stdout", "stderr", "traceback")


def to_json(value: Any) -> Any:
    """Store records as JSON-ready values (timestamps as ISO 8601 strings in UTC)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def _task_summary(task: dict) -> dict:
    return _hide_secrets({k: v for k, v in task.items() if k not in LOG_FIELDS})


# Fields of run and task records that hold user values by name. The store never keeps a
# secret-named value in plain text there; redacting again on the way out is defence in
# depth (rows written by older versions). Record fields themselves ("key": the cache
# key) are not user names, so only these sub-dicts are redacted.
_VALUE_FIELDS = ("params", "globals")


def _hide_secrets(record: dict) -> dict:
    """A run or task record with secret-named parameter and captured values redacted."""
    out = dict(record)
    if isinstance(out.get("params"), dict):
        out["params"] = redact(out["params"])
    for holder in ("components", "provenance"):
        part = out.get(holder)
        if isinstance(part, dict) and any(isinstance(part.get(f), dict) for f in _VALUE_FIELDS):
            out[holder] = {k: redact(v) if k in _VALUE_FIELDS and isinstance(v, dict) else v
                           for k, v in part.items()}
    return out


def _redact(value: Any, name: str = "") -> Any:
    """Cluster profile settings with anything that looks like a secret hidden."""
    if isinstance(value, dict):
        return {k: _redact(v, str(k)) for k, v in value.items()}
    if name and looks_secret(name) and value not in (None, "", False):
        return "***"
    if isinstance(value, (list, tuple)):
        return [_redact(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


class FlowService:
    """The REST API's operations over one store and one artifact store."""

    def __init__(
        self,
        store: Store | StoreAccess,
        artifacts: ArtifactStore | str,
        *,
        heartbeat_timeout: float = 30.0,
        server_user: str | None = None,
    ):
        self.access = store if isinstance(store, StoreAccess) else StoreAccess.of(store)
        # An artifacts URL is opened on first use, with the key the store keeps (which may
        # not be readable yet when the server starts).
        self._artifacts = artifacts if isinstance(artifacts, ArtifactStore) else None
        self._artifacts_url = None if isinstance(artifacts, ArtifactStore) else artifacts
        self.heartbeat_timeout = heartbeat_timeout
        self.server_user = server_user

    @property
    def artifacts(self) -> ArtifactStore:
        """The artifact store, reading pickles only when signed with the store's key."""
        if self._artifacts is None:
            from jupyter_flow.artifacts import artifact_store

            self._artifacts = artifact_store(self._artifacts_url, signing_key=self.store.artifact_key())
        return self._artifacts

    @property
    def store(self) -> Store:
        """The open store; ``StoreUnavailable`` (503) while it cannot be opened."""
        return self.access.get()

    def call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one API operation. Every operation needs the store, even those that could
        do without it, so a client sees one consistent 503 while it cannot be opened; a
        database that goes away later is a 503 too, not a 500."""
        store = self.access.get()
        try:
            return method(*args, **kwargs)
        except Exception as err:
            failure = self.access.unavailable(err, store)
            if failure is None:
                raise
            raise failure from None

    def close(self) -> None:
        self.access.close()

    # -- health and liveness ------------------------------------------------------------

    def health(self) -> dict:
        """Proves the store answers: one cheap query."""
        now = self.store.now()
        return {
            "status": "ok",
            "version": __version__,
            "store": self.store.dialect,
            "time": now.isoformat(),
            "heartbeat_timeout": self.heartbeat_timeout,
        }

    def reconcile(self) -> list[str]:
        """Runs whose owner stopped heartbeating become LOST; returns their ids. While the
        store cannot be opened there is nothing to reconcile (the failure is logged once)."""
        try:
            store = self.access.get()
        except StoreUnavailable:
            return []
        return store.reconcile(self.heartbeat_timeout)

    # -- runs -----------------------------------------------------------------------------

    def list_runs(self, *, limit: int, **filters: Any) -> dict:
        """A page of runs, newest first, plus where to go next.

        ``cursor`` is the change-feed position taken *before* the page was read, so
        polling ``changes(cursor)`` afterwards misses nothing that changed meanwhile.
        """
        cursor = self.store.feed_cursor()
        runs = self.store.list_runs(limit=limit, **filters)
        next_before = runs[-1]["id"] if len(runs) == limit else None
        return {"runs": to_json([_hide_secrets(run) for run in runs]), "next_before": next_before, "cursor": cursor}

    def changes(self, cursor: int, limit: int) -> dict:
        """Runs changed after ``cursor`` in commit order and the cursor to poll with next."""
        runs, new_cursor = self.store.changes_since(cursor, limit)
        return {"runs": to_json([_hide_secrets(run) for run in runs]), "cursor": new_cursor}

    def _run(self, run_id: str) -> dict:
        run = self.store.get_run(run_id)
        if run is None:
            raise NotFound(f"no run {run_id!r} in the store")
        return run

    def get_run(self, run_id: str) -> dict:
        return to_json(_hide_secrets(self._run(run_id)))

    def run_tasks(self, run_id: str, changed_since: int | None = None) -> dict:
        tasks = self.store.get_tasks(run_id, changed_since=changed_since)
        if not tasks and self.store.get_run(run_id) is None:
            raise NotFound(f"no run {run_id!r} in the store")
        return {"run_id": run_id, "tasks": to_json([_task_summary(t) for t in tasks])}

    def may_cancel(self, run: dict) -> bool:
        """Owner check: the server acts for the OS user it runs as (see ``cancel_run``)."""
        return self.server_user is not None and run.get("user") == self.server_user

    def cancel_run(self, run_id: str, requested_by: str, *, is_admin: bool) -> dict:
        """Record a cancel request for ``run_id`` and its unfinished child runs.

        Allowed when the run was started by the OS user this server runs as (kernels and
        terminals of this server are that user), or when ``is_admin``. The process that
        owns the run polls for the request and cancels within a second.
        """
        run = self._run(run_id)
        if not (is_admin or self.may_cancel(run)):
            raise Forbidden(
                f"run {run_id} belongs to user {run.get('user')!r}; only its owner or a "
                "jupyter_flow admin may cancel it"
            )
        try:
            return to_json(_hide_secrets(self.store.request_cancel(run_id, by=requested_by)))
        except CancelConflict as err:
            raise Conflict(str(err)) from None
        except RunNotFound as err:
            raise NotFound(str(err)) from None

    # -- batches --------------------------------------------------------------------------

    def start_batch(self, body: Any, root_dir: str, *, db_url: str, artifacts_url: str) -> dict:
        """Start a papermill batch of a notebook under the server's root directory; the
        same implementation as ``jf.batch`` and ``jupyter flow batch``. Returns the batch
        run as it is once its notebook runs are recorded (it goes on in the background)."""
        import os

        from jupyter_flow.batch.runner import batch
        from jupyter_flow.core.errors import FlowError

        if not isinstance(body, dict):
            raise Unprocessable("the body must be a JSON object with at least 'notebook'")
        allowed = {"notebook", "params", "grid", "parallel", "cluster", "name"}
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise Unprocessable(f"unknown field(s) {[name[:40] for name in unknown[:10]]}; allowed: {sorted(allowed)}")
        notebook = body.get("notebook")
        if not isinstance(notebook, str) or not notebook.endswith(".ipynb"):
            raise Unprocessable("'notebook' must be the path of an .ipynb file under the server root")
        limits.check_length(notebook, "notebook", limits.MAX_PATH_LENGTH)
        root = os.path.realpath(root_dir)
        # Relative to the server root, or absolute (as runs record it) but under the root.
        path = os.path.realpath(notebook if os.path.isabs(notebook) else os.path.join(root, notebook))
        if os.path.commonpath([root, path]) != root:
            raise Unprocessable("'notebook' must be inside the server's root directory")
        for field_name in ("params", "grid"):
            if body.get(field_name) is not None and not isinstance(body[field_name], dict):
                raise Unprocessable(f"'{field_name}' must be a JSON object")
            for param in body.get(field_name) or {}:
                if len(param) > limits.MAX_NAME_LENGTH:
                    raise Unprocessable(
                        f"a parameter name in '{field_name}' has {len(param)} characters; the limit "
                        f"is {limits.MAX_NAME_LENGTH}"
                    )
        grid = body.get("grid") or None
        if grid is not None and not all(isinstance(v, list) and v for v in grid.values()):
            raise Unprocessable("every 'grid' value must be a non-empty list")
        points = math.prod(len(values) for values in (grid or {}).values())
        if points > limits.MAX_BATCH_POINTS:
            raise Unprocessable(
                f"'grid' makes {points} notebook executions; the limit is {limits.MAX_BATCH_POINTS} "
                "per batch (split the sweep into several batches)"
            )
        parallel = body.get("parallel", 1)
        if not isinstance(parallel, int) or isinstance(parallel, bool) or not 1 <= parallel <= limits.MAX_BATCH_PARALLEL:
            raise Unprocessable(f"'parallel' must be an integer from 1 to {limits.MAX_BATCH_PARALLEL}")
        for field_name in ("cluster", "name"):
            if body.get(field_name) is not None:
                if not isinstance(body[field_name], str):
                    raise Unprocessable(f"'{field_name}' must be a string")
                limits.check_length(body[field_name], field_name, limits.MAX_NAME_LENGTH)
        try:
            run = batch(path, params=body.get("params") or None, grid=grid, parallel=parallel,
                        cluster=body.get("cluster"), name=body.get("name"), wait=False,
                        db_url=db_url, artifacts_url=artifacts_url)
        except FlowError as err:
            raise Unprocessable(str(err)) from None
        return self.get_run(run.id)

    # -- tasks ----------------------------------------------------------------------------

    def _task(self, task_id: str) -> dict:
        task = self.store.get_task(task_id)
        if task is None:
            raise NotFound(f"no task {task_id!r} in the store")
        return task

    def get_task(self, task_id: str) -> dict:
        return to_json(_task_summary(self._task(task_id)))

    def task_logs(self, task_id: str) -> dict:
        """stdout, stderr, error and traceback of a task; each keeps its last 256 KiB."""
        task = self._task(task_id)
        logs: dict[str, Any] = {"task_id": task_id, "truncated": False}
        for field in ("stdout", "stderr", "error", "traceback"):
            text = task.get(field) or ""
            if len(text) > limits.LOG_LIMIT:
                text = text[-limits.LOG_LIMIT:]
                logs["truncated"] = True
            logs[field] = text
        return logs

    # -- graphs ---------------------------------------------------------------------------

    def list_graphs(self, *, limit: int, before: str | None = None) -> dict:
        """Each run's graph, summarised (a graph's id is its run's id)."""
        runs = self.store.list_runs(limit=limit, before=before)
        graphs = [
            {
                "id": run["id"],
                "name": run["name"],
                "kind": run["kind"],
                "status": run["status"],
                "created_at": run["created_at"],
                "nodes": sum(run["task_counts"].values()),
            }
            for run in runs
        ]
        next_before = runs[-1]["id"] if len(runs) == limit else None
        return {"graphs": to_json(graphs), "next_before": next_before}

    def get_graph(self, run_id: str) -> dict:
        """A run's task graph: nodes (tasks) and edges (upstream task -> task)."""
        run = self._run(run_id)
        tasks = self.store.get_tasks(run_id)
        by_node = {task["node"]: task["id"] for task in tasks}
        nodes = [
            {
                "id": task["id"],
                "node": task["node"],
                "name": task["name"],
                "index": task["index"],
                "status": task["status"],
                "cached": task["cached"],
                "key": task["key"],
                "outputs": task["outputs"] or {},
            }
            for task in tasks
        ]
        edges = [
            {"source": by_node[upstream], "target": task["id"]}
            for task in tasks
            for upstream in task["upstream"] or []
            if upstream in by_node
        ]
        positions = (run.get("graph") or {}).get("targets") or []
        targets = [by_node[str(p)] for p in positions if str(p) in by_node]
        return to_json(
            {"id": run_id, "name": run["name"], "status": run["status"], "nodes": nodes,
             "edges": edges, "targets": targets}
        )

    # -- artifacts and lineage ------------------------------------------------------------

    @staticmethod
    def _digest(digest: str) -> str:
        try:
            return validate_digest(digest)
        except ValueError as err:
            raise BadRequest(str(err)) from None

    def artifact_preview(self, digest: str, max_bytes: int) -> dict:
        """A bounded preview (json, text, table, image or repr) plus registry facts."""
        digest = self._digest(digest)
        if not self.artifacts.exists(digest):
            raise NotFound(f"no artifact {digest} in the artifact store")
        try:
            preview = self.artifacts.preview(digest, max_bytes=max_bytes)
        except ArtifactError as err:
            raise NotFound(str(err)) from None
        record = self.store.get_artifact(digest) or {}
        return to_json(
            {"hash": digest, **preview, "created_at": record.get("created_at"),
             "producers": [task["id"] for task in self.store.artifact_runs(digest)]}
        )

    def artifact_bytes(self, digest: str) -> tuple[bytes, str]:
        """The serialized value (what its serializer wrote) and that serializer's name.

        A pickle is served only when it carries this store's signature (a client that
        unpickles a download trusts the server); sealed artifacts are never served.
        """
        digest = self._digest(digest)
        if not self.artifacts.exists(digest):
            raise NotFound(f"no artifact {digest} in the artifact store")
        try:
            header, payload = self.artifacts.payload(digest)
        except ArtifactUntrusted as err:
            raise Conflict(f"{err} It is not served for download.") from None
        except ArtifactError as err:
            raise NotFound(str(err)) from None
        if header.get("sealed"):
            raise Conflict(f"artifact {digest} is sealed (encrypted with the store's key, e.g. a graph "
                           "snapshot, which may hold secrets); it is not served for download")
        return payload, str(header.get("serializer"))

    def lineage(self, ident: str) -> dict:
        """Where a task's inputs or an artifact came from, back to the graph's sources
        (``engine.lineage.lineage_graph``; at most 2,000 tasks)."""
        from jupyter_flow.engine.lineage import lineage_graph

        try:
            graph = lineage_graph(self.store, ident, artifact_exists=self.artifacts.exists, limit=limits.LINEAGE_LIMIT)
        except FlowError as err:
            raise NotFound(str(err)) from None
        return to_json(graph)

    # -- clusters -------------------------------------------------------------------------

    def clusters(self) -> dict:
        """Clusters in use (registered by the processes that own them) and the profiles."""
        profiles = {
            name: _redact({k: spec.get(k) for k in ("module", "class", "kwargs", "adapt")})
            for name, spec in clusters.profiles().items()
        }
        return {
            "clusters": to_json(self.store.list_clusters(active_only=True)),
            "profiles": profiles,
            "default_profile": clusters.default_profile(),
        }
