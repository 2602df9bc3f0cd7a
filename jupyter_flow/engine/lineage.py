"""Where a value came from: lineage of runs, tasks and artifacts, and W3C PROV-JSON export."""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..core.errors import FlowError

if TYPE_CHECKING:
    from ..store.records import TaskRecord

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def _task_summary(task: TaskRecord) -> dict:
    return {
        "id": task.id, "run_id": task.run_id, "name": task.name, "index": task.index,
        "status": task.status, "cached": task.cached, "key": task.key,
        "outputs": task.outputs or {},
        "cached_from": (task.provenance or {}).get("cached_from"),
    }


def task_lineage(store, task_id: str) -> dict:
    """A task, the tasks it took inputs from (transitively) and those that used its outputs."""
    task = store.get_task(task_id)
    if task is None:
        raise FlowError(f"no task with id {task_id!r}")
    tasks = {t.node: t for t in store.get_tasks(task.run_id)}
    down: dict[str, list[str]] = {}
    for t in tasks.values():
        for up in t.upstream or []:
            down.setdefault(up, []).append(t.node)

    def walk(start: str, edges) -> list[dict]:
        seen, order, stack = set(), [], list(edges(start))
        while stack:
            node = stack.pop()
            if node in seen or node not in tasks:
                continue
            seen.add(node)
            order.append(_task_summary(tasks[node]))
            stack.extend(edges(node))
        return order

    upstream = walk(task.node, lambda n: tasks[n].upstream or [] if n in tasks else [])
    downstream = walk(task.node, lambda n: down.get(n, []))
    producer = None
    cached_from = (task.provenance or {}).get("cached_from")
    if cached_from and cached_from != task_id:
        original = store.get_task(cached_from)
        producer = _task_summary(original) if original else {"id": cached_from, "missing": True}
    return {"kind": "task", "task": _task_summary(task), "upstream": upstream,
            "downstream": downstream, "produced_by": producer}


def artifact_lineage(store, digest: str) -> dict:
    """The tasks that produced an artifact, each with its own upstream lineage."""
    producers = store.artifact_runs(digest)
    if not producers and store.get_artifact(digest) is None:
        raise FlowError(f"no artifact {digest} is recorded")
    return {"kind": "artifact", "artifact": store.get_artifact(digest) or {"hash": digest},
            "produced_by": [task_lineage(store, p.id) for p in producers]}


def run_lineage(store, run_id: str) -> dict:
    run = store.get_run(run_id)
    if run is None:
        raise FlowError(f"no run with id {run_id!r}")
    tasks = store.get_tasks(run_id)
    by_node = {t.node: t.id for t in tasks}
    edges = [{"from": by_node[u], "to": t.id} for t in tasks for u in (t.upstream or []) if u in by_node]
    return {"kind": "run", "run": {"id": run_id, "name": run.name, "status": run.status},
            "tasks": [_task_summary(t) for t in tasks], "edges": edges}


def lineage(store, identifier: str) -> dict:
    """Lineage of a run id, a task id or an artifact hash."""
    if _HEX64.match(identifier):
        return artifact_lineage(store, identifier)
    if store.get_task(identifier) is not None:
        return task_lineage(store, identifier)
    if store.get_run(identifier) is not None:
        return run_lineage(store, identifier)
    raise FlowError(f"{identifier!r} is not a run id, a task id or an artifact hash in this store")


