"""Tornado handlers of the REST API under ``{base_url}jupyter-flow/api/``.

Each handler checks authentication and authorization, parses the request, calls one
``FlowService`` method in a worker thread (store calls block) and writes JSON. Errors
become ``{"message", "reason"}`` bodies (plus ``store`` when the store cannot be opened,
503), never tracebacks. Request limits live in ``limits``.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime, timezone
from importlib import resources
from typing import Any, Callable

from jupyter_server.auth.authorizer import AllowAllAuthorizer
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import ensure_async, url_path_join
from tornado import web
from tornado.ioloop import IOLoop

from jupyter_flow.artifacts.store import STREAM_CHUNK
from jupyter_flow.core.status import RunKind, RunStatus
from jupyter_flow.server import limits, models
from jupyter_flow.server.errors import ApiError, ShuttingDown
from jupyter_flow.server.service import FlowService

API_PREFIX = "/jupyter-flow/api"
AUTH_RESOURCE = "jupyter_flow"
_ID = re.compile(rf"[0-9A-Za-z._-]{{1,{limits.MAX_ID_LENGTH}}}")
_RUN_STATUSES = [s.value for s in RunStatus]
_RUN_KINDS = [k.value for k in RunKind]
_EXTENSIONS = {"json": ("application/json", "json"), "bytes": ("application/octet-stream", "bin")}


def _bad_request(message: str) -> web.HTTPError:
    return web.HTTPError(400, "%s", message)


class ApiHTTPError(web.HTTPError):
    """An ``ApiError`` on its way to ``write_error``, with the extra fields of its body."""

    def __init__(self, error: ApiError):
        super().__init__(error.status, "%s", error.message)
        self.fields = error.body_fields()


class FlowHandler(APIHandler):
    """Common parts: the service, JSON errors, query parsing, calls in a thread."""

    auth_resource = AUTH_RESOURCE

    @property
    def service(self) -> FlowService:
        return self.settings["jupyter_flow_service"]

    async def call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``method(*args, **kwargs)`` in a worker thread, through ``FlowService.call``
        (503 while the store cannot be opened)."""
        executor = self.settings["jupyter_flow_executor"]
        try:
            return await IOLoop.current().run_in_executor(
                executor, lambda: self.service.call(method, *args, **kwargs)
            )
        except ApiError as err:
            raise ApiHTTPError(err) from None
        except (RuntimeError, asyncio.CancelledError):
            # The executor was shut down (the server is stopping): a queued call was dropped,
            # or a new one refused with "cannot schedule new futures after shutdown".
            if getattr(self.service, "stopping", False):
                raise ApiHTTPError(ShuttingDown("the Jupyter server is shutting down; retry once it is back")) from None
            raise

    async def is_admin(self) -> bool:
        """Whether the authorizer grants this request action ``admin`` (the owner rule's
        exception: an admin may read and change every user's runs and schedules)."""
        # AllowAllAuthorizer, Jupyter's default, says yes to any action. Taken as an admin
        # grant it would let every user of a shared store cancel everyone's runs, so admin
        # needs an authorizer that grants "admin" on purpose.
        if type(self.authorizer) is AllowAllAuthorizer:
            return False
        return bool(await ensure_async(self.authorizer.is_authorized(self, self.current_user, "admin", AUTH_RESOURCE)))

    def json_body(self) -> Any:
        """The request body as JSON within ``limits`` (413/422 otherwise); None if empty."""
        try:
            return limits.parse_json_body(self.request.body)
        except ApiError as err:
            raise ApiHTTPError(err) from None

    def model_body(self, model: type[models.Body]) -> dict:
        """The request body checked against ``model`` (types, required and unknown fields: 422
        naming the field); the JSON value itself goes on to the service, which checks the
        limits and the notebook with its own messages."""
        body = self.json_body()
        try:
            models.parse_body(model, body)
        except ApiError as err:
            raise ApiHTTPError(err) from None
        return body

    def require_empty_body(self) -> None:
        """A POST that takes no fields: an empty body or ``{}``, else 422."""
        if self.request.body.strip() and self.json_body() != {}:
            raise web.HTTPError(422, "%s", "the request body must be empty or an empty JSON object")

    def write_json(self, body: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(body))

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, ApiHTTPError) and value.status_code == 503:
            return  # StoreAccess logged the reason once; a line per request would flood the log
        super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """JSON error bodies without tracebacks (the server log keeps those)."""
        reason = self._reason
        message = reason
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        elif status_code >= 500:
            message = "internal server error; the Jupyter server log has the details"
        fields = exc.fields if isinstance(exc, ApiHTTPError) else {}
        self.finish(json.dumps({"message": message, "reason": reason, **fields}))

    # -- request parsing ----------------------------------------------------------------

    def arg(self, name: str) -> str | None:
        values = self.get_query_arguments(name)
        if len(values) > 1:
            raise _bad_request(f"query parameter {name!r} was given {len(values)} times; give it once")
        if not values:
            return None
        if "\x00" in values[0]:
            raise _bad_request(f"query parameter {name!r} contains a NUL character")
        if len(values[0]) > limits.MAX_QUERY_LENGTH:
            raise _bad_request(
                f"query parameter {name!r} has {len(values[0])} characters; the limit is {limits.MAX_QUERY_LENGTH}"
            )
        return values[0]

    def int_arg(self, name: str, default: int | None, low: int, high: int) -> int | None:
        text = self.arg(name)
        if text is None or text == "":
            return default
        try:
            value = int(text)
        except ValueError:
            raise _bad_request(f"query parameter {name!r} must be an integer, not {text!r:.40}") from None
        if not low <= value <= high:
            raise _bad_request(f"query parameter {name!r} must be between {low} and {high}, not {value}")
        return value

    def choice_arg(self, name: str, allowed: list[str]) -> list[str] | None:
        """Comma-separated values (or the parameter repeated), each one of ``allowed``."""
        values = [v for text in self.get_query_arguments(name) for v in text.split(",") if v]
        if not values:
            return None
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            raise _bad_request(
                f"query parameter {name!r}: unknown value(s) {', '.join(map(repr, unknown))[:200]}; "
                f"one of {', '.join(allowed)}"
            )
        return values

    def datetime_arg(self, name: str) -> datetime | None:
        text = self.arg(name)
        if not text:
            return None
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise _bad_request(
                f"query parameter {name!r} must be an ISO 8601 date-time, not {text!r:.40}"
            ) from None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value

    @staticmethod
    def check_id(ident: str, what: str) -> str:
        if not _ID.fullmatch(ident):
            raise web.HTTPError(404, "%s", f"no {what} {ident[:80]!r} in the store")
        return ident


