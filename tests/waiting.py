"""Small helpers the suites share: wait for a condition, add a GPU-declaring worker."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1):
    """Poll ``predicate`` until it returns something truthy (returned) or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")



def run_finished(run, timeout: float = 90.0):
    """``run`` once it ended; one still going after ``timeout`` s is canceled and fails the
    test (an op waiting for a worker its cluster does not have, a GPU one, waits forever)."""
    import pytest

    run.wait(timeout=timeout)
    if not run.done:
        run.cancel()
        pytest.fail(f"run {run.id} did not end within {timeout} s: {[(t.name, t.status) for t in run.tasks]}")
    return run

@contextlib.contextmanager
def gpu_worker(scheduler_address: str):
    """A real Dask worker process that declares one GPU (on a machine that may have none)."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_worker", scheduler_address,
         "--resources", "GPU=1", "--nworkers", "1", "--nthreads", "1", "--no-dashboard",
         "--host", "127.0.0.1", "--name", "gpu-worker"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        yield worker
    finally:
        worker.terminate()
        worker.wait(30)


def stop(process: subprocess.Popen, grace: float = 20.0) -> None:
    """Terminate a child process, killing it if it does not exit within ``grace`` seconds."""
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
