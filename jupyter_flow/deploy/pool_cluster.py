"""A Slurm cluster with several worker pools (job shapes) on one Dask scheduler, each
scaled on its own.

dask-jobqueue's SLURMCluster submits one job shape and scales it as a whole. Its base,
distributed's SpecCluster, keeps one spec per worker, so this class gives each pool's
workers their own spec (the pool's SLURMJob kwargs) and runs one small adaptive
controller per pool: a pool starts jobs only while tasks ask for its resource, up to its
maximum, and retires its idle jobs after ``wait_count`` checks. Results still pass
between pools through the one scheduler.
"""

from __future__ import annotations

import logging
import math

from dask_jobqueue import SLURMCluster
from distributed.core import Status
from distributed.deploy.adaptive import Adaptive

from ..core.errors import FlowError
from .pools import PoolSet, parse_pools, pool_job_kwargs

log = logging.getLogger("jupyter_flow.engine")


class SlurmPoolCluster(SLURMCluster):
    """SLURMCluster whose workers come from named pools.

    >>> cluster = SlurmPoolCluster(pools={"cpu": {"cores": 1, "memory": "2GB"},
    ...                                   "gpu": {"cores": 4, "memory": "16GB", "gpus": 1}},
    ...                            walltime="01:00:00")        # doctest: +SKIP
    >>> cluster.adapt(interval="1s")                            # doctest: +SKIP
    >>> print(cluster.job_script("gpu"))                        # doctest: +SKIP
    """

    def __init__(self, pools: dict | PoolSet, profile: str = "slurm-pools", **job_kwargs):
        self.pools = pools if isinstance(pools, PoolSet) else parse_pools(pools, job_kwargs, profile)
        first = self.pools.pools[0]
        # The base class validates one job shape at construction: the smallest pool's.
        job_kwargs = {**job_kwargs, "cores": first.cores, "memory": first.job.get("memory"),
                      "processes": first.processes}
        self._pool_adaptive: dict[str, PoolAdaptive] = {}
        super().__init__(**job_kwargs)
        # The SLURMJob options of each pool: the cluster's own (scheduler address, security…)
        # with the pool's shape on top.
        self._pool_spec = {}
        for pool in self.pools:
            options = {**self._job_kwargs, **pool_job_kwargs(pool)}
            spec = {"cls": self.job_cls, "options": options}
            if pool.processes > 1:
                spec["group"] = [f"-{i}" for i in range(pool.processes)]
            try:
                self.job_cls("tcp://<scheduler>:8786", name="dummy-name", **options)
            except (TypeError, ValueError) as err:
                self.close()
                raise FlowError(f"cluster profile {profile!r}, pool {pool.name!r}: bad job settings: {err}") from None
            self._pool_spec[pool.name] = spec
        self._spec_pool: dict[str, str] = {}  # worker spec name -> pool
        for pool in self.pools:
            if pool.minimum:
                self.scale_pool(pool.name, pool.minimum)

    # ------------------------------------------------------------- scaling
    def pool_of(self, spec_name: str) -> str | None:
        return self._spec_pool.get(spec_name)

    def _pool_names(self, pool: str) -> list[str]:
        return [name for name in self.worker_spec if self._spec_pool.get(name) == pool]

    def scale_pool(self, pool: str, jobs: int) -> None:
        """Ask for ``jobs`` jobs of ``pool`` (not yet started ones are dropped first)."""
        if pool not in self._pool_spec:
            raise FlowError(f"no pool {pool!r}; pools: {[p.name for p in self.pools]}")
        names = self._pool_names(pool)
        if len(names) > jobs:
            launched = {v["name"] for v in self.scheduler_info["workers"].values()}
            not_launched = [n for n in names if not any(w == n or w.startswith(f"{n}-") for w in launched)]
            while len(names) > jobs:
                name = not_launched.pop() if not_launched else names[-1]
                names.remove(name)
                del self.worker_spec[name]
        if self.status not in (Status.closing, Status.closed):
            while len(names) < jobs:
                name = f"{pool}-{self._i}"
                self._i += 1
                if name in self.worker_spec:
                    continue
                self.worker_spec[name] = self._pool_spec[pool]
                self._spec_pool[name] = pool
                names.append(name)
        self.loop.add_callback(self._correct_state)

    def scale(self, n=None, jobs=0, memory=None, cores=None):
        """Only ``scale(0)`` (closing) applies to every pool; size pools with :meth:`scale_pool`."""
        if n or jobs or memory or cores:
            raise FlowError("this cluster has worker pools; size one with scale_pool(pool, jobs) "
                            "or let adapt() size them")
        self.worker_spec.clear()
        self.loop.add_callback(self._correct_state)

    def adapt(self, *, minimum=None, maximum=None, interval=None, wait_count=None, **ignored) -> None:
        """Scale each pool on its own demand; ``minimum``/``maximum`` are defaults for pools
        that set none (per pool, in jobs)."""
        for adaptive in self._pool_adaptive.values():
            adaptive.stop(reason="replaced")
        self._pool_adaptive = {
            pool.name: PoolAdaptive(self, pool.name, interval=interval, wait_count=wait_count,
                                    minimum=pool.minimum, maximum=pool.maximum)
            for pool in self.pools
        }

    async def _close(self):
        for adaptive in self._pool_adaptive.values():
            adaptive.stop(reason="cluster-closing")
        await super()._close()

    def job_script(self, pool: str | None = None) -> str:
        """The job script of ``pool`` (default: the smallest pool)."""
        name = pool or self.pools.pools[0].name
        if name not in self._pool_spec:
            raise FlowError(f"no pool {name!r}; pools: {[p.name for p in self.pools]}")
        try:
            address = self.scheduler.address
        except AttributeError:
            address = "tcp://<scheduler>:8786"
        return self.job_cls(address, name="dummy-name", **self._pool_spec[name]["options"]).job_script()