def lineage_graph(store, identifier: str, *, artifact_exists=None, limit: int = 2000) -> dict:
    """Upstream lineage as a graph, for UIs: ``root``, ``tasks``, ``artifacts`` and
    ``edges`` (upstream task -> task, task -> artifact it output; a CACHED task lists the
    artifacts it restored), following upstream nodes back to the sources, at most
    ``limit`` tasks (``truncated`` says when more were left out)."""
    tasks: dict[str, TaskRecord] = {}
    artifacts: set[str] = set()
    edges: set[tuple[str, str]] = set()
    run_tasks: dict[str, dict[str, TaskRecord]] = {}
    frontier: list[TaskRecord] = []

    def by_node(run_id: str) -> dict[str, TaskRecord]:
        if run_id not in run_tasks:
            run_tasks[run_id] = {t.node: t for t in store.get_tasks(run_id)}
        return run_tasks[run_id]

    def visit(task: TaskRecord) -> None:
        if task.id not in tasks and len(tasks) < limit:
            tasks[task.id] = task
            frontier.append(task)

    if _HEX64.match(identifier):
        producers = store.artifact_runs(identifier)
        if not producers and not (artifact_exists and artifact_exists(identifier)):
            raise FlowError(f"no task or artifact {identifier!r} in the store")
        artifacts.add(identifier)
        for task in producers:
            edges.add((task.id, identifier))
            visit(task)
        root = {"type": "artifact", "id": identifier}
    else:
        task = store.get_task(identifier)
        if task is None:
            raise FlowError(f"no task or artifact {identifier!r} in the store")
        visit(task)
        root = {"type": "task", "id": identifier}
    while frontier:
        task = frontier.pop()
        for digest in (task.outputs or {}).values():
            artifacts.add(digest)
            edges.add((task.id, digest))
        siblings = by_node(task.run_id)
        for node in task.upstream or []:
            upstream = siblings.get(node)
            if upstream is not None:
                edges.add((upstream.id, task.id))
                visit(upstream)
    return {
        "root": root,
        "tasks": [{k: getattr(t, k) for k in ("id", "run_id", "name", "index", "status", "cached", "key", "outputs")}
                  for t in tasks.values()],
        "artifacts": sorted(artifacts),
        "edges": [{"source": s, "target": t} for s, t in sorted(edges)],
        "truncated": len(tasks) >= limit,
    }


# --------------------------------------------------------------------------- PROV


NS = "urn:jupyter-flow:"


def prov_document(store, run_id: str) -> dict:
    """The run as a W3C PROV-JSON document: tasks are activities, artifacts entities,
    the user an agent; ``used``/``wasGeneratedBy`` follow the data, and the run's
    activity is informed by its tasks."""
    run = store.get_run(run_id)
    if run is None:
        raise FlowError(f"no run with id {run_id!r}")
    tasks = store.get_tasks(run_id)
    by_node = {t.node: t for t in tasks}
    doc: dict[str, dict] = {
        "prefix": {"jf": NS},
        "agent": {}, "activity": {}, "entity": {},
        "used": {}, "wasGeneratedBy": {}, "wasAssociatedWith": {}, "wasInformedBy": {},
    }
    user = f"jf:user/{run.user or 'unknown'}"
    doc["agent"][user] = {"prov:type": {"$": "prov:Person", "type": "prov:QUALIFIED_NAME"},
                          "prov:label": run.user or "unknown"}
    run_act = f"jf:run/{run_id}"
    doc["activity"][run_act] = _activity(run.name or run.kind, run.started_at,
                                         run.ended_at, {"jf:status": run.status, "jf:kind": run.kind})
    doc["wasAssociatedWith"][f"_:assoc-{run_id}"] = {"prov:activity": run_act, "prov:agent": user}
    counter = 0
    for task in tasks:
        act = f"jf:task/{task.id}"
        attributes = {"jf:status": task.status, "jf:cached": bool(task.cached)}
        if task.key:
            attributes["jf:key"] = task.key
        if task.worker:
            attributes["jf:worker"] = task.worker
        doc["activity"][act] = _activity(task.name, task.started_at, task.ended_at, attributes)
        counter += 1
        doc["wasInformedBy"][f"_:inf{counter}"] = {"prov:informed": run_act, "prov:informant": act}
        doc["wasAssociatedWith"][f"_:assoc-{task.id}"] = {"prov:activity": act, "prov:agent": user}
        for name, digest in (task.outputs or {}).items():
            entity = f"jf:artifact/{digest}"
            doc["entity"].setdefault(entity, {"prov:label": name, "jf:hash": digest})
            counter += 1
            doc["wasGeneratedBy"][f"_:gen{counter}"] = {"prov:entity": entity, "prov:activity": act}
        for up in task.upstream or []:
            for digest in ((by_node[up].outputs if up in by_node else None) or {}).values():
                entity = f"jf:artifact/{digest}"
                doc["entity"].setdefault(entity, {"jf:hash": digest})
                counter += 1
                doc["used"][f"_:use{counter}"] = {"prov:activity": act, "prov:entity": entity}
    return {k: v for k, v in doc.items() if v}


def _activity(label: str, start: Any, end: Any, attributes: dict) -> dict:
    activity = {"prov:label": label, **attributes}
    if start:
        activity["prov:startTime"] = _iso(start)
    if end:
        activity["prov:endTime"] = _iso(end)
    return activity
