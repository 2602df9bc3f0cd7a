"""REST API latency with a large store: ``GET runs?limit=50`` and ``GET runs/{id}/tasks``.

    python bench/bench_server.py            # 100,000 runs / 1,000,000 tasks (DESIGN.md §6)
    python bench/bench_server.py --quick    # 10,000 runs / 100,000 tasks

Fills a fresh SQLite store with executemany (about a minute at full size), starts a real
Jupyter server with the extension in a subprocess, and prints p50/p95 of each request
measured by a keep-alive HTTP client. Target: p95 under 50 ms.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import requests
from sqlalchemy import insert, update

from jupyter_flow.core.ids import new_id
from jupyter_flow.store import Store
from jupyter_flow.store.models import Counter, Run, Task

RUN_STATUSES = ["SUCCESS"] * 8 + ["FAILED", "CANCELED"]
TASK_STATUSES = ["SUCCESS"] * 6 + ["CACHED"] * 3 + ["FAILED"]


def fill(url: str, runs: int, tasks_per_run: int, chunk: int = 2000) -> list[str]:
    """Bulk-insert finished runs and their tasks; returns the run ids."""
    store = Store(url)
    owner = store.register_owner(user="bench")
    start = datetime.now(timezone.utc) - timedelta(days=30)
    run_ids: list[str] = []
    seq = 0
    with store.engine.begin() as conn:
        for first in range(0, runs, chunk):
            run_rows, task_rows = [], []
            for n in range(first, min(first + chunk, runs)):
                run_id = new_id()
                run_ids.append(run_id)
                created = start + timedelta(seconds=n * 20)
                seq += 1
                run_rows.append({
                    "id": run_id, "name": f"experiment-{n % 500}", "kind": "api",
                    "status": random.choice(RUN_STATUSES), "owner_id": owner, "user": "bench",
                    "host": "bench", "params": {"lr": 0.1}, "metrics": {}, "graph": {"targets": [0]},
                    "created_at": created, "started_at": created,
                    "ended_at": created + timedelta(seconds=5), "seq": seq,
                })
                for t in range(tasks_per_run):
                    task_rows.append({
                        "id": new_id(), "run_id": run_id, "node": str(t), "name": f"op{t}",
                        "index": None, "status": random.choice(TASK_STATUSES), "cached": False,
                        "key": secrets.token_hex(32), "attempts": 1,
                        "upstream": [str(t - 1)] if t else [], "outputs": {"out": secrets.token_hex(32)},
                        "created_at": created, "duration": 0.01, "seq": seq,
                    })
            conn.execute(insert(Run.__table__), run_rows)
            conn.execute(insert(Task.__table__), task_rows)
        conn.execute(update(Counter.__table__).where(Counter.__table__.c.name == "seq").values(value=seq))
    store.close()
    return run_ids


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed(session: requests.Session, url: str, n: int) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        response = session.get(url() if callable(url) else url, timeout=30)
        times.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return times


def report(label: str, times: list[float]) -> None:
    times = sorted(times)
    p50 = statistics.median(times)
    p95 = times[int(len(times) * 0.95) - 1]
    verdict = "ok" if p95 < 50 else "OVER TARGET"
    print(f"{label:<34} p50 {p50:7.2f} ms   p95 {p95:7.2f} ms   (target p95 < 50 ms: {verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10x smaller store")
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    runs = 10_000 if args.quick else 100_000
    with tempfile.TemporaryDirectory() as home:
        url = f"sqlite:///{Path(home) / 'flow.db'}"
        started = time.perf_counter()
        run_ids = fill(url, runs, 10)
        print(f"filled {runs:,} runs / {runs * 10:,} tasks in {time.perf_counter() - started:.1f} s")
        port, token = free_port(), secrets.token_hex(16)
        log = open(Path(home) / "server.log", "w")
        server = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root", f"--port={port}",
             "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
             f"--ServerApp.root_dir={home}", f"--FlowApp.db_url={url}",
             f"--FlowApp.artifacts_url={Path(home) / 'artifacts'}", "--ServerApp.log_level=WARN"],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "JUPYTER_FLOW_HOME": home},
        )
        try:
            base = f"http://127.0.0.1:{port}/jupyter-flow/api"
            session = requests.Session()
            session.headers["Authorization"] = f"token {token}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if session.get(f"{base}/health", timeout=5).ok:
                        break
                except requests.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not start; see its log")
                time.sleep(0.2)
            timed(session, f"{base}/runs?limit=50", 20)  # warm up caches and the pool
            report("GET runs?limit=50", timed(session, f"{base}/runs?limit=50", args.requests))
            page = session.get(f"{base}/runs?limit=50").json()
            report("GET runs?limit=50&before=<page 2>",
                   timed(session, f"{base}/runs?limit=50&before={page['next_before']}", args.requests))
            report("GET runs?status=FAILED&limit=50",
                   timed(session, f"{base}/runs?status=FAILED&limit=50", args.requests))
            report("GET runs/{id}/tasks", timed(
                session, lambda: f"{base}/runs/{random.choice(run_ids)}/tasks", args.requests))
            report("GET runs/{id}", timed(
                session, lambda: f"{base}/runs/{random.choice(run_ids)}", args.requests))
        finally:
            server.terminate()
            server.wait(30)
            log.close()


if __name__ == "__main__":
    main()
