"""Planning a run: cache keys, hits, reasons, pools, and what starts when.

``plan(graph, cache, forced, params)`` is pure given its inputs: the cache is read through
a small :class:`CacheView` (the store's for real runs, :class:`MemoryCacheView` in tests),
single flight is a ``claim`` callable (``engine/single_flight.py``), and ids and pools are
passed in. Nothing here talks to a cluster, writes a record or reads the clock. The first
plan of a run (``Engine.submit``) and the expansion of a dynamic map once its list is known
(``plan_map``) use the same rules.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..core import keys as keylib
from ..core.errors import ArtifactError, FlowError
from ..core.graph import Graph
from ..core.ids import new_ids
from ..core.op import MapOp, Node, Op, OutputRef
from . import placement
from . import single_flight
from .state import TaskState, restore

log = logging.getLogger("jupyter_flow.engine")

Claim = Callable[[dict], dict]  # key -> task id wanted  ->  key -> claim outcome (store.claim_keys)

CORRUPT = "no cache entry (its stored result was corrupt or missing)"
FILE_CHANGED = "file changed (an output file of the cached run is gone or was modified)"


class CacheView:
    """What planning needs of the cache. ``lookup`` is the one method to write; the others
    have the answers of a cache whose entries are all trusted and readable."""

    def lookup(self, key: str) -> dict | None:
        """The entry of ``key`` (outputs, task_id, metrics, signer), or None."""
        raise NotImplementedError

    def lookup_many(self, keys: Sequence[str]) -> dict[str, dict]:
        """key -> entry for the keys that have one (a store answers them in one query)."""
        found = {}
        for key in keys:
            entry = self.lookup(key)
            if entry is not None:
                found[key] = entry
        return found

    def refusal(self, entry: dict) -> str | None:
        """Why this user may not load ``entry`` (an untrusted signer), or None."""
        return None

    def readable(self, entry: dict) -> bool:
        """Whether the entry's artifacts are there and intact (checked for values a rerun reads)."""
        return True

    def value_usable(self, op: Op, entry: dict) -> bool:
        """Whether a value pointing outside the cache (a shell op's files) still holds."""
        return True

    def drop(self, key: str) -> None:
        """Forget an entry found unusable for everyone (corrupt, files gone)."""

    def previous(self, names: list[str], origins: Mapping[str, str | None]) -> dict[str, dict]:
        """Components of the last entry of each op name, to explain a miss."""
        return {}


class MemoryCacheView(CacheView):
    """A cache in a dict, for tests and tools: ``MemoryCacheView({key: {"outputs": …}})``.

    >>> view = MemoryCacheView({"k": {"outputs": {"return": "h"}, "task_id": "t"}})
    >>> view.lookup("k")["task_id"], view.lookup("other")
    ('t', None)
    """

    def __init__(self, entries: Mapping[str, dict] | None = None, *, untrusted: Iterable[str] = (),
                 unreadable: Iterable[str] = (), unusable: Iterable[str] = (),
                 previous: Mapping[str, dict] | None = None):
        self.entries = dict(entries or {})
        self.untrusted = set(untrusted)  # signers this user does not trust
        self.unreadable = set(unreadable)  # keys whose artifacts are corrupt
        self.unusable = set(unusable)  # keys whose outside value changed
        self.last = dict(previous or {})
        self.dropped: list[str] = []

    def lookup(self, key: str) -> dict | None:
        return self.entries.get(key)

    def refusal(self, entry: dict) -> str | None:
        signer = entry.get("signer")
        return f"no usable cache entry: signed by {signer}, whom you do not trust" if signer in self.untrusted else None

    def readable(self, entry: dict) -> bool:
        return self._key_of(entry) not in self.unreadable

    def value_usable(self, op: Op, entry: dict) -> bool:
        return self._key_of(entry) not in self.unusable

    def _key_of(self, entry: dict) -> str | None:
        return next((k for k, e in self.entries.items() if e is entry), None) if self.unreadable or self.unusable \
            else None

    def drop(self, key: str) -> None:
        self.entries.pop(key, None)
        self.dropped.append(key)

    def previous(self, names, origins) -> dict[str, dict]:
        return {name: self.last[name] for name in names if name in self.last}


