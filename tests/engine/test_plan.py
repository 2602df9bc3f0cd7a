"""Planning without a store or a cluster: hits, misses, forced, reasons, claims, pools,
dynamic maps (engine/plan.py over an in-memory cache view)."""

from __future__ import annotations

import pytest

import jupyter_flow as jf
from jupyter_flow.core import keys as keylib
from jupyter_flow.core.errors import FlowError
from jupyter_flow.core.graph import Graph
from jupyter_flow.core.status import TaskStatus
from jupyter_flow.engine.plan import CORRUPT, MemoryCacheView, forced_set, plan, plan_map
from jupyter_flow.deploy.pools import parse_pools
from jupyter_flow.engine.single_flight import MEANWHILE


@jf.op
def load(n):
    return list(range(n))


@jf.op
def total(values):
    return sum(values)


@jf.op
def square(x):
    return x * x


@jf.op(resources={"memory": "100GB"})
def hungry(x):
    return x


@jf.op(resources={"GPU": 4})
def greedy(x):
    return x


def _ids(n, prefix="t"):
    return [f"{prefix}{i:03d}" for i in range(n)]


def _cached(p, *, signer=None):
    """A cache holding a value for every task of plan ``p``, as a computed run leaves it."""
    return {t.key: {"outputs": {"return": f"hash-{t.id}"}, "task_id": t.id, "metrics": {"m": 1}, "signer": signer}
            for t in p.tasks if t.cacheable}


def test_a_first_plan_computes_everything_and_says_why():
    graph = Graph(total(load(3)))
    p = plan(graph, MemoryCacheView(), task_ids=_ids(2))
    assert [t.name for t in p.tasks] == ["load", "total"]
    assert [t.id for t in p.tasks] == ["t000", "t001"]
    assert p.misses == p.stage == {0, 1} and not p.waits and not p.deferred and not p.expand
    assert not p.complete
    assert all(t.key and t.cacheable and t.reason == "no cache entry" for t in p.tasks)
    assert p.tasks[1].upstream == [0]


def test_keys_do_not_depend_on_the_ids_or_the_cache():
    graph = Graph(total(load(3)))
    first = plan(graph, MemoryCacheView(), task_ids=_ids(2, "a"))
    second = plan(graph, MemoryCacheView(_cached(first)), task_ids=_ids(2, "b"))
    assert [t.key for t in first.tasks] == [t.key for t in second.tasks]
    assert len({t.key for t in first.tasks}) == 2


def test_a_rerun_with_everything_cached_restores_every_task():
    graph = Graph(total(load(3)))
    first = plan(graph, MemoryCacheView(), task_ids=_ids(2, "a"))
    p = plan(graph, MemoryCacheView(_cached(first)), task_ids=_ids(2, "b"))
    assert p.complete and not p.stage and not p.misses
    for before, t in zip(first.tasks, p.tasks):
        assert t.status == TaskStatus.CACHED and t.cached and t.reason == "cached"
        assert t.outputs == {"return": f"hash-{before.id}"} and t.metrics == {"m": 1}
        assert t.provenance["cached_from"] == before.id


def test_a_changed_input_reruns_downstream_and_verifies_the_hit_it_reads():
    first = plan(Graph(total(load(3))), MemoryCacheView(), task_ids=_ids(2, "a"))
    view = MemoryCacheView(_cached(first))
    view.entries.pop(first.tasks[1].key)  # only load(3) is cached
    p = plan(Graph(total(load(3))), view, task_ids=_ids(2, "b"))
    assert p.tasks[0].status == TaskStatus.CACHED and p.stage == {1}
    assert view.dropped == []


def test_a_corrupt_hit_that_a_rerun_reads_is_dropped_and_recomputed():
    first = plan(Graph(total(load(3))), MemoryCacheView(), task_ids=_ids(2, "a"))
    entries = _cached(first)
    entries.pop(first.tasks[1].key)
    view = MemoryCacheView(entries, unreadable=[first.tasks[0].key])
    p = plan(Graph(total(load(3))), view, task_ids=_ids(2, "b"))
    assert p.stage == {0, 1}
    assert p.tasks[0].reason == CORRUPT and not p.tasks[0].cached
    assert view.dropped == [first.tasks[0].key]


