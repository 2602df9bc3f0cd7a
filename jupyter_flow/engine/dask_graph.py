"""The Dask graph of a stage of a run: explicit keys, fused chains, pools as annotations.

Built as a HighLevelGraph of materialized layers (one per set of Dask resources) whose
tasks call the worker side (``execute``, ``execute_chain``, ``load_cached``) with TaskRefs
to their upstream values.
"""

from __future__ import annotations

from ..core.graph import order
from ..core.op import Node, OutputRef
from ..core.resources import strict as strict_resources
from . import placement
from .state import TaskState
from ..worker.task import Ref, TaskSpec, execute, execute_chain, load_cached


def build_graph(run_id: str, states: list, miss_set: set[int], position: dict, artifacts_url: str, keyring=None):
    """The Dask graph of the tasks in ``miss_set``, with explicit keys, as one submission.

    A linear chain of small ops (each the only consumer of the one before) becomes
    one Dask task: a dependent hop costs milliseconds of scheduling, and the ops
    still report, write their artifacts and fail one by one. Upstream values come
    from tasks of this graph, from tasks submitted earlier in the run (their keys are
    still held), or are loaded from the artifacts of cached tasks.
    """
    from dask._task_spec import TaskRef
    from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

    downstream_needs = {u for s in states if s.position in miss_set for u in referenced(s.node, position)
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
            specs.append(TaskSpec(run_id, s.id, s.node.op, tuple(args), kwargs, artifacts_url,
                                  captured=_watched_values(s.components), keyring=keyring))
        task = (execute, specs[0], *dep_keys) if len(specs) == 1 else (execute_chain, specs, *dep_keys)
        resources = group[0].annotation if group[0].annotation is not None else strict_resources(group[0].resources)
        if resources:
            by_resources.setdefault(tuple(sorted(resources.items())), {})[key] = task
        else:
            plain[key] = task
        submit_keys.append(key)
    consumer = {u: s for s in states if s.position in miss_set for u in referenced(s.node, position)}
    for s in states:
        if s.position in downstream_needs:
            task = (load_cached, artifacts_url, dict(s.outputs), s.node.op.multi_output,
                    keyring)
            # On a cluster with pools the value is loaded on its reader's pool.
            where = placement.load_annotation(consumer[s.position])
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


def referenced(node: Node, position: dict) -> set[int]:
    """Positions of the nodes whose values ``node``'s arguments refer to."""
    return {position[n] for n in node.upstream()}


def _watched_values(components: dict | None) -> dict[str, str] | None:
    """The tokens, at submission, of the data an op reads from the notebook by name (a
    cell's captured values): the worker compares them after the op ran, to tell the user
    when the op changed one in place (a change that stays on the worker)."""
    tokens = ((components or {}).get("tokens") or {}).get("globals") or {}
    watched = {name: tok for name, tok in tokens.items()
               if isinstance(tok, str) and tok.startswith("dask:")}  # containers, arrays, frames
    return watched or None