class PoolAdaptive(Adaptive):
    """distributed's Adaptive limited to one pool: its workers, its tasks' demand.

    Demand is read from the scheduler, which runs in this process: the pool-resource
    units of the tasks that wait for a worker of the pool (no-worker) or run on one.
    Tasks whose inputs are not ready yet do not count, so a GPU job is not started
    while the CPU ops before it still run.
    """

    def __init__(self, cluster: SlurmPoolCluster, pool: str, **kwargs):
        self.pool = cluster.pools.by_name[pool]
        super().__init__(cluster, **{k: v for k, v in kwargs.items() if v is not None})

    def _workers(self):
        scheduler = self.cluster.scheduler
        return [ws for ws in scheduler.workers.values() if self.pool.resource in (ws.resources or {})]

    @property
    def plan(self):
        out = set()
        for name in self.cluster._pool_names(self.pool.name):
            spec = self.cluster.worker_spec[name]
            out.update(f"{name}{suffix}" for suffix in spec["group"]) if "group" in spec else out.add(name)
        return out

    @property
    def requested(self):
        out = set()
        for name in self.cluster._pool_names(self.pool.name):
            if name in self.cluster.workers:
                spec = self.cluster.worker_spec[name]
                out.update(f"{name}{suffix}" for suffix in spec["group"]) if "group" in spec else out.add(name)
        return out

    @property
    def observed(self):
        return {ws.name for ws in self._workers()}

    async def target(self) -> int:
        scheduler = self.cluster.scheduler
        resource = self.pool.resource
        units = sum(ts.resource_restrictions.get(resource, 0) for ts in scheduler.unrunnable
                    if ts.resource_restrictions)
        for ws in self._workers():
            units += sum((ts.resource_restrictions or {}).get(resource, 0) for ts in ws.processing)
        workers = math.ceil(units / self.pool.threads)
        return math.ceil(workers / self.pool.processes)

    async def safe_target(self) -> int:
        # In jobs, as the bounds are; plan/observed count workers (processes per job).
        jobs = min(max(await self.target(), self.pool.minimum), self.pool.maximum)
        return jobs * self.pool.processes

    async def workers_to_close(self, target: int) -> list[str]:
        """Idle workers of the pool beyond ``target``, those without data first.

        A worker holding results (a run's values not yet used downstream) is closed only
        when another worker remains to take them: retiring moves them there first.
        """
        idle = sorted((ws for ws in self._workers() if not ws.processing), key=lambda ws: ws.nbytes)
        remaining = len(self.cluster.scheduler.workers)
        chosen: list[str] = []
        for ws in idle[:max(0, len(self.observed) - target)]:
            if ws.nbytes and remaining - len(chosen) <= 1:
                break
            chosen.append(ws.name)
        return chosen

    async def scale_down(self, workers) -> None:
        """Retire ``workers`` and cancel the jobs of those the scheduler let go.

        The scheduler keeps a worker whose only copy of a value it cannot move; its job
        must keep running too (distributed's Adaptive would cancel it anyway).
        """
        if not workers:
            return
        retired = await self.scheduler.retire_workers(names=list(workers), remove=True, close_workers=True)
        names = [info.get("name") for info in (retired or {}).values() if info.get("name") is not None]
        if names:
            log.info("jupyter_flow: pool %s releases %s", self.pool.name, names)
            await self.cluster.scale_down(names)

    async def scale_up(self, n: int) -> None:
        self.cluster.scale_pool(self.pool.name, math.ceil(n / self.pool.processes))