class HealthHandler(FlowHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json(await self.call(self.service.health))


class OpenAPIHandler(FlowHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        document = json.loads(resources.files("jupyter_flow.server").joinpath("openapi.json").read_text())
        document["servers"] = [{"url": url_path_join(self.base_url, "jupyter-flow/api")}]
        self.write_json(document)


class RunsHandler(FlowHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        limit = self.int_arg("limit", 50, 1, limits.MAX_PAGE)
        changed_since = self.int_arg("changed_since", None, 0, 2**62)
        filters = {
            "before": self.arg("before") or None,
            "name": self.arg("name") or None,
            "status": self.choice_arg("status", _RUN_STATUSES),
            "kind": self.choice_arg("kind", _RUN_KINDS),
            "notebook": self.arg("notebook") or None,
            "started_after": self.datetime_arg("started_after"),
            "parent_id": self.arg("parent_id") or None,
            # whose runs: a user name, or "me" (this server's user); others' only for an admin
            "owner": self.arg("owner") or None,
        }
        if changed_since is not None:
            given = sorted(name for name, value in filters.items() if value is not None)
            if given:
                raise _bad_request(
                    f"changed_since returns every changed run; it cannot be combined with {', '.join(given)}"
                )
            self.write_json(await self.call(self.service.changes, changed_since, limit, await self.is_admin()))
            return
        self.write_json(await self.call(self.service.list_runs, limit=limit, is_admin=await self.is_admin(), **filters))


class RunHandler(FlowHandler):
    @web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        self.check_id(run_id, "run")
        self.write_json(await self.call(self.service.get_run, run_id, await self.is_admin()))


class RunTasksHandler(FlowHandler):
    @web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        self.check_id(run_id, "run")
        changed_since = self.int_arg("changed_since", None, 0, 2**62)
        self.write_json(await self.call(self.service.run_tasks, run_id, changed_since, await self.is_admin()))


class RunCancelHandler(FlowHandler):
    """POST: ask the run's owning process to cancel it (and its child runs)."""

    @web.authenticated
    @authorized
    async def post(self, run_id: str) -> None:
        self.check_id(run_id, "run")
        self.require_empty_body()
        run = await self.call(
            self.service.cancel_run, run_id, requested_by=self.current_user.username, is_admin=await self.is_admin()
        )
        self.write_json(run, status=202)


class RunNotebookHandler(FlowHandler):
    """POST: write a batch execution's executed notebook under the server root (the
    sidebar opens it in JupyterLab); answers its path."""

    @web.authenticated
    @authorized
    async def post(self, run_id: str) -> None:
        self.check_id(run_id, "run")
        self.require_empty_body()
        self.write_json(await self.call(self.service.open_executed_notebook, run_id,
                                        self.settings.get("server_root_dir", "."), await self.is_admin()))


class BatchesHandler(FlowHandler):
    """POST: run a notebook once per parameter point (papermill), as a batch run."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.model_body(models.BatchRequest)
        app = self.settings["jupyter_flow_app"]
        run = await self.call(self.service.start_batch, body, self.settings.get("server_root_dir", "."),
                              db_url=app.resolved_db_url, artifacts_url=app.resolved_artifacts_url)
        self.write_json(run, status=202)


class SchedulesHandler(FlowHandler):
    """GET: every schedule; POST: a new schedule of a notebook under the server root."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json(await self.call(self.service.list_schedules))

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.model_body(models.ScheduleRequest)
        # Its owner is the OS user this server acts for, as for runs (see the owner rule).
        schedule = await self.call(self.service.create_schedule, body, self.settings.get("server_root_dir", "."),
                                   created_by=self.service.server_user)
        self.write_json(schedule, status=201)


class ScheduleHandler(FlowHandler):
    """GET a schedule (by id or name); PATCH ``{"paused": bool}`` pauses or resumes it;
    DELETE removes it (its past runs stay)."""

    @staticmethod
    def check_schedule(ident: str) -> str:
        # Names are printable text up to 200 characters (the CLI takes them too), not ids.
        if not 0 < len(ident) <= limits.MAX_SCHEDULE_NAME_LENGTH or not ident.isprintable():
            raise web.HTTPError(404, "%s", f"no schedule {ident[:80]!r} in the store")
        return ident

    @web.authenticated
    @authorized
    async def get(self, schedule_id: str) -> None:
        self.check_schedule(schedule_id)
        self.write_json(await self.call(self.service.get_schedule, schedule_id))

    @web.authenticated
    @authorized
    async def patch(self, schedule_id: str) -> None:
        self.check_schedule(schedule_id)
        body = self.model_body(models.SchedulePatch)
        self.write_json(await self.call(self.service.update_schedule, schedule_id, body, await self.is_admin()))

    @web.authenticated
    @authorized
    async def delete(self, schedule_id: str) -> None:
        self.check_schedule(schedule_id)
        await self.call(self.service.delete_schedule, schedule_id, await self.is_admin())
        self.set_status(204)
        self.finish()


class NotebookParamsHandler(FlowHandler):
    """GET ``?path=NB``: the parameters a notebook declares, for the launch form."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        path = self.arg("path")
        if not path:
            raise _bad_request("query parameter 'path' is required: the notebook's path under the server root")
        self.write_json(await self.call(self.service.notebook_params, path, self.settings.get("server_root_dir", ".")))


class TaskHandler(FlowHandler):
    @web.authenticated
    @authorized
    async def get(self, task_id: str) -> None:
        self.check_id(task_id, "task")
        self.write_json(await self.call(self.service.get_task, task_id, await self.is_admin()))


class TaskLogsHandler(FlowHandler):
    @web.authenticated
    @authorized
    async def get(self, task_id: str) -> None:
        self.check_id(task_id, "task")
        self.write_json(await self.call(self.service.task_logs, task_id, await self.is_admin()))


class GraphsHandler(FlowHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        limit = self.int_arg("limit", 50, 1, limits.MAX_PAGE)
        before = self.arg("before") or None
        self.write_json(await self.call(self.service.list_graphs, limit=limit, before=before,
                                        is_admin=await self.is_admin()))


class GraphHandler(FlowHandler):
    @web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        self.check_id(run_id, "graph")
        self.write_json(await self.call(self.service.get_graph, run_id, await self.is_admin()))


class ArtifactHandler(FlowHandler):
    """A bounded preview, or with ``?download=1`` the serialized value itself."""

    @web.authenticated
    @authorized
    async def get(self, digest: str) -> None:
        download = self.arg("download")
        if download not in (None, "", "0", "1", "true", "false"):
            raise _bad_request("query parameter 'download' must be 1 or 0")
        if download in ("1", "true"):
            await self._download(digest)
            return
        max_bytes = self.int_arg("max_bytes", limits.PREVIEW_DEFAULT, 64, limits.PREVIEW_MAX)
        self.write_json(await self.call(self.service.artifact_preview, digest, max_bytes, await self.is_admin()))


    async def _download(self, digest: str) -> None:
        """Send the checked file in pieces, each read in a worker thread and flushed before the
        next (a slow client holds one piece of memory, not the artifact)."""
        file, length, serializer = await self.call(self.service.artifact_download, digest, await self.is_admin())
        loop, executor = IOLoop.current(), self.settings["jupyter_flow_executor"]
        mime, extension = _EXTENSIONS.get(serializer, ("application/octet-stream", serializer))
        try:
            self.set_header("Content-Type", mime)
            self.set_header("Content-Length", str(length))
            self.set_header("X-Content-Type-Options", "nosniff")
            self.set_header("X-Flow-Serializer", serializer)
            self.set_header("Content-Disposition", f'attachment; filename="{digest}.{extension}"')
            while chunk := await loop.run_in_executor(executor, file.read, STREAM_CHUNK):
                self.write(chunk)
                await self.flush()
        finally:
            await loop.run_in_executor(executor, file.close)
        self.finish(set_content_type=mime)


class LineageHandler(FlowHandler):
    @web.authenticated
    @authorized
    async def get(self, ident: str) -> None:
        self.check_id(ident, "task or artifact")
        self.write_json(await self.call(self.service.lineage, ident, await self.is_admin()))


class ClustersHandler(FlowHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json(await self.call(self.service.clusters))


def routes() -> list[tuple[str, type]]:
    """URL patterns (relative to ``base_url``) and their handlers."""
    part = "([^/]+)"
    return [
        (f"{API_PREFIX}/health", HealthHandler),
        (f"{API_PREFIX}/openapi.json", OpenAPIHandler),
        (f"{API_PREFIX}/runs", RunsHandler),
        (f"{API_PREFIX}/runs/{part}", RunHandler),
        (f"{API_PREFIX}/runs/{part}/tasks", RunTasksHandler),
        (f"{API_PREFIX}/runs/{part}/cancel", RunCancelHandler),
        (f"{API_PREFIX}/runs/{part}/notebook", RunNotebookHandler),
        (f"{API_PREFIX}/batches", BatchesHandler),
        (f"{API_PREFIX}/schedules", SchedulesHandler),
        (f"{API_PREFIX}/schedules/{part}", ScheduleHandler),
        (f"{API_PREFIX}/notebooks/params", NotebookParamsHandler),
        (f"{API_PREFIX}/tasks/{part}", TaskHandler),
        (f"{API_PREFIX}/tasks/{part}/logs", TaskLogsHandler),
        (f"{API_PREFIX}/graphs", GraphsHandler),
        (f"{API_PREFIX}/graphs/{part}", GraphHandler),
        (f"{API_PREFIX}/artifacts/{part}", ArtifactHandler),
        (f"{API_PREFIX}/lineage/{part}", LineageHandler),
        (f"{API_PREFIX}/clusters", ClustersHandler),
    ]
