"""``FlowService``: what the REST API can do, as plain synchronous calls on the store.

Handlers translate HTTP into these calls (in a worker thread, because every store call
blocks) and translate ``ApiError`` back into a status code. Nothing here knows tornado.

>>> service = FlowService(Store("sqlite://"), artifact_store(tempfile.mkdtemp()))  # doctest: +SKIP
>>> service.list_runs(limit=10)["runs"]                                            # doctest: +SKIP
[]
"""

from __future__ import annotations

import logging
import math
import os
import re
from datetime import datetime
from typing import Any, BinaryIO, Callable

from jupyter_flow._version import __version__
from jupyter_flow.artifacts import ArtifactStore, validate_digest
from jupyter_flow.core.errors import ArtifactError, ArtifactUntrusted, FlowError
from jupyter_flow.core.secrets import redact, redact_text
from jupyter_flow.deploy import cluster as clusters
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
from jupyter_flow.store import CancelConflict, RunNotFound, ScheduleExists, ScheduleNotFound, Store
from jupyter_flow.store.records import Record, RunRecord, TaskRecord

log = logging.getLogger("jupyter_flow.server")

# Where "open" puts a batch execution's notebook, under the server root.
EXECUTED_DIR = "flow-executed"
# Task fields too large for listings; ``tasks/{id}/logs`` serves them.
LOG_FIELDS = ("stdout", "stderr", "traceback")


def to_json(value: Any) -> Any:
    """Store records as JSON-ready values (timestamps as ISO 8601 strings in UTC)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Record):
        return to_json(value.to_dict())
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def _task_summary(task: TaskRecord) -> dict:
    return _hide_secrets({k: v for k, v in task.to_dict().items() if k not in LOG_FIELDS})


# Fields of run and task records that hold user values by name. The store never keeps a
# secret-named value in plain text there; redacting again on the way out is defence in
# depth (rows written by older versions). Record fields themselves ("key": the cache
# key) are not user names, so only these sub-dicts are redacted.
_VALUE_FIELDS = ("params", "globals", "shell")


def _hide_secrets(record: Record | dict) -> dict:
    """A run or task record, as a dict, with secret-named parameter and captured values redacted."""
    out = record.to_dict() if isinstance(record, Record) else dict(record)
    if isinstance(out.get("params"), dict):
        out["params"] = redact(out["params"])
    for holder in ("components", "provenance"):
        part = out.get(holder)
        if isinstance(part, dict) and any(isinstance(part.get(f), dict) for f in _VALUE_FIELDS):
            out[holder] = {k: redact(v) if k in _VALUE_FIELDS and isinstance(v, dict) else v
                           for k, v in part.items()}
    return out


BATCH_FIELDS = frozenset({"notebook", "params", "grid", "parallel", "cluster", "name"})
SCHEDULE_FIELDS = BATCH_FIELDS | {"cron", "misfire", "timezone"}


def notebook_path(notebook: Any, root_dir: str, *, field: str = "notebook") -> str:
    """The real path of a notebook given relative to the server root, or absolute (as runs
    record it) but under the root; 422 naming ``field`` otherwise.

    >>> notebook_path("work/a.ipynb", "/srv/nb")
    '/srv/nb/work/a.ipynb'
    >>> notebook_path("../a.ipynb", "/srv/nb")
    Traceback (most recent call last):
    ...
    jupyter_flow.server.errors.Unprocessable: 'notebook' must be inside the server's root directory
    """
    if not isinstance(notebook, str) or not notebook.endswith(".ipynb"):
        raise Unprocessable(f"'{field}' must be the path of an .ipynb file under the server root")
    limits.check_length(notebook, field, limits.MAX_PATH_LENGTH)
    root = os.path.realpath(root_dir)
    path = os.path.realpath(notebook if os.path.isabs(notebook) else os.path.join(root, notebook))
    if os.path.commonpath([root, path]) != root:
        raise Unprocessable(f"'{field}' must be inside the server's root directory")
    return path


def _launch_fields(body: Any, root_dir: str, *, allowed: frozenset, name_limit: int) -> dict:
    """The fields a batch and a schedule share, checked against the API's limits: the
    notebook's real path, params, grid, parallel, cluster and name (422 naming the field)."""
    if not isinstance(body, dict):
        raise Unprocessable("the body must be a JSON object with at least 'notebook'")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise Unprocessable(f"unknown field(s) {[name[:40] for name in unknown[:10]]}; allowed: {sorted(allowed)}")
    path = notebook_path(body.get("notebook"), root_dir)
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
    for field_name, limit in (("cluster", limits.MAX_NAME_LENGTH), ("name", name_limit)):
        if body.get(field_name) is not None:
            if not isinstance(body[field_name], str):
                raise Unprocessable(f"'{field_name}' must be a string")
            limits.check_length(body[field_name], field_name, limit)
    return {"notebook": path, "params": body.get("params") or None, "grid": grid, "parallel": parallel,
            "cluster": body.get("cluster"), "name": body.get("name")}


