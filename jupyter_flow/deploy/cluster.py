"""The clusters of this process: started from a profile (profiles.py) or reached at a
scheduler address on first use, then reused; restarting workers after a cancel; the
listing of profiles and clusters in use (``jupyter flow clusters``, REST).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import threading
import types
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from ..core.errors import FlowError
from ..core.secrets import redact
from . import pools as pool_lib
from .profiles import cluster_kwargs, default_profile, load_class, pool_class, profiles

log = logging.getLogger("jupyter_flow.engine")
RESTART_TIMEOUT_S = 60.0  # how long restarting a canceled op's worker may take
RESTART_KILL_S = 1.0  # how long a worker being restarted after a cancel may take to stop


@dataclass
class ClusterHandle:
    """A connected cluster: its profile name (or address), the Dask client and cluster."""

    name: str
    client: Any
    cluster: Any = None
    owned: bool = True
    kwargs: dict = field(default_factory=dict)
    pools: Any = None  # the PoolSet of a cluster with worker pools
    overrides: dict = field(default_factory=dict)  # what connect() was given besides the profile

    @property
    def address(self) -> str:
        return self.client.scheduler.address

    @property
    def dashboard_link(self) -> str | None:
        try:
            return self.client.dashboard_link
        except Exception:  # no dashboard (e.g. bokeh missing): there is simply no link
            return None

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self.cluster is not None and self.owned:
                self.cluster.close()


_handles: dict[tuple, ClusterHandle] = {}
_lock = threading.Lock()
_current: list[str | None] = [None]
# The overrides given with the current profile: a later run without `cluster=` (or with
# the same profile name) reuses that cluster instead of starting a second, default one.
_current_overrides: dict = {}


def _freeze(kwargs: dict) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in kwargs.items()))


def connect(target: str | None = None, **overrides: Any) -> ClusterHandle:
    """Get (creating on first use, then reusing) the cluster for a profile or address.

    >>> handle = connect("local", n_workers=1)          # doctest: +SKIP
    >>> handle = connect("slurm", cores=4, adapt={"maximum": 20})   # doctest: +SKIP
    >>> handle = connect("tcp://10.0.0.5:8786")          # an existing scheduler  # doctest: +SKIP
    """
    name, overrides = _resolve(target, overrides)
    key = (name, _freeze(overrides))
    with _lock:
        handle = _handles.get(key)
        if _running(handle):
            return handle
        handle = _start(name, overrides)
        handle.overrides = dict(overrides)
        _handles[key] = handle
        return handle


def use(target: str | None, **overrides: Any) -> ClusterHandle:
    """Make ``target`` this process's default cluster and connect to it."""
    handle = connect(target, **overrides)
    _current[0] = target
    _current_overrides.clear()
    _current_overrides.update(handle.overrides)
    return handle


def _running(handle: ClusterHandle | None) -> TypeGuard[ClusterHandle]:
    return handle is not None and handle.client.status in ("running", "connecting")


def _resolve(target: str | None, overrides: dict) -> tuple[str, dict]:
    """The profile (or address) and overrides a connection to ``target`` means.

    A profile named without overrides is the cluster already connected for it, whatever
    overrides that one was started with: after ``connect("local", resources={"GPU": 1})``,
    ``jf.run(..., cluster="local")`` must go to that cluster, not start a second, default
    one whose workers declare no GPU (the op would wait for a GPU worker forever).
    """
    name = target or _current[0] or default_profile()
    if overrides:
        return name, overrides
    if name == _current[0]:
        return name, dict(_current_overrides)
    connected = [h for (profile, _), h in list(_handles.items()) if profile == name and _running(h)]
    if not connected or any(not h.overrides for h in connected):
        return name, {}
    return name, dict(connected[-1].overrides)  # the newest one


