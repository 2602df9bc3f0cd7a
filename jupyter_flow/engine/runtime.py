"""The process-wide engine: store, artifacts, owner heartbeat, writer, runs in flight.

Planning happens here: a graph's cache keys are computed before anything is submitted,
hits are found with one indexed lookup and restored without touching the cluster, and
the rest is submitted to Dask as one graph with explicit keys.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import threading
import time
import weakref
from typing import Any, Iterable

from ..artifacts import ArtifactStore, artifact_store
from ..artifacts.keyring import load_keyring
from ..core import keys as keylib
from ..core import snapshot as snapshots
from ..core.errors import ArtifactError, FlowError, FencedWrite
from ..core.graph import Graph
from ..core.ids import new_ids
from ..core.op import Node
from ..core.provenance import current_user, flow_user, host_facts
from ..core.snapshot import GraphSnapshot
from ..core.settings import heartbeat_timeout, resolve_artifacts_url, resolve_db_url
from ..core.status import RunKind, RunStatus
from ..store import Store
from ..deploy import cluster as clusters
from .execution import RunExecution
from .plan import StoreCacheView, forced_set, plan
from .single_flight import SingleFlight
from .state import task_row
from ..worker.task import TOPIC
from .writer import Writer

log = logging.getLogger("jupyter_flow.engine")

CANCEL_POLL_S = 0.5


def heartbeat_interval() -> float:
    """Seconds between two heartbeats: a third of the timeout, at most 5."""
    return min(5.0, heartbeat_timeout() / 3)


class Engine:
    """Everything one process needs to run flows against one store."""

    def __init__(self, db_url: str | None = None, artifacts_url: str | None = None):
        self.db_url = resolve_db_url(db_url)
        self.artifacts_url = resolve_artifacts_url(artifacts_url)
        self.store = Store(self.db_url)
        # This user's keys (in their home, never in the store). Workers get the keyring with
        # each task: they sign what they write and check what they read.
        self.keyring = load_keyring()
        self.artifacts: ArtifactStore = artifact_store(self.artifacts_url, keyring=self.keyring)
        self.owner_id = self._register()
        self.writer = Writer(self.store, self.owner_id, on_fenced=self._on_fenced)
        self.cache = StoreCacheView(self.store, self.artifacts, self.keyring)  # what planning reads
        self.active: dict[str, RunExecution] = {}
        self.recent: "weakref.WeakValueDictionary[str, RunExecution]" = weakref.WeakValueDictionary()
        self.current_run_id: str | None = os.environ.get("JUPYTER_FLOW_RUN_ID") or None
        self._subscribed: set[int] = set()
        self._clusters_registered: dict[str, str] = {}
        self._lock = threading.Lock()
        self._unrecorded: dict[str, RunExecution] = {}  # runs whose final records failed to write
        self._unrecorded_lock = threading.Lock()
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat_loop, name="jupyter-flow-heartbeat", daemon=True)
        self._beat.start()

    # ------------------------------------------------------------- liveness
    def _register(self) -> str:
        owner = self.store.register_owner(user=current_user(), host=host_facts()["host"], pid=os.getpid())
        # Teammates can trust this user's key only if they can find it.
        self.store.publish_signer(self.keyring.user, self.keyring.key_id, self.keyring.public_b64)
        return owner

    def _on_fenced(self) -> None:
        """The store declared this process dead (it stalled: SIGSTOP, a sleeping laptop, an
        overloaded machine). Its runs in flight are LOST there and stay so; register again so
        that later runs are recorded, and make those runs end LOST here too."""
        with self._lock:
            old = self.owner_id
            try:
                row = self.store.get_owner(old)
            except Exception:  # the store is unreachable: nothing to re-register with yet
                log.exception("jupyter_flow: could not check whether this process was fenced")
                return
            if row is not None and not row["fenced"]:
                return  # a late write for another reason; the owner is fine
            self.owner_id = self._register()
            self.writer.owner_id = self.owner_id
            lost = [e for e in self.active.values() if e.owner_id == old]
            for execution in lost:
                execution.fenced = True
        log.error(
            "jupyter_flow: this process stopped heartbeating for over %g s and the store declared it "
            "dead; runs %s are LOST (resume them with jf.resume). Registered again as owner %s.",
            heartbeat_timeout(), ", ".join(e.run_id for e in lost) or "(none)", self.owner_id,
        )

    def _heartbeat_loop(self) -> None:
        last_beat = time.monotonic()
        while not self._stop.wait(CANCEL_POLL_S):
            now = time.monotonic()
            if now - last_beat >= heartbeat_interval():
                last_beat = now
                try:
                    self.store.heartbeat(self.owner_id)
                except FencedWrite:
                    self._on_fenced()
                except Exception:  # a transient database error must not kill the heartbeat
                    log.exception("jupyter_flow: heartbeat failed")
                else:
                    if self._unrecorded:
                        self._record_unrecorded()
            active = list(self.active)
            if active:
                try:
                    requested = self.store.cancel_requested(active)
                except Exception:
                    log.exception("jupyter_flow: polling cancel requests failed")
                    continue
                for run_id in requested:
                    execution = self.active.get(run_id)
                    if execution is not None and not execution.cancel_requested:
                        execution.request_cancel()

    def close(self) -> None:
        self._stop.set()
        for execution in list(self.active.values()):
            execution.request_cancel()
            execution.wait(10)
        self.writer.stop()
        try:
            self.store.release_owner(self.owner_id)
        except Exception:  # closing: the reconciler will mark anything left
            log.debug("jupyter_flow: releasing the owner failed", exc_info=True)
        self.store.close()

    # --------------------------------------------------------------- events
    def subscribe(self, handle, execution: RunExecution) -> None:
        client = handle.client
        with self._lock:
            self.active[execution.run_id] = execution
            if id(client) in self._subscribed:
                return
            self._subscribed.add(id(client))

        def on_event(event):
            msg = event[1] if isinstance(event, tuple) else event
            if not isinstance(msg, dict):
                return
            target = self.active.get(msg.get("run")) or self.recent.get(msg.get("run"))
            if target is not None:
                target.on_event(msg)

        client.subscribe_topic(TOPIC, on_event)

    def record_later(self, execution: RunExecution) -> None:
        """Keep a run whose final records failed to reach the store, to write them again."""
        with self._unrecorded_lock:
            self._unrecorded[execution.run_id] = execution

    def _record_unrecorded(self) -> None:
        """Write the final state of runs whose records failed (a full disk, a store that was
        down), now that a heartbeat went through: their tasks, then the run, FAILED with the
        error the process reported (their values may not all be cached; jf.resume reruns
        what is not)."""
        with self._unrecorded_lock:
            pending = list(self._unrecorded.items())
        for run_id, execution in pending:
            try:
                if self.store.get_run(run_id) is None:
                    # Its creation never reached the store either: there is nothing to end.
                    log.info("jupyter_flow: run %s was never recorded; nothing to write for it", run_id)
                    with self._unrecorded_lock:
                        self._unrecorded.pop(run_id, None)
                    continue
                self.store.update_tasks(self.owner_id, execution.final_records())
                self.store.finish_run(run_id, self.owner_id, "FAILED",
                                      error=f"{execution.error} (recorded once the store accepted writes again)")
            except FencedWrite:  # declared LOST meanwhile: that is its final state now
                log.info("jupyter_flow: run %s was declared LOST before its records could be written", run_id)
            except Exception as err:  # still refused: try again at the next heartbeat
                log.debug("jupyter_flow: run %s still cannot be recorded: %s", run_id, err)
                continue
            else:
                log.info("jupyter_flow: run %s recorded (FAILED) now that the store accepts writes", run_id)
            with self._unrecorded_lock:
                self._unrecorded.pop(run_id, None)

    def run_ended(self, execution: RunExecution) -> None:
        self.recent[execution.run_id] = execution
        self.active.pop(execution.run_id, None)

    def register_cluster(self, handle) -> None:
        key = f"{handle.name}|{handle.address}"
        if key in self._clusters_registered:
            return
        try:
            cluster_id = self.store.register_cluster(self.owner_id, handle.name, handle.address, handle.dashboard_link)
        except Exception:
            log.exception("jupyter_flow: could not record the cluster in use")
            return
        self._clusters_registered[key] = cluster_id

    # ------------------------------------------------------------ run control
    def cancel(self, run_id: str) -> None:
        """Ask the run's owner to cancel it (noticed within about a second, from any process)."""
        self.writer.flush()
        row = self.store.get_run(run_id)
        if row is None:
            raise FlowError(f"jf.cancel: no run with id {run_id!r}")
        if row["status"] not in (RunStatus.RUNNING.value, RunStatus.PENDING.value):
            raise FlowError(f"jf.cancel: run {run_id} already ended {row['status']}")
        self.store.request_cancel(run_id, by=current_user())
        execution = self.active.get(run_id)
        if execution is not None:
            execution.request_cancel()

    def resume(self, run_id: str, *, cluster: str | None = None) -> RunExecution:
        """Rerun a run from its stored graph snapshot; only what is not cached reruns."""
        self.writer.flush()
        self.store.reconcile(heartbeat_timeout())
        row = self.store.get_run(run_id)
        if row is None:
            raise FlowError(f"jf.resume: no run with id {run_id!r}")
        if row["status"] in (RunStatus.RUNNING.value, RunStatus.PENDING.value) and run_id in self.active:
            raise FlowError(f"jf.resume: run {run_id} is still running in this process; wait for it or cancel it")
        digest = row.get("snapshot")
        if not digest:
            raise FlowError(f"jf.resume: run {run_id} has no stored graph snapshot, so it cannot be resumed")
        try:
            targets = snapshots.load(self.artifacts.get(digest))  # a flat table, or older: the nodes
        except ArtifactError as err:  # missing, corrupt, or not signed by a key this user trusts
            raise type(err)(
                f"jf.resume: the graph snapshot of run {run_id} ({digest[:12]}…) cannot be loaded from the "
                f"artifact store at {self.artifacts.url}: {err} It may have been collected by "
                "`jupyter flow cache gc`, written with another artifacts location or by an older version; "
                "rerun the notebook or script instead (cached ops are restored).", digest
            ) from None
        stored = row.get("cluster")
        return self.submit(targets, name=row.get("name"), kind=RunKind.RESUME.value,
                           cluster=cluster or (stored if stored and stored in clusters.profiles() else None),
                           parent_id=row.get("parent_id"), resumed_from=run_id, params=row.get("params") or {})

    def load_result(self, outputs: dict[str, str], names: Iterable[str] | None = None) -> dict[str, Any]:
        """The values of a task's outputs (output name -> artifact hash), loaded from the
        artifact store: ``names`` of them, or all. ArtifactError when one cannot be used."""
        wanted = list(outputs) if names is None else list(names)
        return {name: self.artifacts.get(outputs[name]) for name in wanted}

    # --------------------------------------------------------------- plan
    def submit(
        self,
        targets: Any,
        *,
        name: str | None = None,
        kind: str = RunKind.API.value,
        cluster: str | None = None,
        force: Iterable[Any] | None = None,
        parent_id: str | None = None,
        resumed_from: str | None = None,
        params: dict | None = None,
        notebook: str | None = None,
        captured: dict[Node, dict] | None = None,
        namespace: dict | None = None,
        task_provenance: dict[Node, dict] | None = None,
    ) -> RunExecution:
        """Plan and start a run; raises FlowError (recording nothing) for bad input."""
        self.writer.flush()  # cache entries of earlier runs must be visible to the lookup
        # Planning allocates a few small objects per op and frees none of them: a cyclic
        # GC pass in the middle (which scans the whole heap, Dask included) would only cost
        # time. Collection resumes as soon as the plan is made.
        with _gc_paused():
            return self._submit(targets, name=name, kind=kind, cluster=cluster, force=force,
                                parent_id=parent_id, resumed_from=resumed_from, params=params,
                                notebook=notebook, captured=captured, namespace=namespace,
                                task_provenance=task_provenance)

    def _submit(self, targets, *, name, kind, cluster, force, parent_id, resumed_from, params,
                notebook, captured, namespace, task_provenance) -> RunExecution:
        graph = targets if isinstance(targets, Graph) else Graph(targets)
        forced = forced_set(force)
        if cluster is not None and "://" not in cluster and cluster not in clusters.profiles():
            raise FlowError(
                f"unknown cluster profile {cluster!r}; known profiles: {sorted(clusters.profiles())}. "
                "Define it in dask config under flow.clusters."
            )
        # One block of ids: the run's, then its tasks' in graph order (they sort so).
        ids = new_ids(len(graph.nodes) + 1)
        run_id = ids[0]
        flight = self.single_flight(run_id)
        p = plan(graph, self.cache, forced, params, task_ids=ids[1:], captured=captured, namespace=namespace,
                 pools=lambda: clusters.pools_for(cluster), claim=flight.claim)
        states, miss_set = p.tasks, p.misses
        handle = None
        if miss_set:
            _ship_local_modules({s.node.op for s in states if s.position in miss_set})
            handle = clusters.connect(cluster)
            self.register_cluster(handle)
        cluster_name = handle.name if handle is not None else (cluster or clusters._current[0] or clusters.default_profile())
        if parent_id is None and kind != RunKind.BATCH.value:
            # jf.run inside a notebook run (a batch execution) belongs to that run.
            parent_id = os.environ.get("JUPYTER_FLOW_RUN_ID") or None
        # A run with nothing to compute is recorded finished in one transaction.
        complete = not miss_set
        run_row = {
            "id": run_id, "name": name, "kind": str(kind),
            "status": (RunStatus.SUCCESS if complete else RunStatus.RUNNING).value,
            "parent_id": parent_id, "resumed_from": resumed_from, "owner_id": self.owner_id,
            "owner": flow_user(), "user": current_user(), "host": host_facts()["host"], "params": params or {},
            "metrics": {}, "cluster": cluster_name, "notebook": notebook,
            "environment": _environment(states),
            "graph": {"targets": [graph.position[n] for n in graph.target_nodes()]},
        }
        extra = task_provenance or {}
        task_rows = [task_row(s, extra.get(s.node)) for s in states]
        for s, row in zip(states, task_rows):
            s.provenance = dict(row["provenance"])  # live updates extend it, never replace it
        # Recorded by the writer, ahead of every later write of this run.
        self.writer.call(self.store.create_run, run_row, task_rows, run_id=run_id)
        if not os.environ.get("JUPYTER_FLOW_RUN_ID") and kind in (RunKind.API.value, RunKind.RESUME.value,
                                                                   RunKind.CELL.value):
            # jf.record outside an op goes to the last run this process made, except in a
            # batch execution, whose metrics always belong to its notebook run. (In a kernel
            # jf.record never gets here for a cell run: it goes to the notebook run; a cell
            # run outside one is an exported script's.)
            self.current_run_id = run_id
        execution = RunExecution(self, run_id, graph, states, owner_id=self.owner_id, handle=handle,
                                 stage=p.stage, waits=p.waits, deferred=p.deferred, expand=p.expand,
                                 forced=forced, recorded_final=complete, flight=flight)
        execution.name = name
        self.recent[run_id] = execution
        # The snapshot lets any process resume the run; it is written off the critical path
        # (a run with nothing to compute is finished at once and needs none).
        if miss_set:
            self.writer.call(self._write_snapshot, run_id, graph)
        execution.start()
        return execution

    def single_flight(self, run_id: str) -> SingleFlight:
        """The claims of run ``run_id`` (engine/single_flight.py), for this process's owner."""
        return SingleFlight(self.store, run_id, owner=lambda: self.owner_id, on_fenced=self._on_fenced)

    def _write_snapshot(self, run_id: str, graph: Graph) -> None:
        try:
            # Sealed: the pickled ops carry captured globals, which may be secrets (API_TOKEN).
            # A flat table of nodes (core/snapshot.py): the nodes themselves, pickled, nest
            # as deep as the graph and a long chain exceeds pickle's recursion limit.
            info = self.artifacts.put(GraphSnapshot.of(graph), seal=True)
        except Exception as err:  # unpicklable graphs can still run; they just cannot be resumed
            log.warning("jupyter_flow: run %s cannot be resumed elsewhere: %s", run_id, err)
            return
        try:
            self.store.put_artifacts([{"hash": info.digest, "size": info.size, "serializer": info.serializer,
                                       "serializer_version": info.serializer_version, "type": "graph snapshot",
                                       "uri": info.uri}])
            self.store.set_snapshot(run_id, info.digest)
        except FencedWrite:
            pass


