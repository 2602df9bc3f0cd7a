"""Where a run's tasks may run: the Dask resources each task is annotated with, chosen
before the run is recorded from the cluster's worker pools (deploy/pools.py), if any.
"""

# No ``from __future__ import annotations``: this module's function ``annotations`` would
# shadow it (Python 3.10 reads ``PoolSet | None`` without it).
from ..core import resources as reslib
from ..deploy.pools import RESOURCE_PREFIX, PoolSet


def annotations(states, pools: PoolSet | None, label_of=None) -> None:
    """Decide each task's Dask resources (and pool) before a run is recorded.

    With pools every task asks for its pool's resource; without, only the strict part of
    its request (GPU and other worker resources) is kept: cores, memory and walltime
    cannot make a task unrunnable on a cluster whose workers declare none of them.
    Raises FlowError (nothing recorded yet) when a task fits no pool.
    """
    for s in states:
        if pools is None:
            s.annotation = reslib.strict(s.resources)
            continue
        label = label_of(s) if label_of is not None else f"op {s.name!r}"
        pool = pools.choose(s.resources, label)
        s.pool = pool.name
        s.annotation = pool.annotation(s.resources)
        s.provenance["pool"] = pool.name


def load_annotation(consumer) -> dict:
    """Where a cached value is loaded for a task that reads it: on that task's pool.

    Without this a load task could wait for a worker that no pool starts (nothing asks
    for one) or occupy a GPU job.
    """
    annotation = getattr(consumer, "annotation", None) or {}
    return {name: 1 for name in annotation if name.startswith(RESOURCE_PREFIX)}


def waiting_reason(pool: str | None, annotation: dict) -> str:
    """The reason a WAITING task shows."""
    if pool:
        return (f"waiting for a worker of pool {pool!r} (its Slurm jobs start when tasks need them, "
                "up to the pool's maximum)")
    wanted = ", ".join(f"{k}={v:g}" for k, v in annotation.items())
    return f"waiting for a worker that declares {wanted}"