class StoreCacheView(CacheView):
    """The store's cache index, this user's keyring and the artifact store."""

    def __init__(self, store, artifacts, keyring):
        self.store = store
        self.artifacts = artifacts
        self.keyring = keyring
        self._signers: dict[str, str] | None = None

    def lookup(self, key: str) -> dict | None:
        return self.lookup_many([key]).get(key)

    def lookup_many(self, keys: Sequence[str]) -> dict[str, dict]:
        return self.store.lookup_cache(keys, components=False)

    def refusal(self, entry: dict) -> str | None:
        """Nothing in it is pickled, or its pickles are signed by a key this user holds or
        trusts: usable (the artifacts' own signatures are checked again when loaded)."""
        signer = entry.get("signer")
        if signer is None or self.keyring.trusts(signer):
            return None
        producer = self._signer_names(signer).get(signer) or "another user"
        return (f"no usable cache entry: the cached value was made by {producer} (key {signer}), whom you do "
                f"not trust, so it is computed here (`jupyter flow trust add {producer}` would reuse theirs)")

    def _signer_names(self, signer: str) -> dict[str, str]:
        if self._signers is None or signer not in self._signers:
            try:
                self._signers = {row["key_id"]: row["user"] for row in self.store.signers()}
            except Exception:  # only a name in a message: never a reason to fail a run
                log.debug("jupyter_flow: cannot read the published signers", exc_info=True)
                self._signers = {}
        return self._signers

    def readable(self, entry: dict) -> bool:
        for digest in entry["outputs"].values():
            try:
                self.artifacts.verify(digest)  # hash, and signature of pickles
            except ArtifactError:
                return False
        return True

    def value_usable(self, op: Op, entry: dict) -> bool:
        try:
            values = {name: self.artifacts.get(digest) for name, digest in entry["outputs"].items()}
        except ArtifactError:
            return False
        return op.cached_value_usable(values if op.multi_output else values.get("return"))

    def drop(self, key: str) -> None:
        self.store.drop_cache([key])

    def previous(self, names, origins) -> dict[str, dict]:
        return self.store.last_components(names, origins)


@dataclass
class Plan:
    """What a run (or a map's expansion) does: its tasks, hits restored, and what starts when.

    ``misses``: positions computed by this run; ``waits``: key -> tasks waiting for another
    computation of it; ``expand``: dynamic maps whose list is not known yet; ``deferred``:
    tasks that start once a value they need is there; ``stage``: what is submitted at once.
    """

    tasks: list[TaskState]
    misses: set[int] = field(default_factory=set)
    waits: dict[str, list[TaskState]] = field(default_factory=dict)
    expand: set[int] = field(default_factory=set)
    deferred: set[int] = field(default_factory=set)
    stage: set[int] = field(default_factory=set)

    @property
    def complete(self) -> bool:
        """Nothing to compute: every task was restored."""
        return not self.misses


def plan(graph: Graph, cache: CacheView, forced: Iterable[Any] = (), params: Mapping | None = None, *,
         task_ids: Sequence[str] | None = None, captured: Mapping[Node, dict] | None = None,
         namespace: Mapping | None = None, pools=None, claim: Claim | None = None) -> Plan:
    """Plan the run of ``graph``: one task per node, in graph order.

    ``forced``: ops and nodes rerun despite the cache; ``params``: the run's declared
    parameters (they name the reason of a miss); ``pools``: the cluster's PoolSet (or a
    function returning it, asked only when something is computed); ``claim``: single
    flight (None: no other run computes anything).

    >>> from jupyter_flow.core.op import op
    >>> @op
    ... def double(x): return 2 * x
    >>> p = plan(Graph(double(1)), MemoryCacheView())
    >>> [(t.name, t.reason) for t in p.tasks], p.stage
    ([('double', 'no cache entry')], {0})
    """
    forced = _as_set(forced)
    nodes = graph.nodes
    if task_ids is None:
        task_ids = new_ids(len(nodes))
    states = task_states(graph, task_ids, captured=captured, namespace=namespace)
    misses, waits = _resolve(states, cache, forced, params, pools, claim)
    return _schedule(states, misses, waits)


