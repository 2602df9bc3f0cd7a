"""GPU check (issue 21 point 6): run one GPU op on the ``cuda`` profile and show the GPU it
ran on, as the run's provenance recorded it. Run it whenever a GPU machine is at hand:

    pip install -e ".[test]" dask-cuda
    python bench/gpu_check.py                 # a throw-away store; --home DIR keeps the run

The op asks for ``resources={"GPU": 1}`` (a notebook cell's ``%%flow --resources GPU=1``),
so only a worker of ``LocalCUDACluster`` (one per GPU, each declaring ``GPU=1``) may run it.
It prints the GPU's name, uuid and driver, and the run id; exits 0 within two minutes, or
non-zero with one line saying what is missing: no GPU visible (nvidia-smi lists none),
dask-cuda not installed, no result in time, or a provenance without the GPU.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

LIMIT_S = 120.0  # the whole check, cluster start included


def visible_gpus() -> list[str]:
    """The lines of ``nvidia-smi -L`` (one per GPU); [] when there is no nvidia-smi or no GPU."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line for line in out.splitlines() if line.startswith("GPU")]


def fail(message: str) -> int:
    print(f"gpu_check: {message}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="JUPYTER_FLOW_HOME to record the run in (default: a temporary one)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    gpus = visible_gpus()
    if not gpus:
        return fail("no GPU visible (nvidia-smi is missing or lists no GPU); run this on a machine with an "
                    "NVIDIA GPU and its driver")
    os.environ["JUPYTER_FLOW_HOME"] = args.home or tempfile.mkdtemp(prefix="jf-gpu-check-")
    os.environ.setdefault("JUPYTER_FLOW_KEYS", os.path.join(os.environ["JUPYTER_FLOW_HOME"], "keys"))

    import jupyter_flow as jf

    @jf.op(resources={"GPU": 1})
    def on_gpu(x):
        return {"value": 2 * x, "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}

    try:
        handle = jf.cluster("cuda")  # a FlowError naming dask-cuda when it is not installed
    except jf.FlowError as err:
        return fail(str(err))
    try:
        run = jf.run(on_gpu(21), name="gpu-check", wait=False)
        run.wait(timeout=max(1.0, LIMIT_S - (time.monotonic() - started)))
        if not run.done:
            run.cancel()
            return fail(f"run {run.id} did not end within {LIMIT_S:.0f} s: "
                        f"{[(t.name, t.status, t.reason) for t in run.tasks]}")
        if run.status != "SUCCESS":
            return fail(f"run {run.id} ended {run.status}: {run.error}")
        (task,) = run.tasks
        recorded = list(task.provenance.get("gpus") or [])
        if not recorded or not all(g.get("name") and g.get("uuid") and g.get("driver") for g in recorded):
            return fail(f"run {run.id}: the GPU op's provenance names no GPU ({task.provenance!r})")
        print(f"run {run.id} on {task.worker} in {time.monotonic() - started:.1f} s "
              f"(CUDA_VISIBLE_DEVICES={run.result()['cuda_visible_devices']}; {len(gpus)} GPU(s) on the machine)")
        for gpu in recorded:
            print(f"gpu {gpu.get('index')}: name={gpu['name']} uuid={gpu['uuid']} driver={gpu['driver']}")
        return 0
    finally:
        handle.close()


if __name__ == "__main__":
    sys.exit(main())
