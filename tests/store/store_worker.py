"""A separate writer process for the concurrency tests (run as a script, not collected).

    python store_worker.py write URL RUNS TASKS   # waits for a line on stdin, then writes
    python store_worker.py hold URL               # owns a RUNNING run and heartbeats forever
    python store_worker.py key URL KEYS           # waits for a line, loads KEYS, publishes, prints the key id
    python store_worker.py lease URL HOLDER       # waits for a line, prints acquire_lease's answer
    python store_worker.py advance URL HOLDER SCHEDULE ISO   # … advance_schedule's answer
"""

from __future__ import annotations

import sys
import time

from jupyter_flow.core.ids import new_id
from jupyter_flow.store import Store


def write(url: str, n_runs: int, n_tasks: int) -> None:
    print("ready", flush=True)
    sys.stdin.readline()   # start together with the other writers
    store = Store(url)     # every writer races to migrate a fresh store
    owner = store.register_owner()
    for _ in range(n_runs):
        run_id = new_id()
        tasks = [{"id": new_id(), "node": f"n{i}", "name": "op"} for i in range(n_tasks)]
        store.create_run({"id": run_id, "kind": "api", "status": "RUNNING", "owner_id": owner}, tasks)
        store.update_tasks(owner, [{"id": t["id"], "status": "RUNNING"} for t in tasks])
        store.heartbeat(owner)
        skipped = store.update_tasks(
            owner, [{"id": t["id"], "status": "SUCCESS", "outputs": {"out": "0" * 64}} for t in tasks]
        )
        assert skipped == [], skipped
        store.put_cache([{"key": new_id(), "outputs": {"out": "0" * 64}, "op_name": "op"}])
        store.finish_run(run_id, owner, "SUCCESS")
    store.release_owner(owner)
    store.close()
    print("done", flush=True)


def hold(url: str) -> None:
    store = Store(url)
    owner = store.register_owner(kind="kernel")
    run_id = new_id()
    tasks = [{"id": new_id(), "node": f"n{i}", "name": "op"} for i in range(3)]
    store.create_run({"id": run_id, "kind": "cell", "status": "RUNNING", "owner_id": owner}, tasks)
    store.update_tasks(owner, [{"id": tasks[0]["id"], "status": "SUCCESS"},
                               {"id": tasks[1]["id"], "status": "RUNNING"}])
    print("ready", owner, run_id, flush=True)
    while True:   # a live kernel: heartbeat until killed
        store.heartbeat(owner)
        time.sleep(0.05)


def key(url: str, keys: str) -> None:
    from jupyter_flow.artifacts.keyring import load_keyring

    print("ready", flush=True)
    sys.stdin.readline()   # all make the keys and open the fresh store at once
    ring = load_keyring(keys)
    store = Store(url)
    store.publish_signer(ring.user, ring.key_id, ring.public_b64)
    print(ring.key_id, flush=True)
    store.close()


def lease(url: str, holder: str) -> None:
    store = Store(url)
    store.now()            # connected before the go, so all of them ask at once
    print("ready", flush=True)
    sys.stdin.readline()
    print(store.acquire_lease("scheduler", holder, 30), flush=True)
    store.close()


def advance(url: str, holder: str, schedule_id: str, expected: str) -> None:
    from datetime import datetime, timedelta

    store = Store(url)
    store.now()
    print("ready", flush=True)
    sys.stdin.readline()
    due = datetime.fromisoformat(expected)
    print(store.advance_schedule(schedule_id, due, due + timedelta(days=1), fired_at=due), flush=True)
    store.close()


if __name__ == "__main__":
    if sys.argv[1] == "lease":
        lease(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "advance":
        advance(*sys.argv[2:6])
    elif sys.argv[1] == "write":
        write(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif sys.argv[1] == "key":
        key(sys.argv[2], sys.argv[3])
    else:
        hold(sys.argv[2])