def task_states(graph: Graph, task_ids: Sequence[str], *, captured=None, namespace=None) -> list[TaskState]:
    """Each node's task with its cache key (keys of upstream nodes first: graph order)."""
    upstream_keys: dict[Node, str] = {}
    states: list[TaskState] = []
    position = graph.position
    captured = captured or {}
    memo: dict = {}
    for pos, node in enumerate(graph.nodes):
        tk = keylib.task_key(node, upstream_keys, captured=captured.get(node), namespace=namespace, memo=memo)
        upstream_keys[node] = tk.key
        states.append(TaskState(
            id=task_ids[pos], node=node, position=pos, name=node.op.name, index=node.index,
            key=tk.key, cacheable=tk.disabled_reason is None, components=tk.components,
            reason=tk.disabled_reason, upstream=[position[u] for u in graph.deps[node]],
            resources=dict(node.op.resources),
        ))
    return states


def plan_map(gather: TaskState, items: Any, source: TaskState, params_of: Mapping[Node, TaskState],
             cache: CacheView, forced: Iterable[Any] = (), *, first_position: int,
             task_ids: Sequence[str] | None = None, pools=None, claim: Claim | None = None,
             by_id: Mapping[str, TaskState] | None = None) -> Plan:
    """The mapped tasks of a dynamic map (``gather``) now that its list, ``items``, is known.

    Each item's key is the key ``op(item, **params)`` has anywhere (a static jf.map of the
    same items shares the cache); an item without a deterministic token gets a key derived
    from the map's key (which covers the upstream key) and its position. ``source`` made the
    list; ``params_of`` are the tasks of the map's other inputs. Positions start at
    ``first_position``; raises FlowError when ``items`` is not a list.
    """
    node = gather.node
    inner = node.op.inner
    if not isinstance(items, (list, tuple)):
        raise FlowError(
            f"jf.map({inner.name}): the items come from op {source.name!r}, which returned a "
            f"{type(items).__name__}; it must return a list (or tuple) of items"
        )
    if task_ids is None:
        task_ids = new_ids(len(items))
    upstream_keys = {n: t.key for n, t in params_of.items()}
    upstream = [source.position] + [t.position for t in params_of.values()]
    memo: dict = {}
    fresh: list[TaskState] = []
    for index, item in enumerate(items):
        item_node = inner(item, **node.kwargs)
        item_node.index = index
        tk = keylib.task_key(item_node, upstream_keys, memo=memo)
        key, cacheable, reason = tk.key, tk.disabled_reason is None, tk.disabled_reason
        if not cacheable and gather.cacheable:
            key = keylib.sha256_text(f"{gather.key}:{index}")
            cacheable, reason = True, None
        fresh.append(TaskState(
            id=task_ids[index], node=item_node, position=first_position + index, name=inner.name, index=index,
            key=key, cacheable=cacheable, components=tk.components, reason=reason,
            upstream=list(upstream), resources=dict(inner.resources),
        ))
    misses, waits = _resolve(fresh, cache, _as_set(forced), None, pools, claim, by_id=by_id)
    for s in fresh:
        s.provenance = {**s.provenance, "op": s.name, "key": s.key, "map": gather.id, "index": s.index}
    return _schedule(fresh, misses, waits)


def forced_set(force) -> set:
    """``force=`` as a set of ops and nodes; FlowError for anything else."""
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