def pools_for(target: str | None):
    """The pools a run on ``target`` (as ``connect`` resolves it) places its tasks in, or None.

    Known before the cluster is started, so a task that fits no pool fails at submission.
    """
    name = target or _current[0] or default_profile()
    if "://" in name:
        return None
    name, overrides = _resolve(target, {})
    handle = _handles.get((name, _freeze(overrides)))
    if _running(handle):
        return handle.pools
    spec = profiles().get(name)
    if spec is None:
        return None  # connect() says what is wrong
    kwargs, _ = cluster_kwargs(name, _bind=False, **overrides)  # the scheduler's address is not needed
    if "pools" not in kwargs:
        return None
    return pool_lib.parse_pools(kwargs["pools"], kwargs, name)


def _start(name: str, overrides: dict) -> ClusterHandle:
    from distributed import Client

    if "://" in name:
        security = overrides.get("security")
        try:
            client = Client(name, timeout="10s", set_as_default=False, security=security)
        except OSError as err:
            raise FlowError(f"cannot reach the Dask scheduler at {name}: {err}") from None
        return ClusterHandle(name=name, client=client, owned=False)
    kwargs, adapt = cluster_kwargs(name, **overrides)
    spec = profiles()[name]
    cls = load_class(name, spec)
    if "pools" in kwargs:
        cls = pool_class(name, cls)
    _refuse_in_a_spawned_import(name)
    _check_batch_system(name, cls)
    try:
        with _interrupt_blocked():
            cluster = cls(**kwargs)
    except (TypeError, ValueError) as err:
        # ValueError: e.g. a cluster option a Dask Gateway refuses ("worker_cores must be <= 2")
        raise FlowError(f"cluster profile {name!r}: bad settings for {spec['class']}: {err}") from None
    except RuntimeError as err:
        if "failed to start" in str(err) and _called_at_script_top_level():
            raise FlowError(_UNGUARDED.format(name=name, who="the worker processes of the local cluster "
                                              "imported your script again and ran its top-level code")) from None
        raise
    if adapt:
        cluster.adapt(**adapt)
    # A cluster built with a Security object carries it; the client must present it too.
    client = Client(cluster, set_as_default=False, security=getattr(cluster, "security", None))
    try:
        client.register_plugin(IgnoreInterrupts(os.getpid()))  # type: ignore[arg-type]  # a duck-typed plugin
    except Exception as err:  # a guard, not a requirement: the signal mask already protects them
        log.debug("jupyter_flow: could not register the interrupt guard on the workers: %s", err)
    return ClusterHandle(name=name, client=client, cluster=cluster, kwargs=kwargs,
                         pools=getattr(cluster, "pools", None) if "pools" in kwargs else None)


SLURM_PROBE_TIMEOUT_S = 30