def test_a_fully_cached_plan_reads_no_artifact():
    first = plan(Graph(total(load(3))), MemoryCacheView(), task_ids=_ids(2, "a"))
    view = MemoryCacheView(_cached(first), unreadable=[t.key for t in first.tasks])
    assert plan(Graph(total(load(3))), view).complete  # nothing reads them: not verified
    assert view.dropped == []


@pytest.mark.parametrize("force, rerun", [
    (lambda n: [total], {1}),          # an op: every node of it
    (lambda n: [n], {1}),              # a node
    (lambda n: n, {1}),                # one node, not in a list
    (lambda n: [load], {0}),           # upstream only: the downstream hit stays
])
def test_forced_tasks_rerun_despite_the_cache(force, rerun):
    node = total(load(3))
    first = plan(Graph(node), MemoryCacheView(), task_ids=_ids(2, "a"))
    p = plan(Graph(node), MemoryCacheView(_cached(first)), force(node), task_ids=_ids(2, "b"))
    assert p.misses == rerun
    for t in p.tasks:
        assert (t.reason, t.forced) == (("forced", True) if t.position in rerun else ("cached", False))


def test_force_takes_only_ops_and_nodes():
    with pytest.raises(FlowError, match="force= takes ops or nodes, got int"):
        forced_set([3])
    assert forced_set(None) == set()


def test_the_reason_of_a_miss_compares_with_the_last_entry_of_the_op():
    node = total(load(3))
    first = plan(Graph(node), MemoryCacheView(), task_ids=_ids(2, "a"))
    previous = dict(first.tasks[1].components, code="def total(values): return 0")
    view = MemoryCacheView(previous={"total": previous})
    p = plan(Graph(node), view)
    assert p.tasks[1].reason == keylib.explain(p.tasks[1].components, previous) == "code changed"
    assert p.tasks[0].reason == "no cache entry"


def test_an_entry_signed_by_an_untrusted_user_is_computed_here_and_kept():
    node = total(load(3))
    first = plan(Graph(node), MemoryCacheView(), task_ids=_ids(2, "a"))
    view = MemoryCacheView(_cached(first, signer="mallory-key"), untrusted=["mallory-key"])
    p = plan(Graph(node), view)
    assert p.stage == {0, 1}
    assert all("whom you do not trust" in t.reason for t in p.tasks)
    assert view.dropped == [] and len(view.entries) == 2


def test_claims_make_tasks_wait_or_restore_them():
    graph = Graph([square(1), square(2), total([square(2), square(3)])])
    # square(2) appears twice: one task per node, one key; total reads the second one.
    keys = {t.node.args: t.key for t in plan(graph, MemoryCacheView()).tasks if t.name == "square"}
    held, meanwhile = keys[(1,)], keys[(2,)]
    asked = []

    def claim(wanted):
        asked.append(dict(wanted))
        answers = {key: {"state": "mine"} for key in wanted}
        answers[held] = {"state": "held", "run_id": "other-run", "owner_id": "o"}
        answers[meanwhile] = {"state": "cached", "outputs": {"return": "h"}, "task_id": "x", "metrics": {}}
        return answers

    p = plan(graph, MemoryCacheView(), task_ids=_ids(len(graph.nodes)), claim=claim)
    by_key = {}
    for t in p.tasks:
        by_key.setdefault(t.key, []).append(t)
    assert len(asked) == 1 and len(asked[0]) == len(by_key)  # one claim per key, in one call
    (waiter,) = by_key[held]
    assert waiter.status == TaskStatus.WAITING and waiter.waiting_for == "other-run"
    assert list(p.waits) == [held] and p.waits[held] == [waiter]
    for t in by_key[meanwhile]:
        assert t.cached and t.reason == f"cached ({MEANWHILE})"
        assert t.position not in p.misses
    assert p.tasks[-1].name == "total" and p.tasks[-1].position in p.stage


def test_a_key_twice_in_one_run_is_computed_once():
    graph = Graph([square(5), square(5)])
    p = plan(graph, MemoryCacheView(), claim=lambda wanted: {k: {"state": "mine"} for k in wanted})
    first, second = p.tasks
    assert first.key == second.key and p.stage == {first.position}
    assert second.status == TaskStatus.WAITING and p.waits == {first.key: [second]}
    assert f"waiting for task {first.id} of this run" in second.reason


