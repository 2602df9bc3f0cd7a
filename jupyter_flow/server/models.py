"""Typed records of the REST API: what each route answers and what each JSON body may hold.

One schema for the whole API: ``schema.py`` builds ``openapi.json`` and the sidebar's
``js/src/generated/api-types.ts`` from these models, and the handlers validate request
bodies with them (``parse_body``: 422 naming the field). The service keeps returning plain
dicts (the served JSON is what it always was); the tests check real responses against these
models, so a field served but not described here fails a test.

Request models check types, required fields and unknown fields only. The limits the API
states (lengths, ranges, grid size) are in the schema as documentation and are checked by
``FlowService`` with its own messages, as before.

>>> parse_body(SchedulePatch, {"paused": "yes"})
Traceback (most recent call last):
...
jupyter_flow.server.errors.Unprocessable: 'paused': input should be a valid boolean (got "yes")
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import Enum
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from jupyter_flow.core.status import FailureKind, RunKind, RunStatus, TaskStatus
from jupyter_flow.server import limits
from jupyter_flow.server.errors import Unprocessable


class MisfirePolicy(str, Enum):
    """What happens to firings missed while no scheduler ran: skip them, fire once, or fire
    each (oldest first, at most 100)."""

    SKIP = "skip"
    ONCE = "once"
    CATCHUP = "catchup"


class ApiModel(BaseModel):
    """A record of the API: exactly these fields (a served field not described here is a
    schema that drifted; an unknown field in a request is a 422)."""

    model_config = ConfigDict(extra="forbid", strict=True)


def _limit(**schema: Any) -> Any:
    """JSON-schema keywords the service enforces itself (documented, not checked here)."""
    return {"json_schema_extra": schema}


# -- errors -----------------------------------------------------------------------------


class Error(ApiModel):
    """Every 4xx/5xx answer: a message naming what is wrong and what to do."""

    message: str
    reason: str | None


class StoreUnavailable(ApiModel):
    """503: the store cannot be opened or stopped answering."""

    message: str = Field(description="what is wrong with the store, naming it, and what to do")
    reason: str | None
    store: str = Field(description="the store: a SQLite file's path, or the database URL with its password hidden")


class Health(ApiModel):
    status: Literal["ok"]
    version: str
    store: str = Field(description="SQL dialect: sqlite or postgresql")
    time: datetime
    heartbeat_timeout: float


# -- runs and tasks ---------------------------------------------------------------------


class Run(ApiModel):
    """A run with its task counts by status (its own tasks and its descendant runs')."""

    id: str
    name: str | None
    kind: RunKind
    status: RunStatus
    parent_id: str | None
    resumed_from: str | None
    owner_id: str | None
    owner: str | None = Field(description="the Jupyter user the run belongs to (the hub user on JupyterHub)")
    user: str | None = Field(description="the OS user that ran it")
    host: str | None
    params: dict[str, Any] | None = Field(description="secret-named values are redacted")
    metrics: dict[str, Any] | None = Field(description="jf.record values: {name: value}")
    graph: dict[str, Any] | None
    snapshot: str | None
    cluster: str | None
    environment: dict[str, Any] | None
    outputs: dict[str, str] | None = Field(
        description="what the run as a whole produced: {name: artifact hash}; a batch execution's output_notebook"
    )
    notebook: str | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    cancel_requested_at: datetime | None
    cancel_requested_by: str | None
    seq: int = Field(description="change-feed position of the run's last change")
    schedule_id: str | None = Field(description="the schedule that fired this batch run")
    scheduled_for: datetime | None = Field(description="the cron time the firing was for")
    task_counts: dict[str, int] = Field(description="number of tasks by status")
    pinned: bool


class Task(ApiModel):
    """A task (logs omitted: ``tasks/{id}/logs`` serves them)."""

    id: str
    run_id: str
    node: str
    name: str
    index: int | None
    status: TaskStatus
    cached: bool
    reason: str | None
    key: str | None
    components: dict[str, Any] | None
    attempts: int
    provenance: dict[str, Any] | None
    outputs: dict[str, str] | None = Field(description="{output name: artifact hash}")
    upstream: list[str] | None
    resources: dict[str, float] | None = Field(description="{resource name: amount}, e.g. {\"GPU\": 1}")
    error: str | None
    failure_kind: FailureKind | None = Field(
        description="why the task did not succeed (null unless FAILED, CANCELED or SKIPPED)")
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    duration: float | None
    seq: int
    metrics: dict[str, Any] | None = Field(description="jf.record values recorded inside the op: {name: value}")


class RunPage(ApiModel):
    runs: list[Run]
    next_before: str | None = Field(description="pass as `before` for the next page; null on the last page")
    cursor: int = Field(description="change-feed position taken before this page was read")


class RunChanges(ApiModel):
    runs: list[Run] = Field(description="runs changed after the cursor, oldest change first")
    cursor: int = Field(description="pass as `changed_since` to get later changes")


class TaskList(ApiModel):
    run_id: str
    tasks: list[Task]


class TaskLogs(ApiModel):
    task_id: str
    stdout: str
    stderr: str
    error: str
    traceback: str
    truncated: bool = Field(description="a field kept only its last 256 KiB")
    from_task: str | None = Field(
        description="for a task restored from the cache (status CACHED): the task whose execution produced the "
        "cached value, whose logs these are; null when the logs are the task's own (or that task is gone, or is "
        "another user's)"
    )
    from_run: str | None = Field(description="the run of from_task")


class ExecutedNotebook(ApiModel):
    run_id: str
    path: str = Field(description="relative to the server root, e.g. flow-executed/sweep.01J….ipynb")
    artifact: str = Field(description="the executed notebook's artifact hash")


# -- graphs, artifacts, lineage ----------------------------------------------------------


class GraphSummary(ApiModel):
    id: str
    name: str | None
    kind: RunKind
    status: RunStatus
    created_at: datetime
    nodes: int


class GraphPage(ApiModel):
    graphs: list[GraphSummary]
    next_before: str | None


class Edge(ApiModel):
    source: str
    target: str


class GraphNode(ApiModel):
    id: str
    node: str
    name: str
    index: int | None
    status: TaskStatus
    cached: bool
    key: str | None
    outputs: dict[str, str]


class Graph(ApiModel):
    """A run's task graph: nodes (tasks) and edges (upstream task -> task)."""

    id: str
    name: str | None
    status: RunStatus
    nodes: list[GraphNode]
    edges: list[Edge]
    targets: list[str]


class ArtifactPreview(ApiModel):
    hash: str = Field(pattern="^[0-9a-f]{64}$")
    type: str
    serializer: str
    size: int
    kind: Literal["json", "text", "table", "image", "repr", "untrusted"]
    data: Any = Field(
        description="json: the value; text/repr: a string; table: {columns, records, rows, total_rows, "
        "total_columns}; image: {mime, base64}; untrusted: a string saying why the pickle was not decoded"
    )
    truncated: bool
    created_at: datetime | None
    producers: list[str] = Field(description="ids of the tasks that output it")


class LineageRoot(ApiModel):
    type: Literal["task", "artifact"]
    id: str


class LineageTask(ApiModel):
    id: str
    run_id: str
    name: str
    index: int | None
    status: TaskStatus
    cached: bool
    key: str | None
    outputs: dict[str, str] | None


class Lineage(ApiModel):
    root: LineageRoot
    tasks: list[LineageTask]
    artifacts: list[str]
    edges: list[Edge]
    truncated: bool


# -- clusters ---------------------------------------------------------------------------


class ClusterInfo(ApiModel):
    """A cluster in use, registered by the process that owns it."""

    id: str
    owner_id: str | None
    profile: str | None
    address: str | None
    dashboard: str | None
    created_at: datetime
    closed_at: datetime | None


class Clusters(ApiModel):
    clusters: list[ClusterInfo]
    profiles: dict[str, dict[str, Any]] = Field(description="configured cluster profiles (secrets hidden)")
    default_profile: str


# -- schedules and notebooks ------------------------------------------------------------


class Misfire(ApiModel):
    """The last time firings were missed (the scheduler was down longer than its grace) and
    what the misfire policy did."""

    at: datetime = Field(description="when the scheduler noticed")
    missed: int = Field(ge=0, description="cron times missed")
    policy: MisfirePolicy
    fired: int = Field(ge=0, description="batch runs fired for them")


class LastRun(ApiModel):
    """The batch run of a schedule's last firing."""

    id: str
    status: RunStatus
    ended_at: datetime | None


class Schedule(ApiModel):
    id: str
    name: str
    notebook: str = Field(description="absolute path")
    cron: str
    timezone: str
    params: dict[str, Any] | None = Field(description="secret-named values are redacted")
    grid: dict[str, list[Any]] | None = Field(description="secret-named values are redacted")
    parallel: int
    cluster: str | None
    misfire: MisfirePolicy
    paused: bool
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    next_fire_at: datetime | None = Field(description="next cron time (UTC); null while paused")
    last_fire_at: datetime | None
    last_run_id: str | None
    last_misfire: Misfire | None
    last_run: LastRun | None


class ScheduleList(ApiModel):
    schedules: list[Schedule]


class DeclaredParam(ApiModel):
    """A parameter a notebook declares (``jf.param(...)``, or ``x = 1`` in its parameters cell)."""

    name: str
    type: Literal["int", "float", "bool", "str"] | None = Field(
        description="null when the default is not a literal of these types (any value is accepted then)"
    )
    default: Any = Field(description="the notebook's value (secret-named ones redacted)")
    min: float | None
    max: float | None
    choices: list[Any] | None
    help: str | None


class NotebookParams(ApiModel):
    notebook: str = Field(description="absolute path")
    params: list[DeclaredParam]


# -- request bodies ---------------------------------------------------------------------

_PARAM_NAMES = {"propertyNames": {"maxLength": limits.MAX_NAME_LENGTH}}
_GRID = "parameter name -> list of values; one execution per point of the cartesian product (at most " \
    f"{limits.MAX_BATCH_POINTS} points)"


class BatchRequest(ApiModel):
    """POST batches: run a notebook now, once per grid point (papermill)."""

    notebook: str = Field(description="path of an .ipynb file relative to the server root, or absolute under it",
                          **_limit(maxLength=limits.MAX_PATH_LENGTH))
    params: dict[str, Any] | None = Field(None, description="fixed parameter values", **_limit(**_PARAM_NAMES))
    grid: dict[str, list[Any]] | None = Field(
        None, description=_GRID,
        **_limit(additionalProperties={"type": "array", "minItems": 1}, **_PARAM_NAMES))
    parallel: int = Field(1, **_limit(minimum=1, maximum=limits.MAX_BATCH_PARALLEL))
    cluster: str | None = Field(None, description="profile or scheduler address for the notebooks' %%flow ops",
                                **_limit(maxLength=limits.MAX_NAME_LENGTH))
    name: str | None = Field(None, **_limit(maxLength=limits.MAX_NAME_LENGTH))


class ScheduleRequest(BatchRequest):
    """POST schedules: run a notebook as a batch on a cron schedule."""

    params: dict[str, Any] | None = Field(
        None, description="fixed parameter values of every firing (secret-named values are redacted in responses)",
        **_limit(**_PARAM_NAMES))
    name: str | None = Field(None, description="unique; default: the notebook's file name without .ipynb",
                             **_limit(maxLength=limits.MAX_SCHEDULE_NAME_LENGTH))
    cron: str = Field(
        description='cron expression: 5 fields (minute hour day month weekday), or 6 with seconds first '
        '("*/2 * * * * *": every 2 s)', **_limit(maxLength=limits.MAX_CRON_LENGTH))
    timezone: str | None = Field("UTC", description="IANA time zone the cron expression is read in",
                                 **_limit(maxLength=limits.MAX_TIMEZONE_LENGTH))
    misfire: MisfirePolicy | None = Field(MisfirePolicy.ONCE)


class SchedulePatch(ApiModel):
    """PATCH schedules/{id}: pause or resume."""

    paused: bool


class EmptyBody(ApiModel):
    """POST runs/{id}/cancel and runs/{id}/notebook take no fields."""


# Every named schema of the API, in the order openapi.json lists them.
COMPONENTS: list[type[BaseModel]] = [
    Error, StoreUnavailable, Health, Run, Task, RunPage, RunChanges, TaskList, TaskLogs, GraphSummary,
    GraphPage, Edge, GraphNode, Graph, ArtifactPreview, LineageRoot, LineageTask, Lineage, ClusterInfo,
    Clusters, Misfire, LastRun, Schedule, ScheduleList, DeclaredParam, NotebookParams, ExecutedNotebook,
    BatchRequest, ScheduleRequest, SchedulePatch, EmptyBody,
]

Body = TypeVar("Body", bound=BaseModel)


def _where(loc: tuple) -> str:
    return ".".join(str(part) for part in loc)


def _message(model: type[BaseModel], error: dict) -> str:
    """One pydantic error as this API words its 422s: the field first, then what it expects."""
    kind, loc = error["type"], error["loc"]
    if not loc and kind in ("model_type", "model_attributes_type", "dict_type"):
        required = [name for name, field in model.model_fields.items() if field.is_required()]
        needs = f" with at least {', '.join(map(repr, required))}" if required else ""
        return f"the body must be a JSON object{needs}"
    if kind == "extra_forbidden":
        return f"unknown field(s) [{str(loc[-1])[:40]!r}]; allowed: {sorted(model.model_fields)}"
    if kind == "missing":
        return f"{_where(loc)!r} is required"
    got = json.dumps(error.get("input"), default=str)
    got = got if len(got) <= 40 else got[:37] + "..."
    return f"{_where(loc)!r}: {error['msg'][0].lower()}{error['msg'][1:]} (got {got})"


def parse_body(model: type[Body], body: Any) -> Body:
    """``body`` (a parsed JSON value) as ``model``; ``Unprocessable`` (422) naming the first
    field that is missing, unknown or of the wrong type.

    >>> parse_body(SchedulePatch, {"paused": True}).paused
    True
    """
    try:
        # Through JSON, strictly: "2" is not an integer, "yes" not a boolean, and enums and
        # date-times are read as the wire carries them.
        return model.model_validate_json(json.dumps(body), strict=True)
    except ValidationError as err:
        raise Unprocessable(_message(model, err.errors()[0])) from None