def _check_batch_system(name: str, cls: type) -> None:
    """Before a dask-jobqueue cluster starts: its job commands exist and (Slurm) its
    controller answers. Otherwise every ``sbatch`` of the adaptive loop fails in the log and
    ``jf.run`` waits for workers that never come; say so now, with what to do."""
    job_cls = getattr(cls, "job_cls", None)
    submit = getattr(job_cls, "submit_command", None)
    if not submit:
        return  # not a job-queue cluster
    import shutil
    import subprocess

    command = submit.split()[0]
    if shutil.which(command) is None:
        raise FlowError(f"cluster profile {name!r}: `{command}` is not on PATH, so no {cls.__name__} job can be "
                        "submitted from this machine; run on a login node of the cluster, or choose another "
                        "cluster (jf.cluster('local'))")
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:  # pragma: no cover - the class came from it
        return
    if not issubclass(cls, SLURMCluster) or shutil.which("squeue") is None:
        return
    try:
        probe = subprocess.run(["squeue", "-h", "-o", "%i", "-u", str(os.getuid())], capture_output=True,
                               text=True, timeout=SLURM_PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        log.warning("jupyter_flow: cluster profile %r: squeue did not answer within %d s; starting anyway",
                    name, SLURM_PROBE_TIMEOUT_S)
        return
    if probe.returncode != 0:
        said = " ".join((probe.stderr or probe.stdout).split())[:300]
        raise FlowError(f"cluster profile {name!r}: Slurm does not answer from this machine (squeue: {said}); "
                        "start Slurm or check SLURM_CONF, or choose another cluster (jf.cluster('local'))")


def _refuse_in_a_spawned_import(name: str) -> None:
    """A script without ``if __name__ == "__main__":`` is imported again by every worker
    process a local cluster starts (``multiprocessing`` spawns them); its top-level
    ``jf.run`` would start a cluster there too, and hundreds of lines of "Nanny failed to
    start" follow. Say what to do instead, once per worker."""
    import multiprocessing

    # A spawned process is "inheriting" while it imports the parent's main module.
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise FlowError(_UNGUARDED.format(name=name, who="a Dask worker process started by your script ran "
                                          "the script's top-level code again and tried to start a cluster"))


_UNGUARDED = ('cluster profile {name!r}: {who}; put the script\'s calls under `if __name__ == "__main__":` '
              "(see the README quickstart)")


def _called_at_script_top_level() -> bool:
    """Whether a script's top-level code (not a function, not a notebook) is starting the cluster."""
    import sys

    main = sys.modules.get("__main__")
    if main is None or not getattr(main, "__file__", None):
        return False
    frame: types.FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_globals is vars(main) and frame.f_code.co_name == "<module>":
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def _interrupt_blocked():
    """Build a cluster whose processes never see the kernel's interrupt.

    Jupyter interrupts a kernel by sending SIGINT to its whole process group, which the
    worker processes of a LocalCluster share: each died of a KeyboardInterrupt, and the
    next cell waited for workers that never came back. SIGINT is blocked in this thread
    while the cluster starts, so the cluster's event-loop thread inherits the block, and
    so does every process it spawns (a blocked signal stays blocked across fork and exec),
    the workers a nanny restarts later included. This thread is unblocked again at once:
    the kernel itself still receives the interrupt, and cancels the run (kernel/live.py).
    """
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no process-group interrupt to guard
        yield
        return
    # multiprocessing's resource tracker, when it starts, unblocks SIGINT in the thread that
    # starts it (the cluster's): start it first, here.
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class IgnoreInterrupts:
    """Dask worker plugin: a worker process this one started ignores SIGINT (the second guard
    beside ``_interrupt_blocked``, for a worker whose signal mask something reset). Workers in
    this very process (``processes=False``) are left alone: that is the kernel itself."""

    name = "jupyter-flow-ignore-interrupts"

    def __init__(self, parent_pid: int):
        self.parent_pid = parent_pid

    def setup(self, worker=None) -> None:
        import os

        if os.getpid() != self.parent_pid and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)


