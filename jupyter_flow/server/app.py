"""``FlowApp``: the jupyter_flow Jupyter server extension.

It opens the same store and artifact store as kernels do (precedence: environment
``JUPYTER_FLOW_DB``/``JUPYTER_FLOW_ARTIFACTS`` > ``FlowApp.db_url``/``artifacts_url`` >
``JUPYTER_FLOW_HOME``), serves the REST API under ``{base_url}jupyter-flow/api/``, runs
the reconciler, fires due schedules (``FlowApp.scheduler``) and notifies a webhook or
e-mail addresses of ended runs. A store it cannot open does not stop Jupyter: the API
answers 503 with the reason until the store can be opened (see ``store_access``), and
nothing is fired or notified meanwhile. Configure it like any Jupyter app::

    jupyter server --FlowApp.db_url=postgresql+psycopg://host/flow --FlowApp.heartbeat_timeout=60
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Float, Int, List, TraitError, Type, Unicode, default, validate

from jupyter_flow.core.provenance import flow_user
from jupyter_flow.core.settings import resolve_artifacts_url, resolve_db_url
from jupyter_flow.core.status import RUN_TERMINAL, RunKind
from jupyter_flow.server.handlers import routes
from jupyter_flow.server.notifications import Notifier, RunEndWatcher, webhook_label
from jupyter_flow.server.periodic import PeriodicJob
from jupyter_flow.server.reconciler import Reconciler
from jupyter_flow.server.schedule_firer import ScheduleFirer
from jupyter_flow.server.service import FlowService
from jupyter_flow.server.store_access import StoreAccess
from jupyter_flow.server.saving import keep_static_fallbacks

#: Seconds ``stop_extension`` waits for a scheduler tick in progress, then for the lease's
#: release; bounded so that SIGTERM still ends the server when the database hangs.
STOP_WAIT_S = 5.0


class FlowApp(ExtensionApp):
    """REST API over the jupyter_flow store, the reconciler of abandoned runs, the
    scheduler of notebook batches and the notifications of ended runs."""

    name = "jupyter_flow"
    load_other_extensions = True

    db_url = Unicode(
        None, allow_none=True, config=True,
        help="SQLAlchemy URL of the store (JUPYTER_FLOW_DB, if set, wins).",
    )
    artifacts_url = Unicode(
        None, allow_none=True, config=True,
        help="fsspec URL of the artifact store (JUPYTER_FLOW_ARTIFACTS, if set, wins).",
    )
    heartbeat_timeout = Float(
        30.0, config=True,
        help="Seconds without a heartbeat after which a run's owner is declared dead and "
        "its unfinished runs become LOST.",
    )
    reconcile_interval = Float(
        5.0, config=True, help="Seconds between two reconciler passes."
    )
    threads = Int(8, config=True, help="Worker threads for store calls.")
    store_retry_interval = Float(
        5.0, config=True,
        help="Seconds between two attempts to open a store that could not be opened.",
    )

    # -- schedules ------------------------------------------------------------------------

    scheduler = Bool(
        True, config=True,
        help="Fire due schedules from this server. Several servers (and `jupyter flow "
        "scheduler` processes) on one store share the work through a lease in the store: "
        "one of them fires, each firing happens once.",
    )
    scheduler_interval = Float(
        1.0, config=True, help="Seconds between two looks for due schedules."
    )
    schedule_grace = Float(
        60.0, config=True,
        help="Seconds a firing may be late before it counts as missed and the schedule's "
        "misfire policy (skip, once, catchup) decides.",
    )
    lease_ttl = Float(
        15.0, config=True,
        help="Seconds the scheduler lease lasts without renewal; another server or "
        "scheduler takes over this long after the holder died.",
    )

    # -- notifications --------------------------------------------------------------------

    notify_webhook_url = Unicode(
        "", config=True,
        help="POST a JSON event to this URL when a top-level run ends. It may carry a token; "
        "logs show its scheme and host only. Default: $JUPYTER_FLOW_WEBHOOK_URL.",
    )
    notify_email_to = List(
        Unicode(), default_value=[], config=True,
        help="E-mail addresses told when a top-level run ends (through smtp_host).",
    )
    smtp_host = Unicode("localhost", config=True, help="SMTP server for notification e-mails.")
    smtp_port = Int(25, config=True, help="Port of the SMTP server (587 is usual with STARTTLS).")
    smtp_username = Unicode("", config=True, help="Log in to the SMTP server as this user (if set).")
    smtp_password = Unicode(
        "", config=True,
        help="Password of smtp_username; never logged. Default: $JUPYTER_FLOW_SMTP_PASSWORD "
        "(keeps it off the command line).",
    )
    smtp_from = Unicode("", config=True, help="From address of notification e-mails.")
    smtp_starttls = Bool(False, config=True, help="Upgrade the SMTP connection with STARTTLS.")
    notify_statuses = List(
        Unicode(), default_value=["SUCCESS", "FAILED", "LOST", "CANCELED"], config=True,
        help="Final statuses that are notified.",
    )
    notify_kinds = List(
        Unicode(), default_value=["batch", "notebook", "cell", "api"], config=True,
        help="Kinds of top-level runs (runs without a parent) that are notified: batch, "
        "notebook, cell, api (jf.run from Python), graph, resume.",
    )
    notify_lab_url = Unicode(
        "", config=True,
        help="JupyterLab's URL as users reach it, for the links in notifications (behind a "
        "proxy or JupyterHub). Default: the server's own URL.",
    )
    notify_interval = Float(
        2.0, config=True, help="Seconds between two looks for ended runs to notify."
    )
    notifier_class = Type(
        default_value=Notifier, klass=object, config=True,
        help="Delivers notifications: constructed with the webhook and SMTP settings as "
        "keywords (webhook_url, email_to, smtp_host, …) and called as notify(event).",
    )

    @default("notify_webhook_url")
    def _webhook_from_environment(self) -> str:
        return os.environ.get("JUPYTER_FLOW_WEBHOOK_URL", "")

    @default("smtp_password")
    def _password_from_environment(self) -> str:
        return os.environ.get("JUPYTER_FLOW_SMTP_PASSWORD", "")

    @validate("notify_statuses", "notify_kinds")
    def _check_known_values(self, proposal) -> list[str]:
        name = proposal["trait"].name
        if name == "notify_statuses":
            what, allowed = "final status(es)", sorted(status.value for status in RUN_TERMINAL)
        else:
            what, allowed = "run kind(s)", sorted(kind.value for kind in RunKind)
        unknown = sorted(set(proposal["value"]) - set(allowed))
        if unknown:
            raise TraitError(f"FlowApp.{name}: unknown {what} {unknown}; use {allowed}")
        return proposal["value"]

    @validate("scheduler_interval", "lease_ttl", "notify_interval")
    def _check_positive(self, proposal) -> float:
        if not proposal["value"] > 0:
            raise TraitError(f"FlowApp.{proposal['trait'].name} must be a positive number of seconds")
        return proposal["value"]

    @validate("schedule_grace")
    def _check_grace(self, proposal) -> float:
        if not proposal["value"] >= 0:
            raise TraitError("FlowApp.schedule_grace must be 0 or more seconds")
        return proposal["value"]

    # -- lifecycle ------------------------------------------------------------------------

    def initialize_settings(self) -> None:
        self.executor = ThreadPoolExecutor(self.threads, thread_name_prefix="jupyter-flow")
        self.resolved_db_url = resolve_db_url(configured=self.db_url)
        self.resolved_artifacts_url = resolve_artifacts_url(configured=self.artifacts_url)
        access = StoreAccess(self.resolved_db_url, retry_interval=self.store_retry_interval, log=self.log)
        store = access.open()  # on failure: one log line now, 503 from the API until it opens
        # The server never unpickles: previews of pickles signed by a key its user trusts are
        # rendered by a throwaway subprocess (jupyter_flow.artifacts.preview).
        artifacts = self.resolved_artifacts_url
        self.service = FlowService(
            access, artifacts, heartbeat_timeout=self.heartbeat_timeout, server_user=flow_user()
        )
        self.settings.update(
            {"jupyter_flow_service": self.service, "jupyter_flow_executor": self.executor,
             "jupyter_flow_app": self}
        )
        # Saved notebooks keep the static table of a live form, not a widget that cannot
        # render once its kernel is gone (jupyter_flow.server.saving).
        contents = getattr(self.serverapp, "contents_manager", None)
        if contents is not None and hasattr(contents, "register_pre_save_hook"):
            contents.register_pre_save_hook(keep_static_fallbacks)
        self.reconciler = Reconciler(self.service.reconcile, self.executor, self.reconcile_interval)
        self.reconciler.start()
        self._start_scheduler()
        self._start_notifications(store)
        if store is not None:
            self.log.info("jupyter_flow: serving the store %r", store)

    def _start_scheduler(self) -> None:
        self.schedule_firer = None
        if not self.scheduler:
            return
        if not self.lease_ttl > self.scheduler_interval:
            # Refusing to start would take the whole extension down; say why and go on without.
            self.log.error("jupyter_flow: schedules are not fired by this server: FlowApp.lease_ttl (%g s) must be "
                           "longer than FlowApp.scheduler_interval (%g s), or the lease runs out between two "
                           "ticks", self.lease_ttl, self.scheduler_interval)
            return
        self.schedule_firer = ScheduleFirer(
            self.service.access, artifacts_url=self.resolved_artifacts_url,
            interval=self.scheduler_interval, grace=self.schedule_grace, lease_ttl=self.lease_ttl,
        )
        self.scheduler_job = PeriodicJob("firing schedules", self.schedule_firer.tick, self.executor,
                                         self.scheduler_interval)
        self.scheduler_job.start()

    def _start_notifications(self, store) -> None:
        self.run_end_watcher = None
        notifier = self.notifier_class(
            webhook_url=self.notify_webhook_url, email_to=list(self.notify_email_to),
            smtp_host=self.smtp_host, smtp_port=self.smtp_port, smtp_username=self.smtp_username,
            smtp_password=self.smtp_password, smtp_from=self.smtp_from, smtp_starttls=self.smtp_starttls,
        )
        if not getattr(notifier, "enabled", True):
            return  # nowhere to send to: no need to follow the feed
        self.run_end_watcher = RunEndWatcher(
            self.service.access.get, notifier, lab_url=self._lab_url,
            statuses=self.notify_statuses, kinds=self.notify_kinds,
        )
        if store is not None:
            # Runs that end once the server answers are notified, even before the first pass.
            try:
                self.run_end_watcher.start_from(store)
            except Exception as err:  # the database failed right after opening: the first pass retries
                self.log.warning("jupyter_flow: notifications start at the first pass that reads the store (%s)",
                                 type(err).__name__)
        self.notifications_job = PeriodicJob("notifying ended runs", self.run_end_watcher.poll,
                                             self.executor, self.notify_interval)
        self.notifications_job.start()
        hooks = []
        if self.notify_webhook_url:
            hooks.append(f"the webhook {webhook_label(self.notify_webhook_url)}")
        if self.notify_email_to:
            hooks.append(f"e-mail to {', '.join(self.notify_email_to)} via {self.smtp_host}:{self.smtp_port}")
        self.log.info("jupyter_flow: ended runs are notified to %s", " and ".join(hooks) or repr(notifier))

    def _lab_url(self) -> str:
        return self.notify_lab_url or self.serverapp.connection_url

    def initialize_handlers(self) -> None:
        self.handlers.extend(routes())

    async def stop_extension(self) -> None:
        # Never raise here, whatever failed at start: an exception out of stop_extension
        # ends jupyter_server's shutdown early and the process no longer exits on SIGTERM.
        if getattr(self, "_stopped", False):
            return  # stopped already (once is enough; the executor is gone)
        self._stopped = True
        service = getattr(self, "service", None)
        if service is not None:
            service.stopping = True  # requests from now on: 503 "shutting down", not 500
        try:
            await self._stop_jobs()
        except Exception:  # logged; shutting down goes on
            self.log.exception("jupyter_flow: stopping the background jobs failed")
        executor = getattr(self, "executor", None)
        if executor is not None:
            # Queued calls are dropped; one in progress finishes on its own (the interpreter
            # waits for it at exit) instead of blocking the event loop's shutdown here.
            executor.shutdown(wait=False, cancel_futures=True)
        service = getattr(self, "service", None)
        if service is not None:
            service.close()

    async def _stop_jobs(self) -> None:
        reconciler = getattr(self, "reconciler", None)
        if reconciler is not None:
            await reconciler.stop()
        watcher = getattr(self, "run_end_watcher", None)
        if watcher is not None:
            watcher.stop()
            await self.notifications_job.stop()
        firer = getattr(self, "schedule_firer", None)
        if firer is not None:
            # The lease is released only once no tick is running, so another server or
            # scheduler can take over at once instead of after lease_ttl.
            if await self.scheduler_job.stop(timeout=STOP_WAIT_S):
                loop = asyncio.get_running_loop()
                try:
                    await asyncio.wait_for(loop.run_in_executor(self.executor, firer.close), STOP_WAIT_S)
                except asyncio.TimeoutError:
                    self.log.warning("jupyter_flow: releasing the scheduler lease timed out; another "
                                     "scheduler takes over within %s s", self.lease_ttl)
