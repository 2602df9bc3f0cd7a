"""The jupyter_flow quickstart on the embedded defaults: SQLite store, local Dask cluster.

Run with `bash scripts/demo.sh`. The second run restores every op from the cache.
"""

import time

import jupyter_flow as jf


@jf.op
def load(n):
    return list(range(n))


@jf.op(retries=2, timeout=600)
def train(data, lr=0.1):
    return sum(data) * lr


@jf.op
def evaluate(score, target):
    return abs(score - target)


def show(run, seconds):
    print(f"run {run.id} ({run.name or run.kind}): {run.status} in {seconds:.2f} s")
    for task in run.tasks:
        label = task.name if task.index is None else f"{task.name}[{task.index}]"
        print(f"  {label:<12} {task.status:<8} {task.reason}")


def main():
    target = train(load(1000), lr=0.01)
    for attempt in ("first run", "second run (cached)"):
        started = time.perf_counter()
        run = jf.run(target, name="demo")
        show(run, time.perf_counter() - started)
        print(f"  result: {run.result()}  [{attempt}]")

    started = time.perf_counter()
    sweep = jf.run(jf.map(train, [load(10), load(100), load(1000)], lr=0.5), name="sweep")
    show(sweep, time.perf_counter() - started)
    print("  results:", sweep.result())

    print("\nrecent runs:")
    for past in jf.runs(limit=5):
        print(f"  {past.id}  {past.kind:<4} {past.status:<8} {past.name}")
    print("\nNext: `jupyter lab`, open notebooks/01-quickstart.ipynb and run it (twice: the second")
    print("time every cell comes from the cache), then the Flow tab in the left sidebar shows these")
    print("runs, their graphs and logs. `jupyter flow runs` lists them from a shell.")


if __name__ == "__main__":
    main()