class _QuietRestart(logging.Filter):
    """Dask logs a deliberate restart like an accident (a worker "still alive… killing", a
    nanny "restarting", a worker "removed"); in a kernel these lines land in the running cell."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.WARNING


_RESTART_LOGGERS = ("distributed.nanny", "distributed.scheduler", "distributed.core", "distributed.worker")


async def _kill_worker_process(dask_worker, reason: str = "jupyter-flow-cancel") -> str:
    """Run on a nanny (``client.run(..., nanny=True)``): kill its worker process at once; the
    nanny starts a fresh one. ``Nanny.kill``'s graceful stop waits seconds for a busy thread
    that will never finish, so it gets a short timeout."""
    await dask_worker.kill(timeout=RESTART_KILL_S, reason=reason)
    return "OK"


def restart_workers(client, addresses: list[str], *, reason: str) -> dict[str, str]:
    """Restart the workers at ``addresses``: their nannies start fresh processes, and this
    waits (up to ``RESTART_TIMEOUT_S``) until the cluster has as many workers as before.

    Used after a cancel when an op of the canceled run still occupies them: the scheduler
    reschedules the other tasks they ran (a retry, not a failure). A worker without a
    nanny cannot be restarted without losing it, so it is left as it is, with a warning.
    Returns address -> "OK", "gone", "no nanny" or an error message.
    """
    try:
        workers = client.scheduler_info(n_workers=-1)["workers"]
    except Exception as err:  # the scheduler is gone: so are its workers
        return {addr: f"error: {err}" for addr in addresses}
    outcome: dict[str, str] = {}
    restartable = []
    for addr in addresses:
        if addr not in workers:
            outcome[addr] = "gone"
        elif workers[addr].get("nanny"):
            restartable.append(addr)
        else:
            outcome[addr] = "no nanny"
            log.warning("jupyter_flow: %s, but worker %s has no nanny to restart it: the op keeps it busy "
                        "until it ends (its result is discarded); use isolate=True for ops that must stop "
                        "at once", reason, addr)
    if not restartable:
        return outcome
    quiet = _QuietRestart()
    loggers = [logging.getLogger(name) for name in _RESTART_LOGGERS]
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        try:
            done = client.run(_kill_worker_process, workers=restartable, nanny=True, on_error="return")
        except Exception as err:  # the nannies cannot be reached: Dask's own restart is the fallback
            log.debug("jupyter_flow: killing workers through their nannies failed (%s); restarting them", err)
            done = client.restart_workers(restartable, timeout=RESTART_TIMEOUT_S, raise_for_error=False)
        for addr in restartable:
            result = done.get(addr)
            outcome[addr] = result if isinstance(result, str) else f"error: {result}"
        _wait_for_replacements(client, set(workers), set(restartable))
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)
    return outcome


def _wait_for_replacements(client, before: set[str], restarted: set[str]) -> None:
    """Until the restarted workers are gone and as many workers as before are back."""
    import time

    deadline = time.monotonic() + RESTART_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            now = set(client.scheduler_info(n_workers=-1)["workers"])
        except Exception:  # the scheduler went away meanwhile: nothing to wait for
            return
        if not now & restarted and len(now) >= len(before):
            return
        time.sleep(0.1)
    log.warning("jupyter_flow: restarted workers did not come back within %g s", RESTART_TIMEOUT_S)


def describe(store=None) -> dict:
    """Profiles and clusters in use, as data for ``jupyter flow clusters`` and the REST API.

    ``store`` is a :class:`jupyter_flow.store.Store`; without one the configured store is
    opened (and closed) for the listing.

    >>> info = describe()                                    # doctest: +SKIP
    >>> [p["name"] for p in info["profiles"]][:3], info["default"]   # doctest: +SKIP
    (['cuda', 'gateway', 'local'], 'local')
    """
    import importlib.util

    connected = {h.name: h for h in list(_handles.values()) if h.client.status in ("running", "connecting")}
    listing = []
    for name, spec in sorted(profiles().items()):
        module = str(spec.get("module") or "")
        try:
            available = bool(module) and importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            available = False
        handle = connected.get(name)
        listing.append({
            "name": name, "module": module, "class": spec.get("class"),
            "kwargs": redact(spec.get("kwargs") or {}), "adapt": spec.get("adapt"),
            "gpus": spec.get("gpus"), "pools": spec.get("pools"), "available": available,
            "package": spec.get("package"),
            "connected": handle is not None,
            "address": handle.address if handle is not None else None,
            "dashboard": handle.dashboard_link if handle is not None else None,
        })
    own_store = store is None
    if own_store:
        from ..core.settings import resolve_db_url
        from ..store import Store

        store = Store(resolve_db_url())
    try:
        in_use = store.list_clusters(active_only=True)
    finally:
        if own_store:
            store.close()
    return {"default": default_profile(), "current": _current[0], "profiles": listing, "in_use": in_use}


def forget(handle: ClusterHandle) -> None:
    """Close ``handle`` and stop reusing it (a later ``connect`` starts a fresh cluster)."""
    with _lock:
        for key in [k for k, h in _handles.items() if h is handle]:
            del _handles[key]
    try:
        handle.close()
    except Exception as err:  # already gone: nothing left running
        log.debug("jupyter_flow: closing cluster %s: %s", handle.name, err)


def close_all() -> None:
    with _lock:
        handles = list(_handles.values())
        _handles.clear()
        _current_overrides.clear()
    for handle in handles:
        try:
            handle.close()
        except Exception:  # closing at exit: a cluster that is already gone is fine
            pass


atexit.register(close_all)