def _as_set(forced) -> set:
    return forced if isinstance(forced, (set, frozenset)) else forced_set(forced)


def _resolve(states: list[TaskState], cache: CacheView, forced: set, params, pools, claim,
             by_id=None) -> tuple[set[int], dict[str, list[TaskState]]]:
    """Find hits, say why the others run, place them in pools and claim their keys.
    Returns the positions computed and the tasks waiting for another computation."""
    def is_forced(s: TaskState) -> bool:
        return bool(forced) and (s.node in forced or s.node.op in forced)

    base = states[0].position if states else 0
    lookup = [s.key for s in states if s.cacheable and not is_forced(s)]
    hits = cache.lookup_many(lookup) if lookup else {}
    refused = {}
    for key, entry in hits.items():
        why = cache.refusal(entry)
        if why is not None:
            refused[key] = why
    if refused:
        for s in states:
            if s.key in refused:
                s.reason = refused[s.key]  # computed here; the entry stays its producer's cache
        hits = {key: entry for key, entry in hits.items() if key not in refused}
    # Ops whose cached value points outside the store (a shell op's output files) say
    # whether it still holds.
    for s in states:
        if s.key in hits and hasattr(s.node.op, "cached_value_usable") and not is_forced(s):
            if not cache.value_usable(s.node.op, hits[s.key]):
                cache.drop(s.key)
                hits.pop(s.key)
                s.reason = FILE_CHANGED
    verified: set[int] = set()
    while True:
        misses = {s.position for s in states if not s.cacheable or is_forced(s) or s.key not in hits}
        needs = {u for s in states if s.position in misses for u in s.upstream}
        # Hits that a rerun task reads must be readable: a corrupt one is recomputed,
        # which may in turn need its own upstream values.
        dropped = False
        for pos in sorted(needs - misses - verified):
            if not 0 <= pos - base < len(states):
                continue  # a task of the run outside this plan (a map's list): already checked
            s = states[pos - base]
            verified.add(pos)
            if not cache.readable(hits[s.key]):
                cache.drop(s.key)
                hits.pop(s.key)
                s.reason = CORRUPT
                dropped = True
        if not dropped:
            break
    need_reasons = dict.fromkeys(s.name for s in states if s.position in misses and s.reason is None)
    origins = {s.name: (s.components or {}).get("origin") for s in states if s.name in need_reasons}
    previous = cache.previous(list(need_reasons), origins) if need_reasons else {}
    for s in states:
        if s.position in misses:
            if is_forced(s):
                s.reason = "forced"
                s.forced = True
            elif s.reason is None:
                s.reason = keylib.explain(s.components, previous.get(s.name), params=params)
        else:
            restore(s, hits[s.key])
    if not misses:
        return misses, {}
    # Each task's pool and Dask resources; a task that fits no pool fails here, before
    # anything is claimed or recorded.
    placement.annotations([s for s in states if s.position in misses], pools() if callable(pools) else pools)
    waits = single_flight.settle(states, misses, is_forced, claim, cache.refusal, by_id) if claim else {}
    return misses, waits


def _schedule(states: list[TaskState], misses: set[int], waits: dict[str, list[TaskState]]) -> Plan:
    waiting = {t.position for tasks in waits.values() for t in tasks}
    # Dynamic maps are expanded once their list is known.
    expand = {s.position for s in states
              if s.position in misses and s.position not in waiting and isinstance(s.node.op, MapOp)}
    # Tasks that need a value another run is computing, or a map's gathered values, start
    # once it is there.
    deferred: set[int] = set()
    if waiting or expand:
        blocked = waiting | expand
        for s in states:
            if s.position in misses and s.position not in blocked and any(
                    u in blocked or u in deferred for u in s.upstream):
                deferred.add(s.position)
    stage = misses - waiting - deferred - expand
    return Plan(tasks=states, misses=misses, waits=waits, expand=expand, deferred=deferred, stage=stage)
