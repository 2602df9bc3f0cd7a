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
from ..core.errors import ArtifactError, FlowError, FencedWrite
from ..core.graph import Graph, order
from ..core.ids import new_ids
from ..core.op import MapOp, Node, Op, OutputRef
from ..core.provenance import current_user, flow_user, host_facts
from ..core.resources import strict as strict_resources
from ..core.secrets import redact
from ..core.snapshot import GraphSnapshot
from ..core.settings import heartbeat_timeout, resolve_artifacts_url, resolve_db_url
from ..core.status import RunKind, RunStatus, TaskStatus
from ..store import Store
from . import cluster as clusters
from . import pools as pool_lib
from .execution import RunExecution, TaskState
from .worker import TOPIC, Ref, TaskSpec, execute, execute_chain, load_cached
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
        forced = _forced_set(force)
        if cluster is not None and "://" not in cluster and cluster not in clusters.profiles():
            raise FlowError(
                f"unknown cluster profile {cluster!r}; known profiles: {sorted(clusters.profiles())}. "
                "Define it in dask config under flow.clusters."
            )
        # One block of ids: the run's, then its tasks' in graph order (they sort so).
        ids = new_ids(len(graph.nodes) + 1)
        run_id = ids[0]
        upstream_keys: dict[Node, str] = {}
        states: list[TaskState] = []
        position = graph.position
        captured = captured or {}
        memo: dict = {}
        for pos, node in enumerate(graph.nodes):
            tk = keylib.task_key(node, upstream_keys, captured=captured.get(node), namespace=namespace, memo=memo)
            upstream_keys[node] = tk.key
            states.append(TaskState(
                id=ids[pos + 1], node=node, position=pos, name=node.op.name, index=node.index,
                key=tk.key, cacheable=tk.disabled_reason is None, components=tk.components,
                reason=tk.disabled_reason, upstream=[position[u] for u in graph.deps[node]],
                resources=dict(node.op.resources),
            ))
        def is_forced(s: TaskState) -> bool:
            return bool(forced) and (s.node in forced or s.node.op in forced)

        lookup = [s.key for s in states if s.cacheable and not is_forced(s)]
        hits = self.usable_hits(states, self.store.lookup_cache(lookup, components=False)) if lookup else {}
        # Ops whose cached value points outside the store (a shell op's output files) say
        # whether it still holds.
        for s in states:
            if s.key in hits and hasattr(s.node.op, "cached_value_usable") and not is_forced(s):
                if not self._cached_value_usable(s.node.op, hits[s.key]["outputs"]):
                    self.store.drop_cache([s.key])
                    hits.pop(s.key)
                    s.reason = "file changed (an output file of the cached run is gone or was modified)"
        verified: set[int] = set()
        while True:
            miss_set = {s.position for s in states if not s.cacheable or is_forced(s) or s.key not in hits}
            downstream_needs = {u for s in states if s.position in miss_set for u in s.upstream}
            # Hits that a rerun task reads must be readable: a corrupt one is recomputed,
            # which may in turn need its own upstream values.
            dropped = False
            for pos in sorted(downstream_needs - miss_set - verified):
                s = states[pos]
                verified.add(pos)
                if not self._artifacts_ok(hits[s.key]["outputs"]):
                    self.store.drop_cache([s.key])
                    hits.pop(s.key)
                    s.reason = "no cache entry (its stored result was corrupt or missing)"
                    dropped = True
            if not dropped:
                break
        need_reasons = dict.fromkeys(s.name for s in states if s.position in miss_set and s.reason is None)
        origins = {s.name: (s.components or {}).get("origin") for s in states if s.name in need_reasons}
        previous = self.store.last_components(list(need_reasons), origins) if need_reasons else {}
        for s in states:
            if s.position in miss_set:
                if is_forced(s):
                    s.reason = "forced"
                    s.forced = True
                elif s.reason is None:
                    s.reason = keylib.explain(s.components, previous.get(s.name), params=params)
            else:
                _restore(s, hits[s.key])
        if miss_set:
            # Each task's pool and Dask resources; a task that fits no pool fails here,
            # before anything is claimed or recorded.
            pool_lib.annotations([s for s in states if s.position in miss_set], clusters.pools_for(cluster))
        waits = self._claim(run_id, states, miss_set, is_forced) if miss_set else {}
        waiting = {t.position for tasks in waits.values() for t in tasks}
        # Dynamic maps are expanded once their list is known.
        expand = {s.position for s in states
                  if s.position in miss_set and s.position not in waiting and isinstance(s.node.op, MapOp)}
        # Tasks that need a value another run is computing, or a map's gathered values,
        # start once it is there.
        deferred: set[int] = set()
        for s in states:
            if s.position in miss_set and s.position not in waiting | expand and any(
                    u in waiting or u in deferred or u in expand for u in s.upstream):
                deferred.add(s.position)
        stage = miss_set - waiting - deferred - expand
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
        task_rows = [_task_row(run_id, s, extra.get(s.node)) for s in states]
        for s, row in zip(states, task_rows):
            s.provenance = dict(row["provenance"])  # live updates extend it, never replace it
        # Recorded by the writer, ahead of every later write of this run.
        self.writer.call(self.store.create_run, run_row, task_rows, run_id=run_id)
        if not os.environ.get("JUPYTER_FLOW_RUN_ID") and kind in (RunKind.API.value, RunKind.RESUME.value):
            # jf.record outside an op goes to the last run this process made, except in a
            # batch execution, whose metrics always belong to its notebook run.
            self.current_run_id = run_id
        execution = RunExecution(self, run_id, graph, states, owner_id=self.owner_id, handle=handle,
                                 stage=stage, waits=waits, deferred=deferred, expand=expand,
                                 forced=forced, recorded_final=complete)
        execution.name = name
        self.recent[run_id] = execution
        # The snapshot lets any process resume the run; it is written off the critical path
        # (a run with nothing to compute is finished at once and needs none).
        if miss_set:
            self.writer.call(self._write_snapshot, run_id, graph)
        execution.start()
        return execution

    def _claim(self, run_id: str, states: list[TaskState], miss_set: set[int], is_forced) -> dict[str, list[TaskState]]:
        """Single flight: claim the keys this run is about to compute.

        Keys another live run is computing are not computed again: their tasks wait
        (WAITING) and are restored from the cache entry that run records; a key computed
        meanwhile is restored at once; a second task of this run with the same key waits
        for the first. Returns key -> the tasks waiting for it; ``miss_set`` loses the
        tasks restored here.
        """
        wanted: dict[str, str] = {}
        first_of: dict[str, TaskState] = {}
        for s in states:
            if s.position in miss_set and s.cacheable and not is_forced(s) and s.key not in wanted:
                wanted[s.key] = s.id
                first_of[s.key] = s
        if not wanted:
            return {}
        try:
            outcome = self.store.claim_keys(self.owner_id, run_id, wanted)
        except FencedWrite:
            self._on_fenced()
            outcome = self.store.claim_keys(self.owner_id, run_id, wanted)
        waits: dict[str, list[TaskState]] = {}
        for s in states:
            if s.position not in miss_set or s.key not in outcome or is_forced(s) or not s.cacheable:
                continue
            state = outcome[s.key]
            if state["state"] == "cached" and not self.usable_entry(state):
                s.reason = self.untrusted_reason(state)  # computed here; the entry stays theirs
            elif state["state"] == "cached":
                _restore(s, state, note="computed meanwhile by another run")
                miss_set.discard(s.position)
            elif state["state"] == "held":
                s.status = TaskStatus.WAITING
                s.waiting_for = state["run_id"]
                s.reason = (f"waiting for run {state['run_id']}, which is computing the same value "
                            "(it is restored from the cache when recorded)")
                waits.setdefault(s.key, []).append(s)
            elif first_of[s.key] is not s:
                s.status = TaskStatus.WAITING
                s.reason = f"waiting for task {first_of[s.key].id} of this run, which computes the same value"
                waits.setdefault(s.key, []).append(s)
        return waits
    # --------------------------------------------------------------- trust
    def usable_entry(self, entry: dict) -> bool:
        """Whether this user may load a cache entry: nothing in it is pickled, or its pickles
        are signed by a key this user holds or trusts (the artifacts' own signatures are
        checked again when loaded)."""
        signer = entry.get("signer")
        return signer is None or self.keyring.trusts(signer)

    def usable_hits(self, states: list[TaskState], hits: dict[str, dict]) -> dict[str, dict]:
        """``hits`` without the entries this user would refuse to unpickle; their tasks are
        computed here instead, saying why (the entries stay as they are: they are their
        producers' cache)."""
        refused = {key for key, entry in hits.items() if not self.usable_entry(entry)}
        if not refused:
            return hits
        for s in states:
            if s.key in refused:
                s.reason = self.untrusted_reason(hits[s.key])
        return {key: entry for key, entry in hits.items() if key not in refused}

    def untrusted_reason(self, entry: dict) -> str:
        signer = entry.get("signer")
        producer = self._signer_names(signer).get(signer) or "another user"
        return (f"no usable cache entry: the cached value was made by {producer} (key {signer}), whom you do "
                f"not trust, so it is computed here (`jupyter flow trust add {producer}` would reuse theirs)")

    def _signer_names(self, signer: str | None = None) -> dict[str, str]:
        names = getattr(self, "_signer_name_cache", None)
        if names is None or (signer is not None and signer not in names):
            try:
                names = {row["key_id"]: row["user"] for row in self.store.signers()}
            except Exception:  # only a name in a message: never a reason to fail a run
                log.debug("jupyter_flow: cannot read the published signers", exc_info=True)
                names = {}
            self._signer_name_cache = names
        return names

    def _cached_value_usable(self, op: Op, outputs: dict[str, str]) -> bool:
        try:
            values = {name: self.artifacts.get(digest) for name, digest in outputs.items()}
        except ArtifactError:
            return False
        return op.cached_value_usable(values if op.multi_output else values.get("return"))

    def _artifacts_ok(self, outputs: dict[str, str]) -> bool:
        for digest in outputs.values():
            try:
                self.artifacts.verify(digest)  # hash, and signature of pickles
            except ArtifactError:
                return False
        return True

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

    def _build_graph(self, run_id, states, miss_set, position):
        """The Dask graph of the tasks in ``miss_set``, with explicit keys, as one submission.

        A linear chain of small ops (each the only consumer of the one before) becomes
        one Dask task: a dependent hop costs milliseconds of scheduling, and the ops
        still report, write their artifacts and fail one by one. Upstream values come
        from tasks of this graph, from tasks submitted earlier in the run (their keys are
        still held), or are loaded from the artifacts of cached tasks.
        """
        from dask._task_spec import TaskRef
        from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

        downstream_needs = {u for s in states if s.position in miss_set for u in _referenced(s.node, position)
                            if u not in miss_set and states[u].dask_key is None}

        # A chain is fused only where the upstream value has no other consumer in the whole
        # run: a task of a later stage may still need it under its own key.
        consumers: dict[int, int] = {}
        for s in states:
            if not s.cached:
                for u in set(s.upstream):
                    consumers[u] = consumers.get(u, 0) + 1
        groups: list[list[TaskState]] = []
        group_of: dict[int, list[TaskState]] = {}
        # Upstream first. Positions are in that order, except for the tasks a dynamic map
        # adds after its gathering task.
        ordered = sorted(miss_set)
        if any(u > pos for pos in ordered for u in states[pos].upstream if u in miss_set):
            ordered = order({pos: [u for u in states[pos].upstream if u in miss_set] for pos in ordered})
        for s in (states[pos] for pos in ordered):
            ups = set(s.upstream)
            up = states[next(iter(ups))] if len(ups) == 1 else None
            if (up is not None and up.position in miss_set and not up.resources and not s.resources
                    and consumers.get(up.position) == 1):
                group = group_of[up.position]
            else:
                group = []
                groups.append(group)
            group.append(s)
            group_of[s.position] = group

        plain: dict[str, tuple] = {}
        by_resources: dict[tuple, dict[str, tuple]] = {}
        submit_keys = []
        for group in groups:
            key = f"jf-{group[0].id}"
            dep_keys: list[str] = []
            specs = []
            for member, s in enumerate(group):
                s.dask_key = key
                arg_positions: dict[int, int] = {}

                def template(value, member=member, arg_positions=arg_positions):
                    if isinstance(value, (Node, OutputRef)):
                        node = value.node if isinstance(value, OutputRef) else value
                        up = states[position[node]]
                        output = value.output if isinstance(value, OutputRef) else None
                        if member > 0:
                            return Ref(0, output)  # the previous op of the fused chain
                        if up.position not in arg_positions:
                            arg_positions[up.position] = len(dep_keys)
                            dep_keys.append(TaskRef(up.dask_key or f"jf-load-{up.id}"))
                        return Ref(arg_positions[up.position], output)
                    if isinstance(value, list):
                        return [template(v) for v in value]
                    if isinstance(value, tuple):
                        return tuple(template(v) for v in value)
                    if isinstance(value, dict):
                        return {k: template(v) for k, v in value.items()}
                    return value

                args = template(list(s.node.args))
                kwargs = template(dict(s.node.kwargs))
                specs.append(TaskSpec(run_id, s.id, s.node.op, tuple(args), kwargs, self.artifacts_url,
                                      captured=_watched_values(s.components), keyring=self.keyring))
            task = (execute, specs[0], *dep_keys) if len(specs) == 1 else (execute_chain, specs, *dep_keys)
            resources = group[0].annotation if group[0].annotation is not None else strict_resources(group[0].resources)
            if resources:
                by_resources.setdefault(tuple(sorted(resources.items())), {})[key] = task
            else:
                plain[key] = task
            submit_keys.append(key)
        consumer = {u: s for s in states if s.position in miss_set for u in _referenced(s.node, position)}
        for s in states:
            if s.position in downstream_needs:
                task = (load_cached, self.artifacts_url, dict(s.outputs), s.node.op.multi_output,
                        self.keyring)
                # On a cluster with pools the value is loaded on its reader's pool.
                where = pool_lib.load_annotation(consumer[s.position])
                if where:
                    by_resources.setdefault(tuple(sorted(where.items())), {})[f"jf-load-{s.id}"] = task
                else:
                    plain[f"jf-load-{s.id}"] = task
        layers = {"jupyter-flow": MaterializedLayer(plain)}
        layer_deps = {"jupyter-flow": set()}
        for i, (resources, part) in enumerate(by_resources.items()):
            name = f"jupyter-flow-res-{i}"
            layers[name] = MaterializedLayer(part, annotations={"resources": dict(resources)})
            layer_deps[name] = set()
        # Layer dependencies are only a hint for optimisation; every key is materialised.
        names = list(layers)
        for name in names[1:]:
            layer_deps[name] = {n for n in names if n != name and n < name}
        hlg = HighLevelGraph(layers, layer_deps)
        return hlg, submit_keys


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


