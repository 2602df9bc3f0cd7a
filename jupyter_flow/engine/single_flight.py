"""Single flight: a key that another live run is computing is not computed again.

A run claims the keys it is about to compute (in the store, so that runs of other
processes see them). A task whose key another run holds waits (WAITING) and is restored
from the cache entry that run records; a key computed meanwhile is restored at once; a
second task of this run with the same key waits for the first. Waiters poll the claims:
a claim whose owner died or gave up is taken over.
"""

from __future__ import annotations

import time
from typing import Callable

from ..core.errors import FencedWrite
from ..core.settings import heartbeat_timeout
from ..core.status import TaskStatus
from .state import TaskState, restore

MEANWHILE = "computed meanwhile by another run"


def settle(states: list[TaskState], misses: set[int], is_forced: Callable[[TaskState], bool],
           claim: Callable[[dict], dict], refusal: Callable[[dict], str | None],
           by_id: dict | None = None) -> dict[str, list[TaskState]]:
    """Claim the keys of the tasks in ``misses`` through ``claim`` (key -> task id, answered
    per key as ``store.claim_keys`` does) and apply the answers: returns key -> the tasks
    waiting for it; ``misses`` loses the tasks restored here."""
    wanted: dict[str, str] = {}
    first_of: dict[str, TaskState] = {}
    for s in states:
        if s.position in misses and s.cacheable and not is_forced(s) and s.key not in wanted:
            wanted[s.key] = s.id
            first_of[s.key] = s
    if not wanted:
        return {}
    outcome = claim(wanted)
    waits: dict[str, list[TaskState]] = {}
    for s in states:
        if s.position not in misses or s.key not in outcome or is_forced(s) or not s.cacheable:
            continue
        state = outcome[s.key]
        why = refusal(state) if state["state"] == "cached" else None
        if why is not None:
            s.reason = why  # computed here; the entry stays theirs
        elif state["state"] == "cached":
            restore(s, state, note=MEANWHILE, by_id=by_id)
            misses.discard(s.position)
        elif state["state"] == "held":
            s.status = TaskStatus.WAITING
            s.waiting_for = state["run_id"]
            s.reason = (f"waiting for run {state['run_id']}, which is computing the same value "
                        "(it is restored from the cache when recorded)")
            waits.setdefault(s.key, []).append(s)
        elif first_of[s.key] is not s:
            s.status = TaskStatus.WAITING
            s.reason = f"waiting for task {first_of[s.key].id} of this run, which computes the same value"
            waits.setdefault(s.key, []).append(s)
    return waits


class SingleFlight:
    """The claims of one run in the store.

    ``owner`` gives this process's current owner id (it changes when the process was
    fenced and registered again); ``on_fenced`` is called when the store refuses a claim
    because the owner was declared dead.
    """

    def __init__(self, store, run_id: str, owner: Callable[[], str], on_fenced: Callable[[], None]):
        self.store = store
        self.run_id = run_id
        self.owner = owner
        self.on_fenced = on_fenced
        self._last_reconcile = 0.0

    def claim(self, wanted: dict[str, str]) -> dict[str, dict]:
        """Claim ``wanted`` (key -> task id); once more after re-registering if fenced."""
        try:
            return self.store.claim_keys(self.owner(), self.run_id, wanted)
        except FencedWrite:
            self.on_fenced()
            return self.store.claim_keys(self.owner(), self.run_id, wanted)

    def poll(self, waits: dict[str, list[TaskState]]) -> dict[str, dict] | None:
        """Where the keys waited for stand: per key ``cached``, ``held`` or ``mine`` (taken
        over: its claimer ended without a value, or died). None when this process was fenced
        meanwhile (the run is LOST in the store and ends as it is)."""
        now = time.monotonic()
        timeout = heartbeat_timeout()
        if now - self._last_reconcile > max(1.0, timeout / 6):
            # A claimer that stopped heartbeating is declared dead here, which frees its keys.
            self._last_reconcile = now
            self.store.reconcile(timeout)
        status = self.store.claim_status(list(waits))
        free = {key: tasks[0].id for key, tasks in waits.items()
                if status[key]["state"] == "free" or (status[key]["state"] == "held" and status[key]["fenced"])}
        if free:
            try:
                status.update(self.store.claim_keys(self.owner(), self.run_id, free))
            except FencedWrite:
                self.on_fenced()
                return None
        return status
