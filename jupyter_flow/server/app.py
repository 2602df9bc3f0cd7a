"""``FlowApp``: the jupyter_flow Jupyter server extension.

It opens the same store and artifact store as kernels do (precedence: environment
``JUPYTER_FLOW_DB``/``JUPYTER_FLOW_ARTIFACTS`` > ``FlowApp.db_url``/``artifacts_url`` >
``JUPYTER_FLOW_HOME``), serves the REST API under ``{base_url}jupyter-flow/api/`` and runs
the reconciler. A store it cannot open does not stop Jupyter: the API answers 503 with the
reason until the store can be opened (see ``store_access``). Configure it like any Jupyter app::

    jupyter server --FlowApp.db_url=postgresql+psycopg://host/flow --FlowApp.heartbeat_timeout=60
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from jupyter_server.extension.application import ExtensionApp
from traitlets import Float, Int, Unicode

from jupyter_flow.artifacts import artifact_store
from jupyter_flow.core.provenance import current_user
from jupyter_flow.core.settings import resolve_artifacts_url, resolve_db_url
from jupyter_flow.server.handlers import routes
from jupyter_flow.server.reconciler import Reconciler
from jupyter_flow.server.service import FlowService
from jupyter_flow.server.store_access import StoreAccess


class FlowApp(ExtensionApp):
    """REST API over the jupyter_flow store, and the reconciler of abandoned runs."""

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

    def initialize_settings(self) -> None:
        self.executor = ThreadPoolExecutor(self.threads, thread_name_prefix="jupyter-flow")
        self.resolved_db_url = resolve_db_url(configured=self.db_url)
        self.resolved_artifacts_url = resolve_artifacts_url(configured=self.artifacts_url)
        access = StoreAccess(self.resolved_db_url, retry_interval=self.store_retry_interval, log=self.log)
        store = access.open()  # on failure: one log line now, 503 from the API until it opens
        # Previews unpickle only artifacts signed with the store's key: the artifact store is
        # opened once the metadata store (which keeps the key) is.
        artifacts = self.resolved_artifacts_url
        self.service = FlowService(
            access, artifacts, heartbeat_timeout=self.heartbeat_timeout, server_user=current_user()
        )
        self.settings.update(
            {"jupyter_flow_service": self.service, "jupyter_flow_executor": self.executor,
             "jupyter_flow_app": self}
        )
        self.reconciler = Reconciler(self.service.reconcile, self.executor, self.reconcile_interval)
        self.reconciler.start()
        if store is not None:
            self.log.info("jupyter_flow: serving the store %r", store)

    def initialize_handlers(self) -> None:
        self.handlers.extend(routes())

    async def stop_extension(self) -> None:
        # Never raise here, whatever failed at start: an exception out of stop_extension
        # ends jupyter_server's shutdown early and the process no longer exits on SIGTERM.
        reconciler = getattr(self, "reconciler", None)
        if reconciler is not None:
            reconciler.stop()
        executor = getattr(self, "executor", None)
        if executor is not None:
            # Queued calls are dropped; one in progress finishes on its own (the interpreter
            # waits for it at exit) instead of blocking the event loop's shutdown here.
            executor.shutdown(wait=False, cancel_futures=True)
        service = getattr(self, "service", None)
        if service is not None:
            service.close()
