"""The OpenAPI document of the REST API and the sidebar's TypeScript types, made from
``models``: the paths are written here, next to the models; every schema under
``components`` is a model's JSON schema.

Regenerate both files after changing a model or a path (a test fails until they match)::

    python -m jupyter_flow.server.schema

>>> document = openapi_document()
>>> document["components"]["schemas"]["Run"]["properties"]["status"]
{'$ref': '#/components/schemas/RunStatus'}
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, models_json_schema

from jupyter_flow.core.status import RunKind, RunStatus
from jupyter_flow.server import limits, models
from jupyter_flow.server.typescript import typescript_module

API_VERSION = "0.1.0"
REF = "#/components/schemas/{model}"
ROOT = Path(__file__).resolve().parents[2]
OPENAPI_FILE = Path("jupyter_flow/server/openapi.json")
TYPESCRIPT_FILE = Path("js/src/generated/api-types.ts")
REGENERATE = "python -m jupyter_flow.server.schema"

JSON_RULES = (
    "Every string in the body must be UTF-8 text without NUL characters; objects and arrays nest at most "
    f"{limits.MAX_JSON_DEPTH} levels; numbers must be finite."
)


def ref(model: type[BaseModel]) -> dict:
    return {"$ref": REF.format(model=model.__name__)}


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def answer(description: str, *schemas: type[BaseModel] | dict) -> dict:
    """A response with a JSON body: one model, a JSON schema, or any of several models."""
    parts = [ref(s) if isinstance(s, type) else s for s in schemas]
    return {"description": description, "content": _json(parts[0] if len(parts) == 1 else {"anyOf": parts})}


def error(description: str) -> dict:
    return answer(description, models.Error)


def request(model: type[BaseModel], *, required: bool = True, description: str | None = None) -> dict:
    body: dict[str, Any] = {"required": required, "content": _json(ref(model))}
    if description:
        body["description"] = description
    return body


def path_param(name: str, description: str, schema: dict | None = None) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": schema or {"type": "string"},
            "description": description}


def query(name: str, schema: dict, description: str, *, required: bool = False, **extra: Any) -> dict:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description,
            **extra}


def operation(operation_id: str, summary: str, *, responses: dict, description: str | None = None,
              parameters: list | None = None, body: dict | None = None) -> dict:
    op: dict[str, Any] = {"summary": summary}
    if description:
        op["description"] = description
    op["operationId"] = operation_id
    op["parameters"] = parameters or []
    if body:
        op["requestBody"] = body
    op["responses"] = responses
    return op


FORBIDDEN = error("not authenticated or not authorized")
TOO_LARGE = error(f"the request body is larger than {limits.MAX_BODY_BYTES // (1024 * 1024)} MiB")
STORE_UNAVAILABLE = answer(
    "the store cannot be opened (corrupt file, schema of a newer jupyter_flow, database unreachable) or stopped "
    "answering; the message names the store and says what to do. The server retries opening it every few seconds.",
    models.StoreUnavailable,
)

PATHS: dict[str, dict[str, Any]] = {
    '/health': {
        'get': operation(
            'getHealth', 'Server and store are up',
            responses={
                '200': answer('ok', models.Health),
                '403': FORBIDDEN,
                '503': STORE_UNAVAILABLE,
            },
        ),
    },
    '/openapi.json': {
        'get': operation(
            'getOpenAPI', 'This document',
            responses={
                '200': answer('OpenAPI 3.1 document', {'type': 'object'}),
                '403': FORBIDDEN,
            },
        ),
    },
    '/runs': {
        'get': operation(
            'listRuns', 'List runs newest first, or the change feed',
            parameters=[
                query('limit', {'type': 'integer', 'minimum': 1, 'maximum': limits.MAX_PAGE, 'default': 50}, 'page size'),
                query('before', {'type': 'string', 'maxLength': limits.MAX_QUERY_LENGTH}, 'id of the last run of the previous page (keyset pagination)'),
                query('status', {'type': 'array', 'items': {'type': 'string', 'enum': [s.value for s in RunStatus]}}, 'statuses to keep (repeat or comma-separate)', style='form', explode=False),
                query('kind', {'type': 'array', 'items': {'type': 'string', 'enum': [k.value for k in RunKind]}}, 'kinds to keep', style='form', explode=False),
                query('name', {'type': 'string', 'maxLength': limits.MAX_QUERY_LENGTH}, 'substring of the run name (case-insensitive)'),
                query('notebook', {'type': 'string', 'maxLength': limits.MAX_QUERY_LENGTH}, 'notebook path'),
                query('parent_id', {'type': 'string', 'maxLength': limits.MAX_QUERY_LENGTH}, 'runs whose parent is this run'),
                query('owner', {'type': 'string', 'maxLength': limits.MAX_QUERY_LENGTH},
                      'runs of this Jupyter user ("me": this server\'s user); another user\'s only for an admin'),
                query('started_after', {'type': 'string', 'format': 'date-time'}, 'created at or after (ISO 8601)'),
                query('changed_since', {'type': 'integer', 'minimum': 0}, 'change feed: runs changed after this cursor, in change order (not combinable with filters)'),
            ],
            responses={
                '200': answer('A page of runs (RunPage), or with changed_since the runs changed since the cursor (RunChanges)',
                             models.RunPage, models.RunChanges),
                '400': error('bad query parameter'),
                '403': FORBIDDEN,
                '503': STORE_UNAVAILABLE,
            },
        ),
    },
    '/runs/{run_id}': {
        'get': operation(
            'getRun', 'One run with task counts by status',
            parameters=[
                path_param('run_id', 'run id'),
            ],
            responses={
                '200': answer('the run', models.Run),
                '403': FORBIDDEN,
                '404': error('unknown run'),
                '503': STORE_UNAVAILABLE,
            },
        ),
    },
    '/runs/{run_id}/tasks': {
        'get': operation(
            'getRunTasks', 'Tasks of a run in creation order',
            parameters=[
                path_param('run_id', 'run id'),
                query('changed_since', {'type': 'integer', 'minimum': 0}, 'only tasks changed after this cursor'),
            ],
            responses={
                '200': answer('tasks (logs omitted)', models.TaskList),
                '400': error('bad query parameter'),
                '403': FORBIDDEN,
                '404': error('unknown run'),
                '503': STORE_UNAVAILABLE,
            },
        ),
    },
    '/runs/{run_id}/cancel': {
        'post': operation(
            'cancelRun', 'Ask the run (and its unfinished child runs) to cancel',
            description="Allowed for the run's owner (the OS user the server runs as) or an admin (authorizer grants action 'admin' on 'jupyter_flow'). The owning process cancels within about a second.",
            parameters=[
                path_param('run_id', 'run id'),
            ],
            body=request(models.EmptyBody, required=False),
            responses={
                '202': answer('cancel recorded; the run as it is now', models.Run),
                '403': FORBIDDEN,
                '404': error('unknown run'),
                '409': error('the run already finished (or is LOST)'),
                '413': TOO_LARGE,
                '422': error('the body is not empty or an empty JSON object (or is not valid JSON)'),
                '503': STORE_UNAVAILABLE,
            },
        ),
    },
    '/runs/{run_id}/notebook': {
        'post': operation(
            'openExecutedNotebook', "Write a batch execution's executed notebook under the server root, to open it",
            description="For a notebook run of a batch (an execution): writes the executed notebook it stored (outputs.output_notebook, secret parameter values redacted) to flow-executed/<notebook>.<run id>.ipynb under the server root (once; later calls answer the same file) and answers its path, which JupyterLab opens. Allowed for the run's owner or an admin.",
            parameters=[
                path_param('run_id', 'run id'),
            ],
            body=request(models.EmptyBody, required=False),
            responses={
                '403': FORBIDDEN,
                '404': error('unknown run, or a run without an executed notebook (not a batch execution, or not ended)'),
                '409': error("the run's output_notebook artifact is not a stored notebook"),
                '413': TOO_LARGE,
                '422': error('the body is not empty or an empty JSON object (or is not valid JSON)'),
                '503': STORE_UNAVAILABLE,
                '200': answer("the notebook's path under the server root", models.ExecutedNotebook),
            },
        ),
    },
    '/tasks/{task_id}': {
        'get': operation(
            'getTask', 'One task (without logs)',
            parameters=[
                path_param('task_id', 'task id'),
            ],
            responses={
                '200': answer('the task', models.Task),
                '403': FORBIDDEN,
                '404': error('unknown task'),
                '503': STORE_UNAVAILABLE,
            },
        ),
    },
    '/tasks/{task_id}/logs': {
        'get': operation(
            'getTaskLogs', 'stdout, stderr, error and traceback of a task',
            parameters=[
                path_param('task_id', 'task id'),
            ],
            responses={
                '200': answer('logs', models.TaskLogs),
                '403': FORBIDDEN,
                '404': error('unknown task'),
                '503': STORE_UNAVAILABLE,
            },
        ),
    },
    '/graphs': {
        'get': operation(
            'listGraphs', "Graphs of runs newest first (a graph's id is its run's id)",
            parameters=[
                query('limit', {'type': 'integer', 'minimum': 1, 'maximum': limits.MAX_PAGE, 'default': 50}, 'page size'),
                query('before', {'type': 'string', 'maxLength': limits.MAX_QUERY_LENGTH}, 'id of the last graph of the previous page'),
            ],
            responses={
                '200': answer('a page of graphs', models.GraphPage),
                '400': error('bad query parameter'),
                '403': FORBIDDEN,
                '503': STORE_UNAVAILABLE,
            },
        ),
    },
    '/graphs/{run_id}': {
        'get': operation(
            'getGraph', 'Task graph of a run',
            parameters=[
                path_param('run_id', 'run id'),
            ],
            responses={
                '200': answer('nodes and edges', models.Graph),
                '403': FORBIDDEN,
                '404': error('unknown run'),
                '503': STORE_UNAVAILABLE,
            },
        ),
    },
    '/artifacts/{hash}': {
        'get': operation(
            'getArtifact', 'Bounded preview of an artifact, or the serialized bytes with download=1',
            description="Pickled artifacts (serializers that run code when loaded: pandas, cloudpickle) are signed with their producer's own Ed25519 key (kept in the producer's keys directory, never in the store). The server never unpickles: a pickle signed by a key the server's user holds or trusts is previewed by a throwaway subprocess with a scrubbed environment; an unsigned, wrongly signed or untrusted one previews as kind 'untrusted' (data says why and names the producer) and is never unpickled, and its download is refused with 409. Sealed (encrypted) artifacts such as graph snapshots preview as a 'repr' note and are not served for download (409).",
            parameters=[
                path_param('hash', 'sha256 of the artifact (64 lowercase hex)', {'type': 'string', 'pattern': '^[0-9a-f]{64}$'}),
                query('download', {'type': 'string', 'enum': ['0', '1', 'true', 'false']}, '1: the serialized value itself'),
                query('max_bytes', {'type': 'integer', 'minimum': 64, 'maximum': limits.PREVIEW_MAX, 'default': limits.PREVIEW_DEFAULT}, 'preview size bound'),
            ],
            responses={
                '200': {**answer('preview (JSON) or, with download=1, the serialized value as an attachment',
                                 models.ArtifactPreview),
                        'content': {**answer('', models.ArtifactPreview)['content'],
                                    'application/octet-stream': {'schema': {'type': 'string', 'format': 'binary'}}}},
                '400': error('not an artifact hash, or bad query parameter'),
                '403': FORBIDDEN,
                '404': error('no such artifact'),
                '409': error("download=1 of a pickle not signed by a key the server's user trusts, or of a sealed artifact"),
                '503': STORE_UNAVAILABLE,
            },
        ),
    },
    '/lineage/{id}': {
        'get': operation(
            'getLineage', 'Upstream lineage of a task or an artifact',
            parameters=[
                path_param('id', 'task id or artifact hash'),
            ],
            responses={
                '200': answer('tasks, artifacts and edges', models.Lineage),
                '403': FORBIDDEN,
                '404': error('unknown task or artifact'),
                '503': STORE_UNAVAILABLE,
            },
        ),
    },
    '/clusters': {
        'get': operation(
            'getClusters', 'Clusters in use and configured profiles',
            responses={
                '200': answer('clusters and profiles', models.Clusters),
                '403': FORBIDDEN,
                '503': STORE_UNAVAILABLE,
            },
        ),
    },
    '/batches': {
        'post': operation(
            'startBatch', 'Run a notebook once per parameter point with papermill, as a batch run',
            description="The same implementation as jf.batch and `jupyter flow batch`. Executions run as kernels on the server's machine; the batch goes on in the background and its notebook runs are children of the returned batch run. Parameters and grid values are checked against the notebook's declarations (jf.param types, bounds and choices; the parameters cell) with the same rule papermill injection applies: 422 names the parameter.",
            body=request(models.BatchRequest, description=JSON_RULES),
            responses={
                '202': answer('the batch run, started', models.Run),
                '403': FORBIDDEN,
                '413': TOO_LARGE,
                '422': error("a bad body (not a JSON object, a field over its limit, a NUL character, nesting deeper than 32 levels, a grid of more than 10000 points), an unknown notebook or parameter, a value the notebook's declaration refuses (type, bounds, choices), or an unknown cluster profile; the message names the field and the limit"),
                '503': STORE_UNAVAILABLE,
            },
        ),
    },
    '/schedules': {
        'get': operation(
            'listSchedules', 'List schedules',
            responses={
                '200': answer('every schedule, by name', models.ScheduleList),
                '403': FORBIDDEN,
                '503': STORE_UNAVAILABLE,
            },
        ),
        'post': operation(
            'createSchedule', 'Schedule a notebook batch on a cron expression',
            description='Each firing is a batch run (the same as POST batches) carrying schedule_id and scheduled_for. Validated like jf.schedule: the notebook, its declared parameters, the cron expression, the time zone and the misfire policy.',
            body=request(models.ScheduleRequest, description=JSON_RULES),
            responses={
                '201': answer('the schedule, with its first firing time', models.Schedule),
                '403': FORBIDDEN,
                '409': error('a schedule of that name exists'),
                '413': TOO_LARGE,
                '422': error("a bad body: an unknown field, notebook or parameter, a value the notebook's declaration refuses, a bad cron expression, time zone or misfire policy, or a field over its limit; the message names the field"),
                '503': STORE_UNAVAILABLE,
            },
        ),
    },
    '/schedules/{schedule_id}': {
        'get': operation(
            'getSchedule', 'One schedule',
            parameters=[
                path_param('schedule_id', 'schedule id (or its name)'),
            ],
            responses={
                '200': answer('the schedule', models.Schedule),
                '403': FORBIDDEN,
                '404': error('unknown schedule'),
                '503': STORE_UNAVAILABLE,
            },
        ),
        'patch': operation(
            'updateSchedule', 'Pause or resume a schedule',
            description='Resuming fires next at the first cron time from now; the time it was paused is not a misfire.',
            parameters=[
                path_param('schedule_id', 'schedule id (or its name)'),
            ],
            body=request(models.SchedulePatch),
            responses={
                '200': answer('the schedule', models.Schedule),
                '403': FORBIDDEN,
                '404': error('unknown schedule'),
                '413': TOO_LARGE,
                '422': error('the body is not {"paused": true|false}'),
                '503': STORE_UNAVAILABLE,
            },
        ),
        'delete': operation(
            'deleteSchedule', 'Remove a schedule (the runs it fired stay)',
            parameters=[
                path_param('schedule_id', 'schedule id (or its name)'),
            ],
            responses={
                '204': {'description': 'removed'},
                '403': FORBIDDEN,
                '404': error('unknown schedule'),
                '503': STORE_UNAVAILABLE,
            },
        ),
    },
    '/notebooks/params': {
        'get': operation(
            'getNotebookParams', 'Parameters a notebook declares, for a launch form',
            description='Read without running the notebook: jf.param(...) calls (type, default, min, max, choices, help) and plain assignments in its parameters cell.',
            parameters=[
                query('path', {'type': 'string', 'maxLength': limits.MAX_QUERY_LENGTH}, 'notebook path relative to the server root, or absolute under it', required=True),
            ],
            responses={
                '200': answer('the declared parameters', models.NotebookParams),
                '400': error('no path given, or a query parameter given twice or too long'),
                '403': FORBIDDEN,
                '404': error('no such notebook under the server root'),
                '422': error('not an .ipynb path under the server root, or a notebook that cannot be read'),
                '503': STORE_UNAVAILABLE,
            },
        ),
    },
}


class _Schema(GenerateJsonSchema):
    """Pydantic's JSON schema without the titles it derives from field names (noise in the
    document and in the TypeScript)."""

    def field_title_should_be_set(self, schema) -> bool:
        return False


def component_schemas() -> dict[str, dict]:
    """Every model's JSON schema, by name (enums the models use included)."""
    _, top = models_json_schema([(m, "validation") for m in models.COMPONENTS], ref_template=REF,
                                schema_generator=_Schema)
    schemas = top["$defs"]
    for schema in schemas.values():
        schema.pop("title", None)
    named = [m.__name__ for m in models.COMPONENTS]
    return {name: schemas[name] for name in named + sorted(set(schemas) - set(named))}