def test_what_needs_a_waited_value_is_deferred():
    node = total(load(3))
    upstream_key = plan(Graph(node), MemoryCacheView()).tasks[0].key
    p = plan(Graph(node), MemoryCacheView(),
             claim=lambda wanted: {k: ({"state": "held", "run_id": "r", "owner_id": "o"} if k == upstream_key
                                       else {"state": "mine"}) for k in wanted})
    assert p.deferred == {1} and not p.stage and p.misses == {0, 1}


POOLS = {
    "cpu": {"cores": 2, "memory": "4GB", "walltime": "01:00:00"},
    "bigmem": {"cores": 2, "memory": "256GB", "walltime": "01:00:00"},
}


def test_tasks_computed_are_placed_in_pools_and_hits_are_not():
    pools = parse_pools(POOLS, profile="site")
    graph = Graph([hungry(1), square(2)])
    first = plan(graph, MemoryCacheView(), task_ids=_ids(2, "a"))
    entries = _cached(first)
    entries.pop(next(t.key for t in first.tasks if t.name == "hungry"))
    asked = []
    p = plan(graph, MemoryCacheView(entries), pools=lambda: asked.append(1) or pools)
    big, small = sorted(p.tasks, key=lambda t: t.name)
    assert (big.pool, big.annotation) == ("bigmem", {"pool-bigmem": 1})
    assert big.provenance["pool"] == "bigmem"
    assert small.cached and small.pool is None
    assert asked == [1]
    assert plan(Graph(square(2)), MemoryCacheView(entries), pools=lambda: asked.append(1) or pools).complete
    assert asked == [1]  # nothing computed: the pools are never asked for


def test_a_task_that_fits_no_pool_fails_the_plan():
    with pytest.raises(FlowError, match="greedy"):
        plan(Graph(greedy(1)), MemoryCacheView(), pools=parse_pools(POOLS, profile="site"))


def test_without_pools_only_strict_resources_are_kept():
    (t,) = plan(Graph(hungry(1)), MemoryCacheView()).tasks
    assert t.pool is None and not t.annotation


def test_a_dynamic_map_waits_for_its_list_and_what_reads_it_is_deferred():
    mapped = jf.map(square, load(3))
    graph = Graph(total(mapped))
    p = plan(graph, MemoryCacheView())
    names = [t.name for t in p.tasks]
    assert names == ["load", "map:square", "total"]
    assert p.stage == {0} and p.expand == {1} and p.deferred == {2}


def test_a_map_expands_into_one_task_per_item_sharing_the_keys_of_a_static_map():
    mapped = jf.map(square, load(3))
    graph = Graph(total(mapped))
    first = plan(graph, MemoryCacheView(), task_ids=_ids(3))
    source, gather = first.tasks[0], first.tasks[1]
    static = plan(Graph(jf.map(square, [0, 1, 2])), MemoryCacheView())
    static_keys = [t.key for t in static.tasks if t.name == "square"]
    view = MemoryCacheView({static_keys[1]: {"outputs": {"return": "h1"}, "task_id": "old", "metrics": {}}})
    p = plan_map(gather, [0, 1, 2], source, {}, view, first_position=3, task_ids=_ids(3, "m"))
    assert [t.key for t in p.tasks] == static_keys
    assert [(t.position, t.index, t.id) for t in p.tasks] == [(3, 0, "m000"), (4, 1, "m001"), (5, 2, "m002")]
    assert all(t.upstream == [source.position] for t in p.tasks)
    assert p.stage == {3, 5} and p.misses == {3, 5} and not p.deferred
    assert p.tasks[1].cached and p.tasks[1].provenance["cached_from"] == "old"
    assert all(t.provenance["map"] == gather.id and t.provenance["index"] == t.index for t in p.tasks)
    forced = plan_map(gather, [0, 1, 2], source, {}, view, [square], first_position=3)
    assert forced.misses == {3, 4, 5} and all(t.reason == "forced" for t in forced.tasks)


def test_a_map_over_something_else_than_a_list_says_so():
    first = plan(Graph(jf.map(square, load(3))), MemoryCacheView())
    with pytest.raises(FlowError, match="must return a list"):
        plan_map(first.tasks[1], 7, first.tasks[0], {}, MemoryCacheView(), first_position=2)