@contextlib.contextmanager
def _gc_paused():
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


_shipped: set[str] = set()


def _ship_local_modules(ops) -> None:
    """Send the user's own modules by value: workers may not be able to import them."""
    import sys

    import cloudpickle

    for op in ops:
        names = {getattr(op.func, "__module__", None)}
        if op._fingerprint is not None:
            names.update(label.rsplit(".", 1)[0] for label in op._fingerprint.deps)
        for name in names:
            if not name or name in _shipped or name in ("__main__", "__mp_main__"):
                continue
            module = sys.modules.get(name)
            if module is not None and keylib.is_local_module(name):
                cloudpickle.register_pickle_by_value(module)
            _shipped.add(name)


def _environment(states) -> dict:
    packages: dict[str, str] = {}
    python = None
    seen: set[int] = set()
    for s in states:
        env = s.components.get("env", {})
        if id(env) in seen:  # the nodes of one op share their op's env
            continue
        seen.add(id(env))
        python = env.get("python", python)
        packages.update(env.get("packages", {}))
    return {"python": python, "packages": dict(sorted(packages.items()))}


_engines: dict[tuple[str, str], Engine] = {}
_engines_lock = threading.Lock()


def get_engine(db_url: str | None = None, artifacts_url: str | None = None) -> Engine:
    """The engine for the current configuration (one per store, created on first use)."""
    key = (resolve_db_url(db_url), resolve_artifacts_url(artifacts_url))
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = Engine(*key)
            _engines[key] = engine
        return engine


def shutdown() -> None:
    """Close every engine of this process (tests and clean exits)."""
    with _engines_lock:
        engines = list(_engines.values())
        _engines.clear()
    for engine in engines:
        engine.close()


import atexit  # noqa: E402

atexit.register(shutdown)
