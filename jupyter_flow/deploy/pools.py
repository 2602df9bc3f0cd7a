"""Worker pools: several Slurm job shapes behind one Dask scheduler, and which pool fits a
task's request.

A profile's ``pools`` maps a pool name to a job shape (``cores``, ``memory``,
``walltime``, ``gpus``, other worker ``resources``, ``processes``, and any other
SLURMJob keyword such as ``queue``) and its scaling bounds (``minimum``, ``maximum``).
Every worker of pool ``cpu`` declares the Dask resource ``pool-cpu`` (one unit per
thread), and every task of a run on that cluster asks for one pool's resource: that is
what keeps CPU ops off GPU jobs. The cluster itself is in ``pool_cluster.py``; the
engine annotates each task with its pool's resource (engine/placement.py).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from ..core import resources as reslib
from ..core.errors import FlowError
from ..core.provenance import POOL_ENV  # set in each pool job: the worker reports its pool

RESOURCE_PREFIX = "pool-"
# Keys of a pool entry that are not SLURMJob keyword arguments.
POOL_KEYS = ("gpus", "resources", "minimum", "maximum")
DEFAULT_MAXIMUM = 10
# Keyword arguments of the cluster (its scheduler, network, security), not of its jobs.
CLUSTER_KWARGS = frozenset({
    "n_workers", "loop", "security", "shared_temp_directory", "silence_logs", "name", "asynchronous",
    "dashboard_address", "host", "scheduler_options", "scheduler_cls", "interface", "protocol", "config_name",
    "pools", "profile",
})


@dataclass(frozen=True)
class Pool:
    """One job shape. ``cores`` and ``memory`` are per job; a job runs ``processes`` workers."""

    name: str
    cores: int
    memory: int
    processes: int = 1
    gpus: int = 0
    walltime: int | None = None  # seconds
    resources: dict = field(default_factory=dict)  # other resources each worker declares
    minimum: int = 0
    maximum: int = DEFAULT_MAXIMUM
    job: dict = field(default_factory=dict)  # the SLURMJob keyword arguments of this pool
    order: int = 0

    @property
    def resource(self) -> str:
        """The Dask resource that marks this pool's workers (``pool-cpu``)."""
        return RESOURCE_PREFIX + self.name

    @property
    def threads(self) -> int:
        """Threads of one worker: the most cores one task can have."""
        return max(1, self.cores // self.processes)

    @property
    def worker_memory(self) -> int:
        return self.memory // self.processes

    def worker_resources(self) -> dict[str, float]:
        """What each worker of the pool declares: one pool unit per thread, its GPUs, the rest."""
        declared: dict[str, float] = {self.resource: self.threads}
        if self.gpus:
            declared[reslib.GPU] = self.gpus
        declared.update(self.resources)
        return declared

    def size(self) -> tuple:
        """Sort key of "smaller": fewer GPUs, then fewer cores, less memory, shorter jobs."""
        extra = sum(float(v) for v in self.resources.values())
        return (self.gpus, extra, self.threads, self.worker_memory, self.walltime or math.inf, self.order)

    def fits(self, request: dict) -> bool:
        """Whether one worker of this pool can run a task asking for ``request``."""
        for name, amount in request.items():
            if name == "cores":
                if amount > self.threads:
                    return False
            elif name == "memory":
                if reslib.memory_bytes(amount) > self.worker_memory:
                    return False
            elif name == "walltime":
                if self.walltime is not None and reslib.walltime_seconds(amount) > self.walltime:
                    return False
            elif amount > self.worker_resources().get(name, 0):
                return False
        return True

    def annotation(self, request: dict) -> dict[str, float]:
        """The Dask resources a task asking for ``request`` is annotated with on this pool.

        The pool resource counts cores: a task asking for ``cores=4`` takes four of a
        worker's units, so two such tasks share an 8-thread worker, not eight.
        """
        out: dict[str, float] = {self.resource: int(request.get("cores", 1))}
        out.update(reslib.strict(request))
        return out

    def describe(self) -> str:
        memory = self.job.get("memory") if self.processes == 1 and isinstance(self.job.get("memory"), str) else None
        parts = [f"cores={self.threads}", f"memory={memory or _format_bytes(self.worker_memory)}"]
        if self.gpus:
            parts.append(f"gpus={self.gpus}")
        if self.walltime is not None:
            parts.append(f"walltime={_format_seconds(self.walltime)}")
        parts += [f"{k}={v:g}" for k, v in self.resources.items()]
        return f"{self.name} ({', '.join(parts)})"


class PoolSet:
    """The pools of one cluster, and the choice of a pool for each task."""

    def __init__(self, pools: list[Pool], profile: str = "?"):
        self.pools = sorted(pools, key=Pool.size)
        self.by_name = {p.name: p for p in pools}
        self.profile = profile

    def __iter__(self):
        return iter(self.pools)

    def __len__(self) -> int:
        return len(self.pools)

    def choose(self, request: dict, label: str) -> Pool:
        """The smallest pool whose jobs satisfy ``request``; FlowError naming the op if none does.

        >>> pools = parse_pools({"cpu": {"cores": 2, "memory": "4GB"},
        ...                      "gpu": {"cores": 8, "memory": "64GB", "gpus": 1}})
        >>> pools.choose({}, "op 'a'").name, pools.choose({"GPU": 1}, "op 'b'").name
        ('cpu', 'gpu')
        >>> pools.choose({"memory": "32GB"}, "op 'c'").name
        'gpu'
        """
        for pool in self.pools:
            if pool.fits(request):
                return pool
        listing = "; ".join(p.describe() for p in self.pools)
        raise FlowError(
            f"{label} asks for {reslib.describe(request)}, but no pool of cluster profile {self.profile!r} "
            f"has jobs that large: {listing}. Ask for less, or add or enlarge a pool under "
            f"flow.clusters.{self.profile}.pools in dask config."
        )


def parse_pools(spec: dict, defaults: dict | None = None, profile: str = "?") -> PoolSet:
    """Pools from a profile's ``pools`` entry; ``defaults`` are the profile's SLURMJob kwargs.

    A pool without ``cores``/``memory``/``walltime`` takes them from ``defaults``.
    """
    defaults = {k: v for k, v in (defaults or {}).items() if k not in CLUSTER_KWARGS}
    where = f"cluster profile {profile!r}"
    if not isinstance(spec, dict) or not spec:
        raise FlowError(f"{where}: pools must map pool names to job shapes, e.g. "
                        "{'cpu': {'cores': 2, 'memory': '4GB'}, 'gpu': {'cores': 8, 'memory': '64GB', 'gpus': 1}}")
    pools = []
    for order, (name, entry) in enumerate(spec.items()):
        if entry is None:
            continue  # a user's `pools: {gpu: null}` removes a built-in pool
        label = f"{where}, pool {name!r}"
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.]+", name):
            raise FlowError(f"{where}: pool name {name!r}: use letters, digits, '_' or '.'")
        if not isinstance(entry, dict):
            raise FlowError(f"{label}: expected a mapping of settings (cores, memory, gpus, …), got {entry!r}")
        job = {k: v for k, v in {**defaults, **entry}.items() if k not in POOL_KEYS}
        cores = job.get("cores")
        if isinstance(cores, bool) or not isinstance(cores, int) or cores < 1:
            raise FlowError(f"{label}: cores must be a whole number >= 1, got {cores!r}")
        try:
            memory = reslib.memory_bytes(job.get("memory"))
        except (ValueError, TypeError):
            raise FlowError(f"{label}: memory must be an amount such as '4GB', got {job.get('memory')!r}") from None
        walltime = job.get("walltime")
        try:
            seconds = reslib.walltime_seconds(walltime) if walltime is not None else None
        except ValueError:
            raise FlowError(f"{label}: walltime must be a Slurm time such as '02:00:00', got {walltime!r}") from None
        processes = job.get("processes") or 1
        if isinstance(processes, bool) or not isinstance(processes, int) or not 1 <= processes <= cores:
            raise FlowError(f"{label}: processes must be a whole number from 1 to cores ({cores}), got {processes!r}")
        gpus = entry.get("gpus") or 0
        if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
            raise FlowError(f"{label}: gpus must be a whole number >= 0, got {gpus!r}")
        if gpus and processes != 1:
            raise FlowError(f"{label}: a pool with gpus runs one worker per job; set processes: 1")
        extra = entry.get("resources") or {}
        if not isinstance(extra, dict) or any(
                not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0 for v in extra.values()):
            raise FlowError(f"{label}: resources must map names to positive numbers, e.g. {{'FPGA': 1}}")
        if set(extra) & {reslib.GPU, *reslib.SHAPE} or any(str(k).startswith(RESOURCE_PREFIX) for k in extra):
            raise FlowError(f"{label}: resources names other worker resources; set GPUs with gpus, "
                            "and cores/memory/walltime as pool settings")
        minimum = entry.get("minimum", 0)
        maximum = entry.get("maximum", DEFAULT_MAXIMUM)
        for key, value in (("minimum", minimum), ("maximum", maximum)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise FlowError(f"{label}: {key} must be a whole number of jobs >= 0, got {value!r}")
        if minimum > maximum:
            raise FlowError(f"{label}: minimum ({minimum}) is larger than maximum ({maximum})")
        pools.append(Pool(name=name, cores=cores, memory=memory, processes=processes, gpus=gpus,
                          walltime=seconds, resources=dict(extra), minimum=minimum, maximum=maximum,
                          job=job, order=order))
    if not pools:
        raise FlowError(f"{where}: every pool was removed; define at least one under pools")
    return PoolSet(pools, profile)


def pool_job_kwargs(pool: Pool) -> dict:
    """The SLURMJob keyword arguments of ``pool``'s jobs: its shape, its GPUs as
    ``--gres``, its declared resources, and the pool's name in the job's environment."""
    job = dict(pool.job)
    directives = list(job.get("job_extra_directives") or [])
    if pool.gpus and not any("--gres" in d or "--gpus" in d for d in directives):
        directives.append(f"--gres=gpu:{pool.gpus}")
    worker_args = [a for a in (job.get("worker_extra_args") or [])]
    declared = ",".join(f"{k}={v:g}" for k, v in pool.worker_resources().items())
    worker_args += ["--resources", declared]
    prologue = list(job.get("job_script_prologue") or [])
    prologue.append(f"export {POOL_ENV}={pool.name}")
    job.update(job_extra_directives=directives, worker_extra_args=worker_args, job_script_prologue=prologue,
               processes=pool.processes)
    return job


def _format_bytes(n: int) -> str:
    from dask.utils import format_bytes

    return format_bytes(n).replace(" ", "")


def _format_seconds(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


def merge(base: Any, user: Any) -> Any:
    """A profile's ``pools`` with a user's overrides merged pool by pool, key by key."""
    if not isinstance(base, dict) or not isinstance(user, dict):
        return user if user is not None else base
    merged = {name: dict(entry) if isinstance(entry, dict) else entry for name, entry in base.items()}
    for name, entry in user.items():
        if isinstance(entry, dict) and isinstance(merged.get(name), dict):
            merged[name] = {**merged[name], **entry}
        else:
            merged[name] = entry
    return merged
