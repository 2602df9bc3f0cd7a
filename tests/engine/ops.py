"""Ops used by the engine tests (a local module: shipped to workers by value)."""

import os
import time

import jupyter_flow as jf

CALLS_DIR = os.environ.get("FLOW_TEST_CALLS", "")


@jf.op
def load(n):
    return list(range(n))


@jf.op(retries=2, timeout=600)
def train(data, lr=0.1):
    return sum(data) * lr


@jf.op
def add(a, b):
    return a + b


@jf.op
def boom(x):
    raise ValueError(f"bad value {x}")


@jf.op
def shout(x):
    print(f"hello from {x}")
    return x


@jf.op
def mutate(values):
    values.append(99)
    return len(values)


@jf.op
def total(values):
    return sum(values)


@jf.op
def sleepy(seconds):
    time.sleep(seconds)
    return seconds


@jf.op(timeout=1)
def too_slow(seconds):
    time.sleep(seconds)
    return seconds


@jf.op(timeout=1, isolate=True)
def too_slow_isolated(seconds):
    time.sleep(seconds)
    return seconds


@jf.op(resources={"GPU": 1})
def on_gpu(x):
    return x * 2


@jf.op
def unpicklable(x):
    import threading

    return threading.Lock()


@jf.op
def die_once(marker):
    # Kills its own worker process the first time: the scheduler retries it elsewhere.
    if not os.path.exists(marker):
        open(marker, "w").close()
        time.sleep(1.0)  # mid-task: the worker has reported that it started
        os.kill(os.getpid(), 9)
    return "survived"


@jf.op
def flaky(marker):
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("first attempt fails")
    return "ok"


flaky_retried = flaky.options(retries=1)


@jf.op
def count_call(tag, calls_dir):
    with open(os.path.join(calls_dir, f"{tag}-{time.time_ns()}"), "w"):
        pass
    return tag


@jf.op
def record_metric(x):
    jf.record("accuracy", 0.93)
    return x


def _multi(x):
    return {"a": x, "b": x * 10}


multi_out = jf.Op(_multi, name="multi_out", outputs=["a", "b"])


@jf.op
def always_dies(x):
    time.sleep(0.5)
    os.kill(os.getpid(), 9)


@jf.op(isolate=True)
def isolated_sleeper(pid_file):
    with open(pid_file, "w") as handle:
        handle.write(str(os.getpid()))
    time.sleep(120)
    return "never"


@jf.op
def unseeded(tag, calls_file, seconds=1.5):
    """A value that differs on every execution; each execution leaves a line in calls_file."""
    import random

    with open(calls_file, "a") as handle:
        handle.write(f"{tag} {os.getpid()}\n")
    time.sleep(seconds)
    return random.random()


@jf.op
def hold_while(marker, calls_file):
    """Runs while ``marker`` exists (the test decides when it may finish)."""
    with open(calls_file, "a") as handle:
        handle.write(f"hold {os.getpid()}\n")
    while os.path.exists(marker):
        time.sleep(0.05)
    return "released"


@jf.op
def chain_step(x):
    return x + 1


@jf.op
def chain_dies(x):
    time.sleep(0.5)
    os.kill(os.getpid(), 9)


class Fragile:
    """Loads anywhere but in a process that sets FLOW_TEST_FRAGILE (like a class that
    cannot be imported in the kernel that asks for it)."""

    def __init__(self, value):
        self.value = value

    def __setstate__(self, state):
        if os.environ.get("FLOW_TEST_FRAGILE"):
            raise RuntimeError("Fragile cannot be loaded in this process")
        self.__dict__.update(state)


@jf.op
def fragile(value, calls_file):
    with open(calls_file, "a") as handle:
        handle.write("fragile\n")
    return Fragile(value)


@jf.op
def list_inputs(n, calls_file=None):
    """The list of items is known only once this op has run."""
    if calls_file:
        with open(calls_file, "a") as handle:
            handle.write("list\n")
    return [f"item-{i}" for i in range(n)]


@jf.op
def process(item, suffix="!", calls_file=None):
    if calls_file:
        with open(calls_file, "a") as handle:
            handle.write(f"process {item}\n")
    return item.upper() + suffix


@jf.op
def gather_count(values):
    return len(values)


@jf.op
def not_a_list(n):
    return {"n": n}


def _checked_ratio(total, count):
    # A helper the op calls: its frame must name this file in the remote traceback.
    return total / count


@jf.op
def average(total, count):
    return _checked_ratio(total, count)


@jf.op
def plots_and_prints(n):
    import matplotlib.pyplot as plt
    from IPython.display import Markdown, display

    print("points:", n)
    display(Markdown(f"**{n}** points"))
    figure, axes = plt.subplots()
    axes.plot(range(n))
    plt.show()
    left_open = plt.figure()
    plt.plot([n, 0])
    jf.record("points", n)
    return {"points": n, "figure": figure, "axes": axes, "alias": figure, "open": left_open}


plots_and_prints = jf.Op(plots_and_prints.func, name="plots_and_prints",
                         outputs=["points", "figure", "axes", "alias", "open"])


@jf.op
def hold(flag, counter, tag=""):
    """The first call with ``counter`` runs while ``flag`` exists (at most 120 s); later calls
    (a retry, a run that took the key over, a rerun) return at once."""
    with open(counter, "a") as handle:
        handle.write("x")
    first = os.path.getsize(counter) == 1
    deadline = time.monotonic() + 120
    while first and os.path.exists(flag) and time.monotonic() < deadline:
        time.sleep(0.05)
    return f"held {tag}"