def _public_schedule(schedule: dict) -> dict:
    """A schedule as the API shows it: times in ISO 8601, secret-named values redacted."""
    out = dict(schedule)
    for field_name in ("params", "grid"):
        if isinstance(out.get(field_name), dict):
            out[field_name] = redact(out[field_name])
    return to_json(out)


def _hide_secret_defaults(params: list[dict]) -> list[dict]:
    """Declared parameters with the defaults of secret-named ones hidden (a notebook may
    carry a development token as its default)."""
    return [{**p, "default": redact(p.get("default"), p["name"])} for p in params]


def _profile_settings(value: Any) -> Any:
    """Cluster profile settings as JSON: secrets hidden (``core.secrets.redact``), objects
    that are not JSON shown by their repr (with its secret-looking parts hidden too)."""
    value = redact(value)
    if isinstance(value, dict):
        return {str(k): _profile_settings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_profile_settings(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return redact_text(repr(value))


_DIGEST = re.compile(r"[0-9a-f]{64}")


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
        self.stopping = False  # set by FlowApp.stop_extension: handlers answer 503 from then on

    @property
    def artifacts(self) -> ArtifactStore:
        """The artifact store, opened so that nothing is ever unpickled in the server: it checks
        signatures with the server user's keyring (and serves or previews, in a child
        process, only pickles that user trusts)."""
        if self._artifacts is None:
            from jupyter_flow.artifacts import artifact_store
            from jupyter_flow.artifacts.keyring import KeyringError, load_keyring

            try:
                keyring = load_keyring()
            except KeyringError as err:
                log.warning("jupyter_flow: pickled artifacts are neither previewed nor served: %s", err)
                keyring = None
            self._artifacts = artifact_store(self._artifacts_url, keyring=keyring, unpickle=False)
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

    # -- the owner rule ---------------------------------------------------------------------
    #
    # The server acts for its Jupyter user (``core.provenance.flow_user()``: the hub user of
    # a JupyterHub single-user server, else the OS user it runs as; its kernels and batches
    # are that user's too). Runs, their tasks, logs, graphs, artifacts and lineage, and
    # schedules belong to the user who started or created them (``run.owner``; the OS user
    # stays in ``run.user``); only that user's servers, or a request the authorizer grants
    # "admin", may read or change them.

    def owns(self, user: str | None, is_admin: bool) -> bool:
        """Whether this server's requests may read or change an object of ``user``."""
        return is_admin or (self.server_user is not None and user == self.server_user)

    def _only_owner(self, what: str, user: str | None, is_admin: bool, action: str) -> None:
        if not self.owns(user, is_admin):
            raise Forbidden(f"{what} belongs to user {user!r}; only its owner or a jupyter_flow "
                            f"admin may {action} it")

    def _viewed_user(self, is_admin: bool) -> str | None:
        """The user whose runs a listing shows (None: everyone's, for an admin)."""
        return None if is_admin else (self.server_user or "")

    def list_runs(self, *, limit: int, is_admin: bool = False, **filters: Any) -> dict:
        """A page of this server's user's runs (everyone's for an admin), newest first,
        plus where to go next.

        ``cursor`` is the change-feed position taken *before* the page was read, so
        polling ``changes(cursor)`` afterwards misses nothing that changed meanwhile.
        """
        cursor = self.store.feed_cursor()
        owner = filters.pop("owner", None)
        if owner == "me":
            owner = self.server_user or ""
        viewed = self._viewed_user(is_admin)
        if viewed is not None and owner is not None and owner != viewed:
            runs = []  # another user's runs: none this user may see
        else:
            runs = self.store.list_runs(limit=limit, owner=owner if viewed is None else viewed, **filters)
        next_before = runs[-1].id if len(runs) == limit else None
        return {"runs": to_json([_hide_secrets(run) for run in runs]), "next_before": next_before, "cursor": cursor}

    def changes(self, cursor: int, limit: int, is_admin: bool = False) -> dict:
        """Runs changed after ``cursor`` in commit order and the cursor to poll with next."""
        runs, new_cursor = self.store.changes_since(cursor, limit, owner=self._viewed_user(is_admin))
        return {"runs": to_json([_hide_secrets(run) for run in runs]), "cursor": new_cursor}

    def _run(self, run_id: str, is_admin: bool | None = None, action: str = "read") -> RunRecord:
        """The run; Forbidden unless it is this server's user's (or ``is_admin``; None: unchecked)."""
        run = self.store.get_run(run_id)
        if run is None:
            raise NotFound(f"no run {run_id!r} in the store")
        if is_admin is not None:
            self._only_owner(f"run {run_id}", run.owner, is_admin, action)
        return run

    def get_run(self, run_id: str, is_admin: bool = False) -> dict:
        return to_json(_hide_secrets(self._run(run_id, is_admin)))

    def run_tasks(self, run_id: str, changed_since: int | None = None, is_admin: bool = False) -> dict:
        self._run(run_id, is_admin)
        tasks = self.store.get_tasks(run_id, changed_since=changed_since)
        return {"run_id": run_id, "tasks": to_json([_task_summary(t) for t in tasks])}

    def cancel_run(self, run_id: str, requested_by: str, *, is_admin: bool) -> dict:
        """Record a cancel request for ``run_id`` and its unfinished child runs.

        Allowed when the run was started by the OS user this server runs as (kernels and
        terminals of this server are that user), or when ``is_admin``. The process that
        owns the run polls for the request and cancels within a second.
        """
        self._run(run_id, is_admin, "cancel")
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
        from jupyter_flow.batch.runner import batch

        fields = _launch_fields(body, root_dir, allowed=BATCH_FIELDS, name_limit=limits.MAX_NAME_LENGTH)
        try:
            # batch() checks params and grid against the notebook's declarations first
            # (validate_params), so a refused value records nothing.
            run = batch(fields["notebook"], params=fields["params"], grid=fields["grid"],
                        parallel=fields["parallel"], cluster=fields["cluster"], name=fields["name"],
                        wait=False, db_url=db_url, artifacts_url=artifacts_url, keep_cluster=False)
        except FlowError as err:
            raise Unprocessable(str(err)) from None
        return self.get_run(run.id)

    def open_executed_notebook(self, run_id: str, root_dir: str, is_admin: bool = False) -> dict:
        """Write the executed notebook of a batch execution (a notebook run's
        ``outputs.output_notebook`` artifact, secrets already redacted) under the server
        root as ``flow-executed/<notebook>.<run id>.ipynb`` and return that path (relative to
        the root, for JupyterLab to open). Not a hidden folder: Jupyter's contents manager
        refuses hidden files by default. Written once; a second call returns the same file.
        """
        run = self._run(run_id, is_admin)
        digest = (run.get("outputs") or {}).get("output_notebook")
        if not digest:
            raise NotFound(f"run {run_id} has no executed notebook (only a batch's executions store one, "
                           "once they end)")
        digest = self._digest(digest)
        try:
            header, payload = self.artifacts.payload(digest)
        except ArtifactError as err:
            raise NotFound(str(err)) from None
        if header.get("sealed") or header.get("serializer") != "bytes":
            raise Conflict(f"artifact {digest} of run {run_id} is not a stored notebook")
        stem = os.path.splitext(os.path.basename(run.get("notebook") or "notebook"))[0]
        stem = re.sub(r"[^0-9A-Za-z._-]+", "_", stem).strip("._") or "notebook"
        relative = f"{EXECUTED_DIR}/{stem}.{run_id}.ipynb"
        folder = os.path.join(os.path.abspath(root_dir), EXECUTED_DIR)
        target = os.path.join(folder, os.path.basename(relative))
        if not os.path.exists(target):
            os.makedirs(folder, exist_ok=True)
            temp = f"{target}.{os.getpid()}.tmp"
            with open(temp, "wb") as out:
                out.write(payload)
            os.replace(temp, target)  # a reader never sees half a notebook
        return {"run_id": run_id, "path": relative, "artifact": digest}

    # -- schedules ------------------------------------------------------------------------

    def list_schedules(self) -> dict:
        """Every schedule, with its next firing, last run and last misfire decision."""
        return {"schedules": [_public_schedule(s) for s in self.store.list_schedules()]}

    def _schedule(self, ident: str) -> dict:
        schedule = self.store.get_schedule(ident)
        if schedule is None:
            raise NotFound(f"no schedule {ident!r} in the store")
        return schedule

    def get_schedule(self, ident: str) -> dict:
        return _public_schedule(self._schedule(ident))

    def create_schedule(self, body: Any, root_dir: str, *, created_by: str | None = None) -> dict:
        """A new schedule firing a batch of a notebook under the server's root directory;
        the same validation as ``jf.schedule`` (cron, timezone, misfire, parameters)."""
        from jupyter_flow.batch import schedules

        fields = _launch_fields(body, root_dir, allowed=SCHEDULE_FIELDS, name_limit=limits.MAX_SCHEDULE_NAME_LENGTH)
        cron = body.get("cron")
        if not isinstance(cron, str) or not cron.strip():
            raise Unprocessable("'cron' is required: a cron expression such as \"0 3 * * *\" (5 fields, or 6 "
                                "with seconds first)")
        limits.check_length(cron, "cron", limits.MAX_CRON_LENGTH)
        options = {}
        for field_name, limit in (("misfire", 16), ("timezone", limits.MAX_TIMEZONE_LENGTH)):
            if body.get(field_name) is not None:
                if not isinstance(body[field_name], str):
                    raise Unprocessable(f"'{field_name}' must be a string")
                options[field_name] = limits.check_length(body[field_name], field_name, limit)
        try:
            schedule = schedules.schedule(
                fields["notebook"], cron, params=fields["params"], grid=fields["grid"],
                parallel=fields["parallel"], cluster=fields["cluster"], name=fields["name"],
                created_by=created_by, store=self.store, **options,
            )
        except ScheduleExists as err:  # a FlowError too: this one is a conflict, not bad input
            raise Conflict(str(err)) from None
        except FlowError as err:
            raise Unprocessable(str(err)) from None
        return self.get_schedule(schedule["id"])

    def _owned_schedule(self, ident: str, is_admin: bool, action: str) -> dict:
        schedule = self._schedule(ident)
        self._only_owner(f"schedule {schedule['name']!r}", schedule.get("created_by"), is_admin, action)
        return schedule

    def update_schedule(self, ident: str, body: Any, is_admin: bool = False) -> dict:
        """Pause (``{"paused": true}``) or resume a schedule; resuming fires next at the
        first cron time from now (no misfire for the paused time)."""
        from jupyter_flow.batch import schedules

        if not isinstance(body, dict) or set(body) != {"paused"} or not isinstance(body["paused"], bool):
            raise Unprocessable('the body must be {"paused": true} or {"paused": false}')
        schedule = self._owned_schedule(ident, is_admin, "pause" if body["paused"] else "resume")
        change = schedules.pause_schedule if body["paused"] else schedules.resume_schedule
        try:
            change(schedule["id"], store=self.store)
        except ScheduleNotFound:  # removed meanwhile
            raise NotFound(f"no schedule {ident!r} in the store") from None
        return self.get_schedule(schedule["id"])

    def delete_schedule(self, ident: str, is_admin: bool = False) -> None:
        """Remove a schedule; the runs it fired stay."""
        schedule = self._owned_schedule(ident, is_admin, "delete")
        if not self.store.delete_schedule(schedule["id"]):
            raise NotFound(f"no schedule {ident!r} in the store")

    # -- notebooks ------------------------------------------------------------------------

    def notebook_params(self, notebook: str, root_dir: str) -> dict:
        """The parameters a notebook declares (``jf.param`` calls and the parameters
        cell): type, default, bounds, choices and help, for the launch form."""
        from jupyter_flow.batch.declared import declared_params

        path = notebook_path(notebook, root_dir, field="path")
        if not os.path.isfile(path):
            raise NotFound(f"notebook {notebook!r} not found under the server's root directory")
        try:
            params = declared_params(path)
        except FlowError as err:
            raise Unprocessable(str(err)) from None
        return {"notebook": path, "params": to_json(_hide_secret_defaults(params))}

    # -- tasks ----------------------------------------------------------------------------

    def _task(self, task_id: str, is_admin: bool) -> TaskRecord:
        task = self.store.get_task(task_id)
        if task is None:
            raise NotFound(f"no task {task_id!r} in the store")
        self._only_owner(f"task {task_id} (of run {task.run_id})", self._user_of(task.run_id), is_admin, "read")
        return task

    def _user_of(self, run_id: str) -> str | None:
        """The user who started ``run_id`` (None: the run is gone)."""
        run = self.store.get_run(run_id)
        return None if run is None else run.owner

    def get_task(self, task_id: str, is_admin: bool = False) -> dict:
        return to_json(_task_summary(self._task(task_id, is_admin)))

    def task_logs(self, task_id: str, is_admin: bool = False) -> dict:
        """stdout, stderr, error and traceback of a task; each keeps its last 256 KiB.

        A task restored from the cache printed nothing itself: its logs are those of the
        execution that produced the cached value (``provenance.cached_from``), named by
        ``from_task``, when that task is still stored and this user may read it.
        """
        task = self._task(task_id, is_admin)
        source, from_task = task, None
        producer_id = (task.provenance or {}).get("cached_from")
        if task.status == "CACHED" and producer_id and producer_id != task_id:
            producer = self.store.get_task(producer_id)
            # Another user's output, restored into this user's run, keeps that user's logs private.
            if producer is not None and self.owns(self._user_of(producer.run_id), is_admin):
                source, from_task = producer, producer_id
        logs: dict[str, Any] = {"task_id": task_id, "from_task": from_task,
                                "from_run": source.run_id if from_task else None, "truncated": False}
        for field, text in (("stdout", source.stdout), ("stderr", source.stderr), ("error", source.error),
                            ("traceback", source.traceback)):
            text = text or ""
            if len(text) > limits.LOG_LIMIT:
                text = text[-limits.LOG_LIMIT:]
                logs["truncated"] = True
            logs[field] = text
        return logs

    # -- graphs ---------------------------------------------------------------------------

    def list_graphs(self, *, limit: int, before: str | None = None, is_admin: bool = False) -> dict:
        """Each run's graph, summarised (a graph's id is its run's id)."""
        runs = self.store.list_runs(limit=limit, before=before, owner=self._viewed_user(is_admin))
        graphs = [
            {
                "id": run.id,
                "name": run.name,
                "kind": run.kind,
                "status": run.status,
                "created_at": run.created_at,
                "nodes": sum(run.task_counts.values()),
            }
            for run in runs
        ]
        next_before = runs[-1].id if len(runs) == limit else None
        return {"graphs": to_json(graphs), "next_before": next_before}

    def get_graph(self, run_id: str, is_admin: bool = False) -> dict:
        """A run's task graph: nodes (tasks) and edges (upstream task -> task)."""
        run = self._run(run_id, is_admin)
        tasks = self.store.get_tasks(run_id)
        by_node = {task.node: task.id for task in tasks}
        nodes = [
            {
                "id": task.id,
                "node": task.node,
                "name": task.name,
                "index": task.index,
                "status": task.status,
                "cached": task.cached,
                "key": task.key,
                "outputs": task.outputs or {},
            }
            for task in tasks
        ]
        edges = [
            {"source": by_node[upstream], "target": task.id}
            for task in tasks
            for upstream in task.upstream or []
            if upstream in by_node
        ]
        positions = (run.graph or {}).get("targets") or []
        targets = [by_node[str(p)] for p in positions if str(p) in by_node]
        return to_json(
            {"id": run_id, "name": run.name, "status": run.status, "nodes": nodes,
             "edges": edges, "targets": targets}
        )

    # -- artifacts and lineage ------------------------------------------------------------

    @staticmethod
    def _digest(digest: str) -> str:
        try:
            return validate_digest(digest)
        except ValueError as err:
            raise BadRequest(str(err)) from None

    def _check_artifact_reader(self, digest: str, is_admin: bool) -> list[TaskRecord]:
        """The artifact's producer tasks; Forbidden when each of them is another user's (an
        output that this server's user also produced, or restored from the cache in a run
        of theirs, is theirs to read too; one no run records is readable by its hash alone)."""
        producers = self.store.artifact_runs(digest)
        users = {self._user_of(task.run_id) for task in producers}
        if producers and not is_admin and not any(self.owns(user, False) for user in users):
            raise Forbidden(f"artifact {digest} was produced by runs of user(s) {sorted(map(str, users))}; only "
                            "their owner or a jupyter_flow admin may read it")
        return producers

    def artifact_preview(self, digest: str, max_bytes: int, is_admin: bool = False) -> dict:
        """A bounded preview (json, text, table, image or repr) plus registry facts."""
        digest = self._digest(digest)
        if not self.artifacts.exists(digest):
            raise NotFound(f"no artifact {digest} in the artifact store")
        producers = self._check_artifact_reader(digest, is_admin)
        try:
            preview = self.artifacts.preview(digest, max_bytes=max_bytes)
        except ArtifactError as err:
            raise NotFound(str(err)) from None
        record = self.store.get_artifact(digest) or {}
        return to_json(
            {"hash": digest, **preview, "created_at": record.get("created_at"),
             "producers": [task.id for task in producers]}
        )

    def artifact_download(self, digest: str, is_admin: bool = False) -> tuple[BinaryIO, int, str]:
        """An open file at the serialized value (what its serializer wrote), its length and
        that serializer's name; the caller streams it in pieces and closes it.

        A pickle is served only when it carries a valid signature of a key the server's user
        holds or trusts (a client that unpickles a download trusts the server); sealed
        artifacts are never served.
        """
        digest = self._digest(digest)
        if not self.artifacts.exists(digest):
            raise NotFound(f"no artifact {digest} in the artifact store")
        self._check_artifact_reader(digest, is_admin)
        try:
            header, file, length = self.artifacts.open_payload(digest)
        except ArtifactUntrusted as err:
            raise Conflict(f"{err} It is not served for download.") from None
        except ArtifactError as err:
            raise NotFound(str(err)) from None
        if header.get("sealed"):
            file.close()
            raise Conflict(f"artifact {digest} is sealed (encrypted with its owner's key, e.g. a graph "
                           "snapshot, which may hold secrets); it is not served for download")
        return file, length, str(header.get("serializer"))

    def lineage(self, ident: str, is_admin: bool = False) -> dict:
        """Where a task's inputs or an artifact came from, back to the graph's sources
        (``engine.lineage.lineage_graph``; at most 2,000 tasks)."""
        from jupyter_flow.engine.lineage import lineage_graph

        if self.store.get_task(ident) is not None:
            self._task(ident, is_admin)
        elif _DIGEST.fullmatch(ident):
            self._check_artifact_reader(ident, is_admin)

        try:
            graph = lineage_graph(self.store, ident, artifact_exists=self.artifacts.exists, limit=limits.LINEAGE_LIMIT)
        except FlowError as err:
            raise NotFound(str(err)) from None
        return to_json(graph)

    # -- clusters -------------------------------------------------------------------------

    def clusters(self) -> dict:
        """Clusters in use (registered by the processes that own them) and the profiles."""
        profiles = {
            name: _profile_settings({k: spec.get(k) for k in ("module", "class", "kwargs", "adapt")})
            for name, spec in clusters.profiles().items()
        }
        return {
            "clusters": to_json(self.store.list_clusters(active_only=True)),
            "profiles": profiles,
            "default_profile": clusters.default_profile(),
        }
