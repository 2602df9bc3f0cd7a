"""Run and task statuses, run kinds and failure kinds, spelled exactly as DESIGN.md §3-4 spell them."""

from __future__ import annotations

from enum import Enum


class RunStatus(str, Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    LOST = "LOST"

    def __str__(self) -> str:
        return self.value

    @property
    def terminal(self) -> bool:
        return self in RUN_TERMINAL


class TaskStatus(str, Enum):
    PENDING = "PENDING"
    WAITING = "WAITING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    CACHED = "CACHED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    SKIPPED = "SKIPPED"
    LOST = "LOST"

    def __str__(self) -> str:
        return self.value

    @property
    def terminal(self) -> bool:
        return self in TASK_TERMINAL


class RunKind(str, Enum):
    API = "api"
    CELL = "cell"
    GRAPH = "graph"
    NOTEBOOK = "notebook"
    BATCH = "batch"
    RESUME = "resume"

    def __str__(self) -> str:
        return self.value


class FailureKind(str, Enum):
    """Why a task did not succeed, as the engine saw it (``tasks.failure_kind``)."""

    EXCEPTION = "exception"  # the op raised
    TIMEOUT = "timeout"  # the op ran past its timeout (OpTimeout)
    WORKER = "worker"  # its worker died on every attempt (WorkerLost)
    CANCELED = "canceled"  # the run was canceled before it finished
    UPSTREAM = "upstream"  # skipped: an input failed or could not be prepared

    def __str__(self) -> str:
        return self.value


RUN_TERMINAL = frozenset(
    {RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.CANCELED, RunStatus.LOST}
)
TASK_TERMINAL = frozenset(
    {
        TaskStatus.SUCCESS,
        TaskStatus.CACHED,
        TaskStatus.FAILED,
        TaskStatus.CANCELED,
        TaskStatus.SKIPPED,
        TaskStatus.LOST,
    }
)

# Order in which a task's status may only move forward: late events never move it back.
TASK_PROGRESS = {
    TaskStatus.PENDING: 0,
    TaskStatus.WAITING: 1,
    TaskStatus.RUNNING: 2,
}
