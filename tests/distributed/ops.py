"""Ops the distributed tests run on Slurm jobs and GPU-declaring workers."""

import os
import time
from pathlib import Path

import jupyter_flow as jf


@jf.op
def square(x):
    return x * x


@jf.op
def total(values):
    return sum(values)


@jf.op
def slow_marker(x, marker_dir):
    """Writes which Slurm job runs it, then works long enough to be cancelled mid-run."""
    job = os.environ.get("SLURM_JOB_ID", "none")
    Path(marker_dir, f"{job}.started").write_text(job)
    time.sleep(6)
    return x + 1


@jf.op(resources={"GPU": 1})
def on_gpu(x):
    return {"value": 2 * x, "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


@jf.op
def nap(x, seconds):
    """A CPU op long enough that a GPU job joins while others still wait for the CPU job."""
    time.sleep(seconds)
    return x


@jf.op(resources={"cores": 64, "memory": "4TB"})
def huge(x):
    return x