def openapi_document() -> dict:
    """The OpenAPI 3.1 document ``openapi.json`` holds (the server adds ``servers``' base URL)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "jupyter_flow REST API",
            "version": API_VERSION,
            "description": "Runs, tasks, graphs, artifacts, lineage, clusters and schedules of the jupyter_flow "
            "store. Served by the jupyter_flow Jupyter server extension under {base_url}jupyter-flow/api/; Jupyter "
            "authentication (token or login cookie with XSRF for POST).",
        },
        "servers": [{"url": "/jupyter-flow/api"}],
        "security": [{"token": []}],
        "paths": PATHS,
        "components": {
            "schemas": component_schemas(),
            "securitySchemes": {
                "token": {"type": "apiKey", "in": "header", "name": "Authorization",
                          "description": "'token <Jupyter server token>'"},
            },
        },
    }


def generated_files() -> dict[Path, str]:
    """Each generated file (relative to the repository root) and the text it must hold."""
    document = openapi_document()
    return {
        OPENAPI_FILE: json.dumps(document, indent=2, ensure_ascii=False) + "\n",
        TYPESCRIPT_FILE: typescript_module(document["components"]["schemas"], regenerate=REGENERATE),
    }


def write(root: Path = ROOT) -> list[Path]:
    """Write the generated files under ``root``; returns their paths."""
    written = []
    for relative, text in generated_files().items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m jupyter_flow.server.schema",
                                     description="Write openapi.json and js/src/generated/api-types.ts from the "
                                     "REST API's models.")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root to write under (default: %(default)s)")
    for path in write(parser.parse_args(argv).root):
        print(path)


if __name__ == "__main__":
    main()
