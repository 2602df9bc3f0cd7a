"""Cluster managers, as ``distributed.deploy`` keeps them: where the Dask workers come from.

``profiles.py`` turns a profile of dask config (``flow.clusters.<name>``) into a cluster
class and its keyword arguments; ``cluster.py`` starts, reuses, restarts and closes this
process's clusters; ``pools.py`` reads a profile's worker pools (job shapes) and
``pool_cluster.py`` is the Slurm cluster that runs them on one scheduler.

Nothing here plans or records a run: the engine calls these, never the reverse.
"""
