"""jupyter_flow against raw Dask on the same LocalCluster, printed as ratios.

    python bench/bench_engine.py            # full sizes (DESIGN.md §6)
    python bench/bench_engine.py --quick    # smaller, for a smoke check

Ratios below 1.0 mean jupyter_flow was faster than the raw `client.submit` loop.
Cache and provenance are on: every jupyter_flow op writes its artifact and its records.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time


def noop(i, salt=0):
    return i


def reducer(values):
    return len(values)


def inc(x, salt=0):
    return x + 1


def make_array(i, salt=0):
    import numpy as np

    return np.full(1_000_000, float(i))  # 8 MB of float64


def consume(array):
    return float(array[0])


def timed(func, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, default=2)
    opts = parser.parse_args()
    fanout, chain, payloads = (200, 50, 16) if opts.quick else (1000, 200, 64)

    home = tempfile.mkdtemp(prefix="jf-bench-")
    os.environ["JUPYTER_FLOW_HOME"] = home
    from distributed import Client, LocalCluster

    import jupyter_flow as jf

    cluster = LocalCluster(n_workers=opts.workers, threads_per_worker=1, host="127.0.0.1",
                           dashboard_address=None, memory_limit="6GiB")
    client = Client(cluster)
    jf.cluster(cluster.scheduler_address)
    j_noop, j_reducer, j_inc = jf.op(noop), jf.op(reducer), jf.op(inc)
    j_make, j_consume = jf.op(make_array), jf.op(consume)
    salt = iter(range(1, 10_000))

    # -- raw Dask: the submit loop a user would write --------------------------------
    def raw_fanout():
        futures = [client.submit(noop, i, pure=False) for i in range(fanout)]
        client.submit(reducer, futures, pure=False).result()

    def raw_chain():
        x = client.submit(inc, 0, pure=False)
        for _ in range(chain - 1):
            x = client.submit(inc, x, pure=False)
        x.result()

    def raw_payload():
        arrays = [client.submit(make_array, i, pure=False) for i in range(payloads)]
        client.gather([client.submit(consume, a, pure=False) for a in arrays])

    # -- jupyter_flow: same work, cached and recorded ---------------------------------
    def jf_fanout(s=None):
        s = next(salt) if s is None else s
        run = jf.run(jf.funnel([j_noop(i, salt=s) for i in range(fanout)], into=j_reducer))
        assert run.status == "SUCCESS", run.error
        return s

    def jf_chain():
        s = next(salt)
        x = j_inc(0, salt=s)
        for _ in range(chain - 1):
            x = j_inc(x)
        assert jf.run(x).status == "SUCCESS"

    def jf_payload():
        s = next(salt)
        run = jf.run([j_consume(j_make(i, salt=s)) for i in range(payloads)])
        assert run.status == "SUCCESS", run.error

    # Warm up both paths (imports, worker caches, the store's first connection).
    raw_fanout(), raw_chain(), jf_fanout(), jf_chain()

    rows = []
    r, j = timed(raw_fanout), timed(jf_fanout)
    rows.append((f"fanout {fanout} -> reducer", r, j))
    r, j = timed(raw_chain), timed(jf_chain)
    rows.append((f"chain of {chain}", r, j))
    cached_salt = jf_fanout()
    from jupyter_flow.engine.runtime import get_engine

    writer = get_engine().writer
    cached_times = []
    for _ in range(5):
        writer.flush()  # each rerun starts with nothing pending from the previous one
        start = time.perf_counter()
        jf_fanout(cached_salt)
        cached_times.append(time.perf_counter() - start)
    cached = statistics.median(cached_times)
    r, j = timed(raw_payload, repeat=2), timed(jf_payload, repeat=2)
    rows.append((f"{payloads} ops passing 8 MB arrays", r, j))

    print(f"\njupyter_flow vs raw Dask submit loop, LocalCluster {opts.workers} workers x 1 thread, "
          f"Python {sys.version.split()[0]}")
    print(f"{'workload':<32} {'raw dask':>10} {'jupyter_flow':>13} {'ratio':>7}")
    for name, raw, ours in rows:
        print(f"{name:<32} {raw:>9.3f}s {ours:>12.3f}s {ours / raw:>6.2f}x")
    print(f"{'fully cached rerun of ' + str(fanout + 2) + ' ops':<32} {'':>10} {cached:>12.3f}s "
          f"(target < 0.1 s; jf.run returns once its {fanout + 2} task records are in the store: "
          f"a run reported SUCCESS is a recorded one)")
    from jupyter_flow.deploy import cluster as clusters

    clusters.close_all()
    client.close()
    cluster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
