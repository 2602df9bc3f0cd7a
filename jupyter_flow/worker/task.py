"""What runs on a Dask worker for each task: the op, its retries and timeout, its logs,
and the artifact write. Workers never open the database: they report through Dask
worker events, which reach the client that submitted the work.
"""

from __future__ import annotations

import copy
import errno
import io
import os
import sys
import threading
import time
import traceback
from typing import Any

from ..artifacts import artifact_store
from ..core.errors import FlowError, OpTimeout, RunCanceled, SerializationError
from ..core.op import RETURN, Op
from ..core.outputs import DISPLAYS, RESERVED, restore_modules
from ..core.provenance import POOL_ENV, gateway_cluster, gpu_info, host_facts, slurm_job_id
from . import capture as displays
from .display_hooks import install as install_display_hooks

TOPIC = "jupyter-flow"
LOG_LIMIT = 64 * 1024  # characters of stdout/stderr kept per task

_context = threading.local()


class Ref:
    """Placeholder in a task's argument template for the value of its ``pos``-th dependency."""

    __slots__ = ("pos", "output")

    def __init__(self, pos: int, output: str | None = None):
        self.pos = pos
        self.output = output

    def __reduce__(self):
        return (Ref, (self.pos, self.output))


class TaskSpec:
    """Everything a worker needs to run one task (sent inside the task graph)."""

    __slots__ = ("run_id", "task_id", "op", "args", "kwargs", "artifacts_url", "captured", "keyring")

    def __init__(self, run_id, task_id, op, args, kwargs, artifacts_url, captured=None, keyring=None):
        self.run_id = run_id
        self.task_id = task_id
        self.op = op
        self.args = args
        self.kwargs = kwargs
        self.artifacts_url = artifacts_url
        self.captured = captured
        self.keyring = keyring  # the submitting user's keys (artifacts/keyring.py)

    def __reduce__(self):
        return (TaskSpec, (self.run_id, self.task_id, self.op, self.args, self.kwargs,
                           self.artifacts_url, self.captured, self.keyring))


# ----------------------------------------------------------------- log capture


class _StreamRouter(io.TextIOBase):
    """sys.stdout/sys.stderr replacement that sends each thread's writes to its own buffer.

    Tasks run concurrently in worker threads; routing per thread keeps their logs apart.
    """

    def __init__(self, original, which: str):
        self.original = original
        self.which = which

    def _buffer(self):
        buffers = getattr(_context, "buffers", None)
        return buffers[self.which] if buffers else None

    def write(self, text):
        buffer = self._buffer()
        if buffer is None:
            return self.original.write(text)
        return buffer.write(text)

    def flush(self):
        if self._buffer() is None:
            self.original.flush()

    def isatty(self):
        return False

    @property
    def encoding(self):
        return getattr(self.original, "encoding", "utf-8")

    def fileno(self):
        return self.original.fileno()


_router_lock = threading.Lock()


def _install_router() -> None:
    with _router_lock:
        if not isinstance(sys.stdout, _StreamRouter):
            sys.stdout = _StreamRouter(sys.stdout, "stdout")
        if not isinstance(sys.stderr, _StreamRouter):
            sys.stderr = _StreamRouter(sys.stderr, "stderr")


