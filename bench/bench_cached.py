"""Cached reruns and deep graphs at scale (issue 18 point 5), on one LocalCluster.

    python bench/bench_cached.py             # 1,000 and 10,000 ops, chain of 1,000
    python bench/bench_cached.py --quick     # smaller, for a smoke check
    python bench/bench_cached.py --profile 1000   # cProfile of a fully cached rerun

Prints:
- a fully cached rerun of N independent ops (``jf.run([op(i) for i in range(N)])`` once
  computed): the time of ``jf.run`` (building the nodes excluded), which returns only once
  its run and task records are committed; and its cost per op;
- a fanout of N no-op ops computed (nothing cached) against raw Dask's whole-graph
  ``client.get`` of the same N tasks (ratio below 1.0: jupyter_flow was faster);
- a chain of 1,000 ops: planned, run, its snapshot loaded and resumed in another process.

Measured 2026-12-07 on the 2-core development machine, shared with other test runs (load
0.7-6), before (7f1b259) -> after issue 18 point 5, medians of 5 reruns in two rounds:

    fully cached rerun, 1,000 ops     0.063, 0.090 s  ->  0.047, 0.057 s   (target 0.05 s)
    fully cached rerun, 10,000 ops    0.770, 0.959 s  ->  0.573, 0.633 s   (target 0.3 s)
    fanout 10,000 / raw client.get    1.15x           ->  1.16x            (target 1.0x)
    chain of 1,000, resumed elsewhere cannot (no snapshot: too deep to pickle) -> 0.10-0.13 s
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def noop(i, salt=0):
    return i


def inc(x, salt=0):
    return x + 1


def settle(cluster, timeout: float = 120.0) -> None:
    """Wait until the scheduler (in this process) has forgotten the last run's tasks: it
    releases thousands of keys after a big run, and would share the CPU with what is timed."""
    deadline = time.monotonic() + timeout
    while cluster.scheduler.tasks and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)


def timed(func, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    if os.environ.get("BENCH_VERBOSE"):
        print("  each:", " ".join(f"{t:.3f}" for t in times))
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", choices=("cached", "fanout", "chain"), action="append",
                        help="run only these parts (repeatable)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="profile a fully cached rerun of N ops and print the top of it")
    opts = parser.parse_args()
    sizes = (200, 1000) if opts.quick else (1000, 10_000)
    depth = 200 if opts.quick else 1000

    home = tempfile.mkdtemp(prefix="jf-bench-")
    os.environ["JUPYTER_FLOW_HOME"] = home
    os.environ.setdefault("JUPYTER_FLOW_KEYS", os.path.join(home, "keys"))
    from distributed import Client, LocalCluster

    import jupyter_flow as jf
    from jupyter_flow.engine.runtime import get_engine

    cluster = LocalCluster(n_workers=opts.workers, threads_per_worker=1, host="127.0.0.1",
                           dashboard_address=None, memory_limit="6GiB")
    client = Client(cluster)
    jf.cluster(cluster.scheduler_address)
    # Module-level ops: the resuming process imports this file by name to unpickle them.
    import bench_cached as me

    j_noop, j_inc = jf.op(me.noop), jf.op(me.inc)
    writer = get_engine().writer

    if opts.profile:
        import cProfile
        import pstats

        nodes = [j_noop(i, salt=-1) for i in range(opts.profile)]
        assert jf.run(nodes).status == "SUCCESS"
        writer.flush()
        jf.run(nodes)  # warm: the op's analysis, the store's pages
        writer.flush()
        profiler = cProfile.Profile()
        profiler.enable()
        run = jf.run(nodes)
        profiler.disable()
        assert run.status == "SUCCESS" and all(t.cached for t in run.tasks)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(35)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return 0

    parts = set(opts.only or ("cached", "fanout", "chain"))
    print(f"LocalCluster {opts.workers} workers x 1 thread, Python {sys.version.split()[0]}, SQLite, "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    if "cached" in parts:
        print(f"\n{'fully cached rerun':<34} {'jf.run':>9} {'per op':>9} {'cpu':>9}")
    for n in sizes if "cached" in parts else ():
        nodes = [j_noop(i, salt=n) for i in range(n)]
        assert jf.run(nodes).status == "SUCCESS"

        def rerun():
            writer.flush()  # nothing pending from the run before
            run = jf.run(nodes)
            assert run.status == "SUCCESS"

        settle(cluster)
        rerun()  # warm: the op's analysis, the store's statements
        cpu_start = time.process_time()
        took = timed(rerun, repeat=5)
        cpu = (time.process_time() - cpu_start) / 5  # this process's CPU (the machine may be shared)
        print(f"{f'{n:,} ops':<34} {took:>8.3f}s {took / n * 1e6:>7.1f}us {cpu:>8.3f}s")

    n = sizes[-1]
    raw_graph = {f"noop-{i}": (noop, i) for i in range(n)}
    salt = iter(range(1, 10**6))

    def raw_get():
        client.get(raw_graph, list(raw_graph))

    def jf_fanout():
        s = next(salt)
        run = jf.run([j_noop(i, salt=s) for i in range(n)])
        assert run.status == "SUCCESS", run.error

    if "fanout" in parts:
        raw_get(), jf_fanout()
        ratios = []
        for _ in range(3):  # in turn, so that a change in the machine's load hits both
            settle(cluster)
            raw = timed(raw_get, repeat=1)
            settle(cluster)
            ours = timed(jf_fanout, repeat=1)
            ratios.append(ours / raw)
            print(f"{f'fanout of {n:,} (computed)':<34} raw client.get {raw:.3f}s, jupyter_flow {ours:.3f}s, "
                  f"ratio {ours / raw:.2f}x", flush=True)
        print(f"{'fanout ratio, median':<34} {statistics.median(ratios):.2f}x")
    if "chain" not in parts:
        from jupyter_flow.deploy import cluster as clusters

        clusters.close_all()
        client.close()
        cluster.close()
        return 0

    # -- a deep chain: plan, run, resume elsewhere ------------------------------------
    from jupyter_flow.core.graph import Graph

    s = next(salt)
    start = time.perf_counter()
    x = j_inc(0, salt=s)
    for _ in range(depth - 1):
        x = j_inc(x)
    Graph(x)  # what a run plans from: building it is part of the planning time
    planned = time.perf_counter() - start
    start = time.perf_counter()
    run = jf.run(x)
    ran = time.perf_counter() - start
    ok = run.status == "SUCCESS" and run.result() == depth
    writer.flush()
    snapshot = get_engine().store.get_run(run.id).get("snapshot")
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
        import jupyter_flow as jf
        jf.cluster({cluster.scheduler_address!r})
        start = time.perf_counter()
        run = jf.resume({run.id!r})
        took = time.perf_counter() - start
        cached = sum(t.cached for t in run.tasks)
        print(run.status, run.result(), cached, f"{{took:.3f}}")
    """)
    start = time.perf_counter()
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=dict(os.environ))
    resumed = time.perf_counter() - start
    print(f"\nchain of {depth:,}: graph {planned:.3f}s, jf.run {ran:.3f}s ({'ok' if ok else run.status}, "
          f"snapshot {'stored' if snapshot else 'MISSING'})")
    if child.returncode == 0:
        status, value, cached, took = child.stdout.split()[-4:]
        print(f"  resumed in another process: {status}, value {value}, {cached} of {depth} cached, "
              f"jf.resume {took}s (process {resumed:.1f}s)")
    else:
        print("  resume in another process FAILED:", child.stderr.strip().splitlines()[-1:])

    from jupyter_flow.deploy import cluster as clusters

    clusters.close_all()
    client.close()
    cluster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
