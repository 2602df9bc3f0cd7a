"""The cache as a whole: listing entries and collecting old artifacts (never pinned ones)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta

from ..core.errors import FlowError
from ..core.status import RunStatus

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)\s*$", re.IGNORECASE)
_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
RECENT_RUNS = timedelta(days=7)  # graph snapshots of runs this young are always kept


def parse_duration(text: str) -> timedelta:
    """``"30m"``, ``"12h"``, ``"7d"``, ``"2w"`` → timedelta.

    >>> parse_duration("7d").days
    7
    """
    match = _DURATION.match(text)
    if not match:
        raise FlowError(f"--older-than: {text!r} is not a duration like 30m, 12h, 7d or 2w")
    return timedelta(seconds=float(match.group(1)) * _UNITS_S[match.group(2)])


def parse_size(text: str) -> int:
    """``"500MB"``, ``"10GiB"``, ``"1024"`` → bytes.

    >>> parse_size("2KiB")
    2048
    """
    match = _SIZE.match(text)
    if not match:
        raise FlowError(f"--max-size: {text!r} is not a size like 500MB or 10GB")
    unit = match.group(2).lower().rstrip("b")
    power = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}[unit.rstrip("i")]
    base = 1024 if unit.endswith("i") or not unit else 1000
    return int(float(match.group(1)) * base ** power)


@dataclass
class GcPlan:
    remove: list[dict] = field(default_factory=list)
    kept_pinned: int = 0
    kept_in_use: int = 0
    total_before: int = 0

    @property
    def freed(self) -> int:
        return sum(a["size"] or 0 for a in self.remove)


def plan_gc(store, artifacts, older_than: timedelta | None, max_size: int | None) -> GcPlan:
    """Which artifacts to remove: older than ``older_than``, then oldest first until the
    rest fits ``max_size``. Artifacts of pinned runs and of runs still going are kept, and
    so are the graph snapshots that ``jf.resume`` may need (runs unfinished, LOST, or
    created in the last 7 days)."""
    if older_than is None and max_size is None:
        raise FlowError("cache gc: say what to collect with --older-than and/or --max-size")
    protected = store.pinned_artifacts()
    live: set[str] = set()
    for run in store.list_runs(limit=10_000, status=[RunStatus.RUNNING.value, RunStatus.PENDING.value]):
        for task in store.get_tasks(run.id):
            live.update((task.outputs or {}).values())
    # Resume needs the graph snapshot of unfinished, LOST and recent runs.
    live |= store.resumable_snapshots(store.now() - RECENT_RUNS)
    rows = {a["hash"]: a for a in store.list_artifacts()}
    # Files not registered (e.g. a worker wrote them, its client died) count too, dated by
    # the file itself.
    for digest in artifacts.digests():
        if digest not in rows:
            rows[digest] = {"hash": digest, "size": artifacts.size(digest),
                            "created_at": artifacts.modified(digest)}
    plan = GcPlan(total_before=sum(a.get("size") or 0 for a in rows.values()))
    candidates = []
    for digest, row in sorted(rows.items(), key=lambda item: (item[1]["created_at"], item[0])):
        if digest in protected:
            plan.kept_pinned += 1
        elif digest in live:
            plan.kept_in_use += 1
        else:
            candidates.append(row)
    now = store.now()
    chosen: dict[str, dict] = {}
    if older_than is not None:
        for row in candidates:
            if row["created_at"] <= now - older_than:
                chosen[row["hash"]] = row
    if max_size is not None:
        remaining = plan.total_before - sum(r.get("size") or 0 for r in chosen.values())
        for row in candidates:
            if remaining <= max_size:
                break
            if row["hash"] not in chosen:
                chosen[row["hash"]] = row
                remaining -= row.get("size") or 0
    plan.remove = list(chosen.values())
    return plan


def run_gc(store, artifacts, plan: GcPlan, progress=None) -> int:
    """Apply a plan: cache entries using the artifacts go first, then the files."""
    digests = [row["hash"] for row in plan.remove]
    store.forget_artifacts(digests)
    for digest in digests:
        artifacts.delete(digest)
        if progress is not None:
            progress.update(1)
    artifacts.cleanup_temp()
    return len(digests)