def _forced_set(force) -> set:
    if force is None:
        return set()
    if isinstance(force, (Op, Node)):
        force = [force]
    out = set()
    for item in force:
        if isinstance(item, OutputRef):
            item = item.node
        if not isinstance(item, (Op, Node)):
            raise FlowError(f"force= takes ops or nodes, got {type(item).__name__}")
        out.add(item)
    return out


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


def _referenced(node: Node, position: dict) -> set[int]:
    """Positions of the nodes whose values ``node``'s arguments refer to."""
    return {position[n] for n in node.upstream()}


def _restore(s: TaskState, entry: dict, note: str | None = None) -> None:
    """Make ``s`` a cache hit of ``entry`` (a cache index row)."""
    s.status = TaskStatus.CACHED
    s.cached = True
    s.outputs = dict(entry["outputs"])
    s.metrics = dict(entry.get("metrics") or {})
    s.reason = "cached" if note is None else f"cached ({note})"
    s.provenance = {**s.provenance, "cached_from": entry.get("task_id")}


def _task_row(run_id: str, s: TaskState, extra: dict | None) -> dict:
    provenance = {"op": s.name, "key": s.key, "source_hash": s.components.get("code"), **s.provenance}
    if s.cached:
        # A restored task points at the execution that produced its outputs; that task
        # (and the cache entry) hold the full components and source. Keeping cached rows
        # small is what makes a fully cached rerun of 1,000 ops cheap.
        components = None
    else:
        components = s.components
        if s.node.op.source:
            provenance["source"] = s.node.op.source
    shell = getattr(s.node.op, "command", None)
    if shell is not None:
        kwargs = s.node.kwargs
        provenance["shell"] = {
            # Environment variables named like secrets (API_TOKEN) are not stored as they are.
            "command": shell, "environment": redact(kwargs.get("environment") or {}),
            "inputs": {k: (str(v) if isinstance(v, str) else "(output of an upstream op)")
                       for k, v in (kwargs.get("inputs") or {}).items()},
            "outputs": dict(kwargs.get("outputs") or {}), "cwd": kwargs.get("cwd"),
        }
    if extra:
        provenance.update(extra)
    return {
        "id": s.id, "node": str(s.position), "name": s.name, "index": s.index,
        "status": s.status.value, "cached": s.cached, "reason": s.reason, "key": s.key,
        "components": components, "attempts": 0, "provenance": provenance,
        "outputs": s.outputs, "upstream": [str(u) for u in s.upstream], "resources": s.resources,
        "metrics": s.metrics or None,
    }


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


def _watched_values(components: dict | None) -> dict[str, str] | None:
    """The tokens, at submission, of the data an op reads from the notebook by name (a
    cell's captured values): the worker compares them after the op ran, to tell the user
    when the op changed one in place (a change that stays on the worker)."""
    tokens = ((components or {}).get("tokens") or {}).get("globals") or {}
    watched = {name: tok for name, tok in tokens.items()
               if isinstance(tok, str) and tok.startswith("dask:")}  # containers, arrays, frames
    return watched or None
