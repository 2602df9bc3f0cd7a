import pytest

import jupyter_flow as jf
from jupyter_flow.core.graph import Graph, order
from jupyter_flow.core.status import RunKind, RunStatus, TaskStatus


@jf.op
def inc(x):
    return x + 1


@jf.op
def add(a, b):
    return a + b


def test_graph_orders_upstream_first_and_shares_nodes():
    a = inc(1)
    b = inc(a)
    c = add(a, b)
    graph = Graph(c)
    assert graph.nodes.index(a) < graph.nodes.index(b) < graph.nodes.index(c)
    assert len(graph.nodes) == 3  # `a` is used twice but appears once


def test_graph_keeps_target_shape():
    graph = Graph((inc(1), inc(2)))
    assert graph.shape([1, 2]) == (1, 2)
    assert Graph([inc(1)]).shape([5]) == [5]
    assert Graph(inc(1)).shape([5]) == 5


def test_cycle_is_a_flow_error_naming_the_ops():
    deps = {"load": ["train"], "train": ["features"], "features": ["load"]}
    with pytest.raises(jf.FlowError, match="cycle") as err:
        order(deps)
    for name in ("load", "train", "features"):
        assert name in str(err.value)


def test_bad_targets_and_arguments_are_flow_errors():
    with pytest.raises(jf.FlowError, match="node"):
        Graph(inc)
    with pytest.raises(jf.FlowError, match="'inc'"):
        inc(1, 2)
    with pytest.raises(jf.FlowError, match="retries"):
        jf.op(retries=-1)(lambda: 1)
    with pytest.raises(jf.FlowError, match="resources"):
        jf.op(resources={"GPU": "one"})(lambda: 1)
    with pytest.raises(jf.FlowError, match="unknown setting"):
        jf.op(retry=2)


def test_composites_build_the_expected_nodes():
    p = jf.pipeline([inc(0), inc, inc])
    assert [n.op.name for n in Graph(p).nodes] == ["inc", "inc", "inc"]
    par = jf.parallel([inc(1), inc(2)])
    assert par.op.name == "parallel" and len(Graph(par).nodes) == 3
    f = jf.funnel([inc(1), inc(2)], into=inc)
    assert f.op is inc
    m = jf.map(add, [1, 2, 3], b=10)
    mapped = [n for n in Graph(m).nodes if n.op is add]
    assert sorted(n.index for n in mapped) == [0, 1, 2]
    dynamic = jf.map(add, inc(1), b=10)  # a list known at run time: expanded by the engine
    assert dynamic.op.name == "map:add" and dynamic.op.inner is add
    assert list(dynamic.upstream()) == [dynamic.args[0]]
    with pytest.raises(jf.FlowError, match="jf.map"):
        jf.map(inc(1), [1])


def test_collector_nodes_are_named_after_the_call_that_made_them_and_share_one_key():
    """Graphs showed an op named `parallel` for every jf.map and jf.funnel (issue 17
    point 8): the collector of a map is `map:OP` (as a dynamic map), of a funnel
    `funnel:OP`; the name is not in the cache key, so the same inputs share one entry."""
    from jupyter_flow.core.keys import task_key

    mapped = jf.map(add, [1, 2], b=10)
    funneled = jf.funnel([add(1, b=10), add(2, b=10)], into=inc)
    assert mapped.op.name == "map:add"
    collector = funneled.args[0]
    assert collector.op.name == "funnel:inc"
    assert jf.parallel([inc(1)]).op.name == "parallel"

    def key(node):
        found: dict = {}
        for n in Graph(node).nodes:  # upstream first
            found[n] = task_key(n, found).key
        return found[node]

    plain = jf.parallel([add(1, b=10), add(2, b=10)])
    assert key(mapped) == key(collector) == key(plain)
    assert key(jf.map(add, [1, 3], b=10)) != key(plain)


def test_statuses_and_kinds_are_spelled_as_the_spec():
    assert [s.value for s in RunStatus] == ["PENDING", "RUNNING", "SUCCESS", "FAILED", "CANCELED", "LOST"]
    assert [s.value for s in TaskStatus] == [
        "PENDING", "WAITING", "RUNNING", "SUCCESS", "CACHED", "FAILED", "CANCELED", "SKIPPED", "LOST"]
    assert [k.value for k in RunKind] == ["api", "cell", "graph", "notebook", "batch", "resume"]
    assert RunStatus.SUCCESS == "SUCCESS"


def test_error_family():
    for cls in (jf.OpTimeout, jf.WorkerLost, jf.RunCanceled, jf.RunLost):
        assert issubclass(cls, jf.FlowError)


@jf.op
def scaled(x, factor=2, *, offset=0):
    return x * factor + offset


def split_op(x):
    return {"low": x, "high": x}


def test_calls_are_checked_like_python_calls():
    # Plain signatures are checked without Signature.bind; the verdict is Python's.
    for call in (lambda: inc(), lambda: inc(1, 2), lambda: inc(1, x=2), lambda: inc(y=1),
                 lambda: add(1), lambda: add(b=1), lambda: scaled(1, 2, 3), lambda: scaled(1, offset=1, z=0)):
        with pytest.raises(jf.FlowError, match="check the arguments"):
            call()
    assert inc(x=1).kwargs == {"x": 1}
    assert add(1, b=inc(1)).args == (1,)
    assert scaled(1, offset=3).kwargs == {"offset": 3}


def test_a_deep_graph_snapshot_round_trips_through_pickle():
    import pickle

    import cloudpickle

    from jupyter_flow.core.op import Op
    from jupyter_flow.core.snapshot import GraphSnapshot, load

    split = Op(split_op, outputs=("low", "high"))
    x = inc(0)
    for _ in range(2000):
        x = add(x, 1)
    halves = split(x)
    targets = (x, add(halves["low"], b={"nested": [inc(1), (3, 4)]}))
    stored = cloudpickle.dumps(GraphSnapshot.of(Graph(targets)))  # the nodes themselves are too deep
    restored = load(pickle.loads(stored))
    assert isinstance(restored, tuple) and len(restored) == 2
    graph = Graph(restored)
    assert len(graph.nodes) == len(Graph(targets).nodes) == 2004
    assert [n.op.name for n in graph.nodes] == [n.op.name for n in Graph(targets).nodes]
    nested = restored[1].kwargs["b"]["nested"]
    assert nested[0].op.name == "inc" and nested[1] == (3, 4)
    low = restored[1].args[0]
    assert low.output == "low" and low.node.args[0] is restored[0]  # shared nodes stay shared
    # Snapshots written before the flat table held the targets themselves.
    assert load(inc(1)).op.name == "inc"