class _Capture:
    """stdout, stderr and displays of one task (see worker/capture.py), as Jupyter outputs."""

    def __init__(self, emit_outputs=None):
        self.record = displays.OutputRecord(emit_outputs)
        self.buffers = self.record.buffers

    def __enter__(self):
        _install_router()
        install_display_hooks()
        self.previous = getattr(_context, "buffers", None)
        _context.buffers = self.buffers
        self.previous_record = displays.activate(self.record)
        return self

    def __exit__(self, *exc):
        _context.buffers = self.previous
        displays.activate(self.previous_record)

    def text(self, which: str) -> str:
        value = self.buffers[which].getvalue()
        if len(value) > LOG_LIMIT:
            value = value[:LOG_LIMIT // 2] + "\n… (truncated) …\n" + value[-LOG_LIMIT // 2:]
        return value


# -------------------------------------------------------------------- events


def _worker():
    try:
        from distributed import get_worker

        return get_worker()
    except ValueError:
        return None


def emit(message: dict) -> None:
    """Send an event to the submitting client (a no-op outside a Dask worker)."""
    worker = _worker()
    if worker is not None:
        worker.log_event(TOPIC, message)


def current_task() -> tuple[str, str] | None:
    """(run id, task id) of the task this thread is running, if any."""
    return getattr(_context, "task", None)


# ----------------------------------------------------------------- execution


def _fill(template: Any, deps: tuple) -> Any:
    if isinstance(template, Ref):
        value = deps[template.pos]
        if template.output is not None:
            value = value[template.output]
        # Inputs are copies: mutating one must not change its producer's value, which
        # other tasks on this worker may share.
        try:
            return copy.deepcopy(value)
        except Exception:  # values that refuse copying are passed as they are
            return value
    if isinstance(template, list):
        return [_fill(v, deps) for v in template]
    if isinstance(template, tuple):
        return tuple(_fill(v, deps) for v in template)
    if isinstance(template, dict):
        return {k: _fill(v, deps) for k, v in template.items()}
    return template


def _call_with_timeout(func, args, kwargs, timeout, capture):
    """Run in a helper thread so a timeout can be noticed (the thread cannot be stopped)."""
    outcome: dict = {}
    parent = current_task()

    def target():
        _context.buffers = capture.buffers
        _context.task = parent
        displays.activate(capture.record)
        try:
            outcome["value"] = func(*args, **kwargs)
        except BaseException as err:  # handed back to the caller below
            outcome["error"] = err

    thread = threading.Thread(target=target, daemon=True, name="jupyter-flow-op")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise OpTimeout(f"timed out after {timeout:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


# Child processes of isolated ops by run id, so a cancel can kill them.
_children: dict[str, set] = {}
_children_lock = threading.Lock()


def _call_isolated(func, args, kwargs, timeout, capture, run_id):
    """Run in a child process that a timeout (or a cancel) kills.

    Dask workers are daemonic processes, which multiprocessing forbids to have children,
    so the child is a plain ``python -m jupyter_flow.worker.isolated`` subprocess.
    """
    import subprocess
    import tempfile

    import cloudpickle

    payload = cloudpickle.dumps((func, args, kwargs))
    fd, result_path = tempfile.mkstemp(prefix="jupyter-flow-isolated-")
    os.close(fd)
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_flow.worker.isolated", result_path],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    with _children_lock:
        _children.setdefault(run_id, set()).add(proc)
    try:
        try:
            output, _ = proc.communicate(payload, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise OpTimeout(f"timed out after {timeout:g} s (isolated process killed)") from None
        with open(result_path, "rb") as handle:
            data = handle.read()
        if proc.returncode != 0 or not data:
            raise FlowError(
                f"the isolated process ended without a result (exit code {proc.returncode}); "
                f"it was killed or crashed. Its output:\n{output.decode(errors='replace')[-2000:]}"
            )
        result, out, err = cloudpickle.loads(data)
        capture.buffers["stdout"].write(out)
        capture.buffers["stderr"].write(err)
        if result[0] == "error":
            if len(result) > 2:
                capture.buffers["stderr"].write(result[2])
            raise result[1]
        return result[1]
    finally:
        with _children_lock:
            _children.get(run_id, set()).discard(proc)
        if proc.poll() is None:
            proc.kill()
        os.unlink(result_path)


def kill_isolated(run_id: str) -> int:
    """Kill the child processes of a run's isolated ops on this worker (used by cancel)."""
    with _children_lock:
        procs = list(_children.pop(run_id, ()))
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
    return len(procs)


# What a cancel needs to know on each worker: the runs canceled (what their ops still
# produce is dropped, not written as results) and the ops of each run executing here (a
# Python thread cannot be stopped: the engine restarts a worker still running one).
_canceled: dict[str, float] = {}
_executing: dict[str, set[str]] = {}
_state_lock = threading.Lock()
CANCELED_KEPT_S = 3600.0  # how long a worker remembers a canceled run


def cancel_run(run_id: str) -> int:
    """Run on every worker (``client.run``) when ``run_id`` is canceled: kill its isolated
    ops' processes, drop what its running ops still produce; returns how many of its ops
    still execute here."""
    now = time.monotonic()
    with _state_lock:
        for old in [r for r, at in _canceled.items() if now - at > CANCELED_KEPT_S]:
            del _canceled[old]
        _canceled[run_id] = now
    kill_isolated(run_id)
    return executing(run_id)


def executing(run_id: str) -> int:
    """How many ops of ``run_id`` execute on this worker now (``client.run`` target)."""
    with _state_lock:
        return len(_executing.get(run_id, ()))


def _check_not_canceled(spec: TaskSpec) -> None:
    with _state_lock:
        canceled = spec.run_id in _canceled
    if canceled:
        raise RunCanceled(f"run {spec.run_id} was canceled; op {spec.op.name!r} is not run and nothing "
                          "it produced is kept")


def _output_sender(worker, spec: TaskSpec):
    """Sends a task's live outputs; called from the outputs thread, which get_worker() does not know."""
    if worker is None:
        return None

    def send(seq: int, items: list) -> None:
        worker.log_event(TOPIC, {**_base_event(spec, "output"), "seq": seq, "items": items})

    return send


def _base_event(spec: TaskSpec, kind: str) -> dict:
    return {"t": kind, "run": spec.run_id, "task": spec.task_id, "time": time.time()}


def execute(spec: TaskSpec, *deps: Any) -> Any:
    """Run one op on this worker: retries, timeout, log capture, artifact writes."""
    op: Op = spec.op
    worker = _worker()
    facts = host_facts()
    where = {
        "worker": worker.address if worker is not None else None,
        "host": facts["host"],
        "pid": os.getpid(),
        "slurm_job_id": slurm_job_id(),
        "gateway_cluster": gateway_cluster(),
        "pool": os.environ.get(POOL_ENV),  # set by the job script of a worker pool
        "gpus": gpu_info() if op.resources.get("GPU") else [],
    }
    args = _fill(spec.args, deps)
    kwargs = _fill(spec.kwargs, deps)
    capture = _Capture(_output_sender(worker, spec))
    record = capture.record
    started = time.time()
    attempts = op.retries + 1
    _check_not_canceled(spec)
    _context.task = (spec.run_id, spec.task_id)
    with _state_lock:
        _executing.setdefault(spec.run_id, set()).add(spec.task_id)
    displays.start_live(record)
    try:
        for attempt in range(1, attempts + 1):
            _check_not_canceled(spec)
            emit({**_base_event(spec, "start"), "attempt": attempt, **where})
            try:
                with capture:
                    if op.isolate:
                        value = _call_isolated(op.func, args, kwargs, op.timeout, capture, spec.run_id)
                    elif op.timeout is not None:
                        value = _call_with_timeout(op.func, args, kwargs, op.timeout, capture)
                    else:
                        value = op.func(*args, **kwargs)
                    outputs = _split_outputs(op, value)
                    # The displayed value, open figures, modules and figures: see capture.py.
                    prepared = displays.prepare_outputs(outputs, record)
                break
            except Exception as err:
                if attempt < attempts and not isinstance(err, SerializationError):
                    capture.buffers["stderr"].write(
                        f"[jupyter_flow] attempt {attempt} of op {op.name!r} failed: "
                        f"{type(err).__name__}: {err}; retrying\n"
                    )
                    continue
                record.send_live(final=True, failed=True)
                emit({
                    **_base_event(spec, "failed"),
                    "error": f"{type(err).__name__}: {err}",
                    "error_type": type(err).__name__,
                    "timeout": isinstance(err, OpTimeout),
                    "traceback": "".join(traceback.format_exception(type(err), err, err.__traceback__)),
                    "stdout": capture.text("stdout"),
                    "stderr": capture.text("stderr"),
                    "attempt": attempt,
                    "started": started,
                    **where,
                })
                raise
        _check_not_canceled(spec)  # a canceled op's value is not written as a result
        _warn_if_changed_in_place(spec, capture.buffers["stderr"])
        try:
            store = artifact_store(spec.artifacts_url, keyring=spec.keyring)
            written = {}
            by_identity: dict[int, dict] = {}  # one object bound to several names is stored once
            replaced = {}
            for name, output_value, identity in prepared:
                meta = by_identity.get(identity)
                if meta is None:
                    try:
                        meta = by_identity[identity] = _describe(store.put(output_value))
                    except SerializationError as err:
                        message = f"op {op.name!r} returned a value for {name!r} that cannot be stored: {err}"
                        record.send_live(final=True, failed=True)
                        emit({**_base_event(spec, "failed"), "error": message, "error_type": "SerializationError",
                              "timeout": False, "traceback": "", "stdout": capture.text("stdout"),
                              "stderr": capture.text("stderr"), "attempt": attempt, "started": started, **where})
                        raise SerializationError(message) from None
                written[name] = meta
                if output_value is not outputs[name]:
                    replaced[name] = output_value  # a figure: downstream ops get what a cache hit would give
            shown = record.payload()
            if shown is not None:
                written[DISPLAYS] = _describe(store.put(shown))
        except OSError as err:  # a full disk, a read-only or vanished artifact directory
            message = _artifact_write_failure(op, spec.artifacts_url, err)
            record.send_live(final=True, failed=True)
            emit({**_base_event(spec, "failed"), "error": message, "error_type": "FlowError",
                  "timeout": False, "traceback": "", "stdout": capture.text("stdout"),
                  "stderr": capture.text("stderr"), "attempt": attempt, "started": started, **where})
            raise FlowError(message) from None
        record.send_live(final=True)
        emit({
            **_base_event(spec, "done"),
            "outputs": written,
            "stdout": capture.text("stdout"),
            "stderr": capture.text("stderr"),
            "attempt": attempt,
            "started": started,
            **where,
        })
        if replaced:
            value = {**value, **replaced} if op.multi_output else replaced[RETURN]
        return value
    finally:
        displays.stop_live(record)
        _context.task = None
        with _state_lock:
            running = _executing.get(spec.run_id)
            if running is not None:
                running.discard(spec.task_id)
                if not running:
                    del _executing[spec.run_id]


def _artifact_write_failure(op: Op, artifacts_url: str, err: OSError) -> str:
    """What a user reads when an op's result cannot be written: where, and what to do."""
    where = getattr(err, "filename", None) or artifacts_url
    if err.errno == errno.ENOSPC or err.errno == errno.EDQUOT:
        return (f"op {op.name!r} finished, but its result could not be stored: disk full at {where}; "
                "free space there (or point JUPYTER_FLOW_ARTIFACTS elsewhere) and run it again")
    return (f"op {op.name!r} finished, but its result could not be stored at {where}: "
            f"{err.strerror or err}; check that the artifact directory is writable, then run it again")


def _describe(info) -> dict:
    described = {"hash": info.digest, "size": info.size, "serializer": info.serializer,
                 "serializer_version": info.serializer_version, "type": info.type, "uri": info.uri}
    if info.signer:
        described["signer"] = info.signer
    return described


def execute_chain(specs: list[TaskSpec], *deps: Any) -> Any:
    """A fused linear chain: each op takes the previous op's value (``Ref(0)``)."""
    value = execute(specs[0], *deps)
    for spec in specs[1:]:
        value = execute(spec, value)
    return value


def _warn_if_changed_in_place(spec: TaskSpec, stderr) -> None:
    """Say so when the op changed a value it read from the notebook in place
    (``scores[i] = ...`` on a captured ``scores``): plain Jupyter would keep that change,
    but here the op worked on the worker's copy, so the notebook's value stays as it was."""
    if not spec.captured:
        return
    from ..core.keys import token

    scope = getattr(spec.op.func, "__globals__", None) or {}
    changed = []
    for name, before in spec.captured.items():
        if name not in scope:
            continue
        try:
            after = token(scope[name])
        except Exception:  # no deterministic token now: nothing to compare
            continue
        if after != before:
            changed.append(name)
    for name in changed:
        stderr.write(
            f"[jupyter_flow] {_op_label(spec.op)} changed {name!r} in place, but {name!r} came from the "
            f"notebook and the op ran on a copy: the notebook's {name!r} is unchanged (plain Jupyter "
            f"would have changed it). To keep the change, make {name!r} an output of the op: assign it "
            f"(e.g. `{name} = {name}.copy()` before changing it), then use the new value.\n"
        )


def _op_label(op: Op) -> str:
    """``cell 'fit'`` for a %%flow cell's op (and its map elements), ``op 'fit'`` otherwise."""
    name = str(op.name)
    name = name[: -len(".each")] if name.endswith(".each") else name
    is_cell = getattr(op.func, "__name__", "").startswith("cell_")  # kernel/cells.build_function
    return f"{'cell' if is_cell else 'op'} {name!r}"


def _split_outputs(op: Op, value: Any) -> dict[str, Any]:
    if not op.multi_output:
        return {"return": value}
    if not isinstance(value, dict) or set(op.outputs) - set(value):
        raise FlowError(
            f"op {op.name!r} declares outputs {list(op.outputs)} and must return a dict with them"
        )
    return {name: value[name] for name in op.outputs}


def load_cached(artifacts_url: str, outputs: dict[str, str], multi: bool, keyring=None) -> Any:
    """Task that restores a cache hit's value on a worker for the tasks that need it."""
    store = artifact_store(artifacts_url, keyring=keyring)
    values = {name: store.get(digest) for name, digest in outputs.items() if name not in RESERVED}
    if multi and DISPLAYS in outputs:
        values.update(restore_modules(store.get(outputs[DISPLAYS])))
    return values if multi else values["return"]


def no_worker_keys(dask_scheduler, keys: list[str]) -> list[str]:
    """Run on the scheduler: which of ``keys`` wait for a worker with their resources."""
    tasks = dask_scheduler.tasks
    return [k for k in keys if k in tasks and tasks[k].state == "no-worker"]
