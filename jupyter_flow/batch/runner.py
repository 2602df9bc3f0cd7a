"""Run a notebook once per parameter point with papermill, recorded as a batch of runs.

Executions are kernels on this machine, ``parallel`` at a time; their ``%%flow`` ops go to
one cluster that this process starts (or connects to) and hands to every kernel, so
executions never hold the worker slots their own ops need.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime
from pathlib import Path
from typing import Any

from ..core.errors import FlowError
from ..core.ids import new_id
from ..core.provenance import USER_ENV, flow_user
from ..core.status import RunKind, RunStatus
from ..store.records import RunRecord
from .declared import read_notebook, validate_params
from .grid import load_grid, points
from .secrets import redact_notebook, scrub_text, secret_values

CANCEL_POLL_S = 0.5


def batch(
    notebook: str | Path,
    params: dict[str, Any] | None = None,
    grid: dict[str, list] | str | Path | None = None,
    *,
    parallel: int = 1,
    cluster: str | None = None,
    name: str | None = None,
    kernel: str | None = None,
    wait: bool = True,
    progress: bool | str = False,
    db_url: str | None = None,
    artifacts_url: str | None = None,
    schedule_id: str | None = None,
    scheduled_for: datetime | None = None,
    keep_cluster: bool = True,
    owner: str | None = None,
):
    """Run ``notebook`` once per point of ``params`` × ``grid``; returns the batch ``Run``.

    ``owner`` is who the batch and its executions belong to (default: this process's Jupyter
    user, ``core.provenance.flow_user()``; a schedule fires as the user who made it); the
    executions' kernels run with ``JUPYTER_FLOW_USER`` set to it, so their cell runs are that
    user's too.

    ``keep_cluster=False`` (the Jupyter server's batches and schedules) closes a cluster this
    process started for the batch (a local one) once no batch of this process uses it: a
    server must not keep Dask workers running after the batches it was asked for.

    ``progress=True`` shows a tqdm bar of executions and a line on stderr as each one starts
    and ends (parameters, status, duration, ops ran/cached/failed); ``progress="lines"`` the
    lines only (for logs and pipes, where a bar would be noise).

    Values are checked against the notebook's declared parameters first (``validate_params``:
    the names its parameters cell defines, the types, bounds and choices of its ``jf.param``
    calls); a bad one raises FlowError and records nothing. A scheduler passes
    ``schedule_id`` and ``scheduled_for`` (the cron time), which the batch run records.

    >>> run = jf.batch("train.ipynb", params={"epochs": 3}, grid={"lr": [0.1, 0.01]}, parallel=2)  # doctest: +SKIP
    >>> jf.compare(run.id)                                                                       # doctest: +SKIP
    """
    from ..deploy import cluster as clusters
    from ..engine.records import Run
    from ..engine.runtime import get_engine

    if not isinstance(parallel, int) or isinstance(parallel, bool) or parallel < 1:
        raise FlowError(f"batch: parallel must be a whole number >= 1, got {parallel!r}")
    path, nb = read_notebook(notebook)
    if isinstance(grid, (str, Path)):
        grid = load_grid(grid)
    # Unknown names, wrong types, values out of bounds, and secrets passed back redacted
    # ("Rerun as batch" of a run whose secrets were not stored) all stop here.
    params, grid = validate_params(path, params, grid)
    all_points = points(params, grid)
    engine = get_engine(db_url, artifacts_url)
    handle = clusters.connect(cluster)  # unknown profile: FlowError, nothing recorded
    engine.register_cluster(handle)
    kernel = kernel or nb.metadata.get("kernelspec", {}).get("name") or "python3"

    engine.writer.flush()
    store = engine.store
    batch_id = new_id()
    owner = owner or flow_user()
    store.create_run(RunRecord(
        id=batch_id, kind=RunKind.BATCH.value, status=RunStatus.RUNNING.value, name=name or path.stem,
        owner_id=engine.owner_id, owner=owner, notebook=str(path), cluster=handle.name,
        params={"grid": grid or {}, "params": params or {}, "parallel": parallel},
        schedule_id=schedule_id, scheduled_for=scheduled_for,
    ))
    children = []
    for point in all_points:
        child = new_id()
        store.create_run(RunRecord(
            id=child, kind=RunKind.NOTEBOOK.value, status=RunStatus.PENDING.value,
            name=path.stem, parent_id=batch_id, owner_id=engine.owner_id, owner=owner, params=point,
            notebook=str(path), cluster=handle.name,
        ))
        children.append((child, point))

    job = _Batch(engine, batch_id, path, kernel, handle.address, children, parallel, progress, owner)
    _using(handle, +1)

    def run_then_release() -> None:
        try:
            job.run()
        finally:
            if _using(handle, -1) == 0 and not keep_cluster and handle.owned:
                clusters.forget(handle)

    if wait:
        run_then_release()
        return Run(engine, batch_id)
    threading.Thread(target=run_then_release, name=f"jupyter-flow-batch-{batch_id}", daemon=True).start()
    return Run(engine, batch_id)


_users: dict[int, int] = {}  # id(cluster handle) -> batches of this process running on it
_users_lock = threading.Lock()


def _using(handle, change: int) -> int:
    """Count the batches using ``handle``; returns how many are left."""
    with _users_lock:
        count = _users.get(id(handle), 0) + change
        if count > 0:
            _users[id(handle)] = count
        else:
            _users.pop(id(handle), None)
        return count


class _Batch:
    def __init__(self, engine, batch_id, path, kernel, address, children, parallel, progress, owner):
        self.engine = engine
        self.owner = owner
        self.store = engine.store
        self.batch_id = batch_id
        self.path = path
        self.kernel = kernel
        self.address = address
        self.children = children
        self.parallel = parallel
        self.progress = progress
        self.canceled = threading.Event()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"jupyter-flow-batch-{batch_id}-"))

    def run(self) -> None:
        report = _Progress(self, self.progress)
        results: dict[str, str] = {}
        with ThreadPoolExecutor(max_workers=self.parallel) as pool:
            futures = {pool.submit(self._execute, i, run_id, point, report): run_id
                       for i, (run_id, point) in enumerate(self.children)}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
        report.close()
        failed = sum(1 for status in results.values() if status == RunStatus.FAILED.value)
        canceled = sum(1 for status in results.values() if status == RunStatus.CANCELED.value)
        if self.canceled.is_set() or canceled:
            status = RunStatus.CANCELED.value
            error = f"canceled: {canceled} of {len(results)} executions did not finish"
        elif failed:
            status, error = RunStatus.FAILED.value, f"{failed} of {len(results)} executions failed"
        else:
            status, error = RunStatus.SUCCESS.value, None
        self.store.finish_run(self.batch_id, self.engine.owner_id, status, error=error)
        shutil.rmtree(self.workdir, ignore_errors=True)  # outputs are artifacts by now

    def _cancel_requested(self, run_id: str) -> bool:
        if self.canceled.is_set():
            return True
        if self.store.cancel_requested([self.batch_id, run_id]):
            self.canceled.set()
            return True
        return False

    def _execute(self, index: int, run_id: str, point: dict, report: "_Progress") -> str:
        status = RunStatus.FAILED.value
        started = time.monotonic()
        try:
            status = self._execute_one(index, run_id, point, report)
        finally:
            report.ended(index, run_id, point, status, time.monotonic() - started)
        return status

    def _execute_one(self, index: int, run_id: str, point: dict, report: "_Progress") -> str:
        owner = self.engine.owner_id
        if self._cancel_requested(run_id):
            self.store.finish_run(run_id, owner, RunStatus.CANCELED.value, error="canceled before it started")
            return RunStatus.CANCELED.value
        self.store.update_run(run_id, owner, status=RunStatus.RUNNING.value)
        report.started(index, point)
        output = self.workdir / f"{index:04d}-{self.path.name}"
        # The parameters go through stdin, so no file holds a secret value.
        spec = {
            "input": str(self.path), "output": str(output), "kernel": self.kernel,
            "cwd": str(self.path.parent), "error_path": str(self.workdir / f"{index:04d}-error.json"),
        }
        spec_path = self.workdir / f"{index:04d}-spec.json"
        spec_path.write_text(json.dumps(spec))
        env = dict(os.environ)
        env.update({
            "JUPYTER_FLOW_RUN_ID": run_id,          # the kernel's cell runs become children of this run
            USER_ENV: self.owner,                   # ... and belong to the batch's owner
            "JUPYTER_FLOW_NOTEBOOK": str(self.path),  # and record the notebook they come from
            "JUPYTER_FLOW_DB": self.engine.db_url,
            "JUPYTER_FLOW_ARTIFACTS": self.engine.artifacts_url,
            "DASK_FLOW__DEFAULT_CLUSTER": self.address,  # every kernel uses the batch's cluster
        })
        proc = subprocess.Popen([sys.executable, "-m", "jupyter_flow.batch.execute", str(spec_path)], env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            with proc.stdin:
                proc.stdin.write(json.dumps(point).encode())
        except BrokenPipeError:  # it died at once; its exit code and output say why
            pass
        output_lines = []
        reader = threading.Thread(target=lambda: output_lines.extend(proc.stdout), daemon=True)
        reader.start()
        canceled = False
        while proc.poll() is None:
            if self._cancel_requested(run_id):
                canceled = True
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                break
            time.sleep(CANCEL_POLL_S)
        proc.wait()
        reader.join(5)
        try:
            return self._record(run_id, point, output, Path(spec["error_path"]), proc.returncode, canceled,
                                output_lines)
        finally:
            # Only the redacted copy is kept; this one holds the injected secret values.
            output.unlink(missing_ok=True)
            Path(spec["error_path"]).unlink(missing_ok=True)

    def _record(self, run_id, point, output, error_path, returncode, canceled, output_lines) -> str:
        """Store the executed notebook (without secret values) and end the notebook run."""
        owner = self.engine.owner_id
        if output.exists():
            info = self.engine.artifacts.put(redact_notebook(output.read_bytes(), point))
            self.store.put_artifacts([{"hash": info.digest, "size": info.size, "serializer": info.serializer,
                                       "serializer_version": info.serializer_version, "type": "notebook",
                                       "uri": info.uri}])
            self.store.update_run(run_id, owner, outputs={"output_notebook": info.digest})
        if canceled:
            self.store.finish_run(run_id, owner, RunStatus.CANCELED.value, error="canceled")
            return RunStatus.CANCELED.value
        if returncode == 0:
            self.store.finish_run(run_id, owner, RunStatus.SUCCESS.value)
            return RunStatus.SUCCESS.value
        if error_path.exists():
            failure = json.loads(error_path.read_text())
            error = f"{_cell_label(output, failure)} raised {failure['ename']}: {failure['evalue']}"
        else:
            tail = b"".join(output_lines).decode(errors="replace").strip().splitlines()[-3:]
            error = f"the execution failed (exit code {returncode}): {' | '.join(tail)}"
        self.store.finish_run(run_id, owner, RunStatus.FAILED.value, error=scrub_text(error, secret_values(point)))
        return RunStatus.FAILED.value


class _Progress:
    """What a person at the terminal sees while a batch runs: a line when each execution
    starts and ends (its parameters, status, duration and what its ops did), and with
    ``bar`` a tqdm bar of executions done. Secret parameter values are shown as ``***``."""

    def __init__(self, job: "_Batch", mode: bool | str):
        self.job, self.enabled, self.lock = job, bool(mode), threading.Lock()
        self.total = len(job.children)
        self.bar = None
        if mode is True:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc=f"batch {job.batch_id}", unit="notebook")

    def _say(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def _label(self, index: int, point: dict) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in point.items()) or "no parameters"
        return f"[{index + 1}/{self.total}] {scrub_text(shown, secret_values(point))}"

    def started(self, index: int, point: dict) -> None:
        if self.enabled:
            with self.lock:
                self._say(f"{self._label(index, point)}: running")

    def ended(self, index: int, run_id: str, point: dict, status: str, seconds: float) -> None:
        if not self.enabled:
            return
        run = self.job.store.get_run(run_id)
        counts = (run.task_counts if run is not None else None) or {}
        ran = sum(counts.get(s, 0) for s in ("SUCCESS", "FAILED", "RUNNING"))
        line = (f"{self._label(index, point)}: {status} in {seconds:.1f} s"
                f" · ran {ran} · cached {counts.get('CACHED', 0)} · failed {counts.get('FAILED', 0)}")
        if run is not None and run.error:
            line += f" · {run.error}"
        with self.lock:
            self._say(line)
            if self.bar is not None:
                self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _cell_label(executed: Path, failure: dict) -> str:
    """Name the failing cell as the user's notebook numbers it (papermill inserts a cell)."""
    index = failure["cell_index"]
    cell_id = None
    if executed.exists():
        import nbformat

        # papermill numbers cells before it adds its error banners; drop those first.
        cells = [c for c in nbformat.read(executed, as_version=4).cells
                 if "papermill-error-cell-tag" not in c.metadata.get("tags", [])]
        injected = sum(1 for c in cells[:index] if "injected-parameters" in c.metadata.get("tags", []))
        cell_id = cells[index].get("id") if index < len(cells) else None
        index -= injected
    first_line = (failure.get("source") or "").strip().splitlines()[:1]
    label = f"cell {index}"
    if cell_id:
        label += f" (id {cell_id})"
    if first_line:
        label += f" `{first_line[0][:60]}`"
    return label


def compare(batch_id: str):
    """Params and metrics of each execution of a batch, one row per notebook run (pandas).

    >>> jf.compare(batch.id).sort_values("accuracy", ascending=False)   # doctest: +SKIP
    """
    import pandas as pd

    from ..engine.runtime import get_engine

    engine = get_engine()
    engine.writer.flush()
    batch_run = engine.store.get_run(batch_id)
    if batch_run is None:
        raise FlowError(f"jf.compare: no run with id {batch_id!r}")
    if batch_run.kind != RunKind.BATCH.value:
        raise FlowError(f"jf.compare: run {batch_id} is a {batch_run.kind} run, not a batch")
    rows = []
    for run in reversed(engine.store.list_runs(limit=100_000, parent_id=batch_id)):
        row = {"run_id": run.id, "status": run.status}
        row.update({f"{k}": v for k, v in (run.params or {}).items()})
        row.update({f"{k}": v for k, v in (run.metrics or {}).items()})
        if run.ended_at and run.started_at:
            row["duration_s"] = (run.ended_at - run.started_at).total_seconds()
        rows.append(row)
    return pd.DataFrame(rows)
