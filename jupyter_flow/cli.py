"""``jupyter flow …``: runs, provenance, lineage, the cache and the store from a shell.

Every listing takes ``--json``; errors are one line on stderr with a non-zero exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable

from .core.errors import FlowError
from .core.settings import heartbeat_timeout

if TYPE_CHECKING:
    from .store.records import RunRecord, TaskRecord


def _store():
    from .store import Store

    return Store()


def _artifacts(store=None):
    from .artifacts import artifact_store
    from .artifacts.keyring import load_keyring

    return artifact_store(None, keyring=load_keyring())


def _default(value: Any) -> Any:
    from .store.records import Record

    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=_default)
    sys.stdout.write("\n")


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, datetime) else "-"


def _duration(run: RunRecord) -> str:
    start, end = run.started_at or run.created_at, run.ended_at
    if not start or not end:
        return "-"
    return f"{(end - start).total_seconds():.2f}s"


def _bytes(size: int | None) -> str:
    """A size for people: ``_bytes(1536) == '1.5 KiB'``."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _output_label(name: str) -> str:
    from .core.outputs import DISPLAYS

    return "(displayed outputs)" if name == DISPLAYS else name


def _table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


# ------------------------------------------------------------------------ commands


def cmd_runs(args) -> int:
    store = _store()
    store.reconcile(heartbeat_timeout())
    owner = args.owner
    if args.mine or owner == "me":
        from .core.provenance import flow_user

        owner = flow_user()
    runs = store.list_runs(limit=args.limit, name=args.name, status=args.status, kind=args.kind,
                           parent_id=args.parent, owner=owner)
    if args.json:
        _print_json(runs)
        return 0
    if not runs:
        print("no runs")
        return 0
    rows = []
    for run in runs:
        counts = run.task_counts or {}
        ran = counts.get("SUCCESS", 0)
        rows.append([run.id, run.kind, run.status, run.name or "", run.owner or "", _when(run.created_at),
                     _duration(run), f"{ran}/{counts.get('CACHED', 0)}/{counts.get('FAILED', 0)}"])
    _table(rows, ["ID", "KIND", "STATUS", "NAME", "OWNER", "CREATED", "DURATION", "RAN/CACHED/FAILED"])
    return 0


def _show_children(store, run: RunRecord) -> None:
    """A batch's executions (params, status, metrics, executed notebook), as `compare`
    shows them; any other run's child runs (a notebook run's cell runs)."""
    children = list(reversed(store.list_runs(limit=100_000, parent_id=run.id)))
    if not children:
        return
    def counts(child: RunRecord) -> str:
        done = child.task_counts or {}
        return "/".join(str(done.get(status, 0)) for status in ("SUCCESS", "CACHED", "FAILED"))

    if run.kind == "batch":
        params = list(dict.fromkeys(k for child in children for k in (child.params or {})))
        metrics = list(dict.fromkeys(k for child in children for k in (child.metrics or {})))
        rows = [[child.id, child.status]
                + [_cell(child.params or {}, k) for k in params]
                + [_cell(child.metrics or {}, k) for k in metrics]
                + [_duration(child), counts(child), (child.outputs or {}).get("output_notebook", "")[:12]]
                for child in children]
        print(f"\n{len(children)} execution{'s' if len(children) != 1 else ''}")
        _table(rows, ["RUN", "STATUS", *params, *metrics, "DURATION", "RAN/CACHED/FAILED", "NOTEBOOK"])
        return
    rows = [[child.id, child.kind, child.status, child.name or "", _when(child.created_at),
             _duration(child), counts(child)] for child in children]
    print(f"\n{len(children)} child run{'s' if len(children) != 1 else ''}")
    _table(rows, ["RUN", "KIND", "STATUS", "NAME", "CREATED", "DURATION", "RAN/CACHED/FAILED"])


def _cell(values: dict, key: str) -> str:
    value = values.get(key)
    return "" if value is None else value if isinstance(value, str) else json.dumps(value, default=_default)


def cmd_show(args) -> int:
    store = _store()
    store.reconcile(heartbeat_timeout())
    run = store.get_run(args.run)
    if run is None:
        raise FlowError(f"no run with id {args.run!r}; list runs with `jupyter flow runs`")
    tasks = store.get_tasks(args.run)
    if args.json:
        _print_json({"run": run, "tasks": tasks})
        return 0
    print(f"run {run.id}  {run.kind}  {run.status}  {run.name or ''}")
    print(f"  created {_when(run.created_at)}  duration {_duration(run)}  cluster {run.cluster or '-'}"
          f"  user {run.user or '-'}@{run.host or '-'}")
    if run.parent_id:
        print(f"  parent {run.parent_id}")
    if run.resumed_from:
        print(f"  resumed from {run.resumed_from}")
    if run.params:
        print(f"  params {json.dumps(run.params, default=_default)}")
    if run.metrics:
        print(f"  metrics {json.dumps(run.metrics, default=_default)}")
    if run.error:
        print(f"  error {run.error}")
    _show_children(store, run)
    if not tasks and store.list_runs(limit=1, parent_id=run.id):
        return 0  # a batch or notebook run: its work is in the runs listed above
    rows = []
    # Where a task ran on a batch system: its worker pool and Slurm job (column shown when known).
    placed = any(_placement(task) for task in tasks)
    for task in tasks:
        name = task.name if task.index is None else f"{task.name}[{task.index}]"
        duration = f"{task.duration:.3f}s" if task.duration is not None else "-"
        rows.append([task.id, name, task.status, task.reason or "", duration,
                     str(task.attempts or 0), task.worker or ""] + ([_placement(task)] if placed else []))
    print()
    header = ["TASK", "OP", "STATUS", "REASON", "DURATION", "ATTEMPTS", "WORKER"]
    _table(rows, header + (["POOL/JOB"] if placed else []))
    for task in tasks:
        if task.status == "FAILED" and task.error:
            print(f"\n{task.name} ({task.id}) failed: {task.error}")
    return 0


def _placement(task: TaskRecord) -> str:
    """``cpu/4711``: the worker pool and Slurm job a task ran on, as far as known."""
    prov = task.provenance or {}
    pool, job = prov.get("pool"), prov.get("slurm_job_id")
    return "/".join(str(part) for part in (pool, job) if part)


def cmd_lineage(args) -> int:
    from .engine.lineage import lineage

    data = lineage(_store(), args.id)
    if args.json:
        _print_json(data)
        return 0
    if data["kind"] == "run":
        print(f"run {data['run']['id']} ({data['run']['status']})")
        names = {t["id"]: t["name"] for t in data["tasks"]}
        for edge in data["edges"]:
            print(f"  {names[edge['from']]} ({edge['from']}) -> {names[edge['to']]} ({edge['to']})")
        return 0
    lineages = [data] if data["kind"] == "task" else data["produced_by"]
    if data["kind"] == "artifact":
        print(f"artifact {args.id}")
    for item in lineages:
        task = item["task"]
        print(f"task {task['id']} {task['name']} {task['status']} (run {task['run_id']})")
        if item.get("produced_by"):
            print(f"  restored from task {item['produced_by']['id']}")
        for up in item["upstream"]:
            print(f"  <- {up['name']} {up['id']} {up['status']}")
        for down in item["downstream"]:
            print(f"  -> {down['name']} {down['id']} {down['status']}")
    return 0


def cmd_prov(args) -> int:
    from .engine.lineage import prov_document

    document = prov_document(_store(), args.run)
    with open(args.output, "w") as handle:
        json.dump(document, handle, indent=2, default=_default)
    print(f"wrote {args.output}")
    return 0


def cmd_cache(args) -> int:
    from .engine import cache

    store = _store()
    if args.cache_command == "ls":
        listed = store.list_cache(limit=args.limit, op_name=args.op)
        sizes = store.artifact_sizes(d for e in listed for d in e.outputs.values())
        # An artifact two outputs share (one object under two names) counts once.
        entries = [{**entry.to_dict(), "size": sum(sizes.get(d) or 0 for d in set(entry.outputs.values()))}
                   for entry in listed]
        if args.json:
            _print_json(entries)
            return 0
        if not entries:
            print("the cache is empty")
            return 0
        _table([[e["key"][:16], e.get("op_name") or "", _when(e["created_at"]), _bytes(e["size"]),
                 ", ".join(_output_label(n) for n in e["outputs"])]
                for e in entries], ["KEY", "OP", "CREATED", "SIZE", "OUTPUTS"])
        total = sum(size or 0 for size in sizes.values())
        print(f"\n{len(entries)} entries, {_bytes(total)} in {len(sizes)} artifacts"
              + (f" (the newest {args.limit}; --limit N for more)" if len(entries) == args.limit else ""))
        return 0
    older = cache.parse_duration(args.older_than) if args.older_than else None
    size = cache.parse_size(args.max_size) if args.max_size else None
    artifacts = _artifacts(store)
    plan = cache.plan_gc(store, artifacts, older, size)
    if args.dry_run:
        print(f"would remove {len(plan.remove)} artifacts ({plan.freed} bytes); "
              f"keeping {plan.kept_pinned} of pinned runs, {plan.kept_in_use} of running runs")
        return 0
    from tqdm.auto import tqdm

    with tqdm(total=len(plan.remove), desc="removing artifacts", unit="artifact",
              disable=len(plan.remove) < 50 or not sys.stderr.isatty()) as bar:
        removed = cache.run_gc(store, artifacts, plan, progress=bar)
    print(f"removed {removed} artifacts ({plan.freed} bytes); kept {plan.kept_pinned} of pinned runs")
    return 0


def cmd_pin(args) -> int:
    store = _store()
    if store.get_run(args.run) is None:
        raise FlowError(f"no run with id {args.run!r}")
    store.pin(args.run, not args.unpin)
    print(f"{'unpinned' if args.unpin else 'pinned'} {args.run}")
    return 0


def cmd_rm(args) -> int:
    from .store.errors import RunActive

    store = _store()
    for run_id in args.runs:
        if store.get_run(run_id) is None:
            raise FlowError(f"no run with id {run_id!r}")
        try:
            store.delete_run(run_id)
        except RunActive:
            raise FlowError(f"run {run_id} is still running; cancel it first") from None
        print(f"removed {run_id}")
    return 0


def cmd_clusters(args) -> int:
    from .deploy import cluster

    data = cluster.describe(store=_store())
    if args.json:
        _print_json(data)
        return 0
    rows = [[p["name"], f"{p['module']}.{p['class']}", "yes" if p.get("available") else "no",
             "default" if p["name"] == data.get("default") else ""] for p in data["profiles"]]
    _table(rows, ["PROFILE", "CLASS", "INSTALLED", ""])
    if data.get("in_use"):
        print()
        _table([[c["profile"], c["address"], c.get("dashboard") or "", _when(c.get("created_at"))]
                for c in data["in_use"]], ["IN USE", "ADDRESS", "DASHBOARD", "SINCE"])
    return 0


def cmd_batch(args) -> int:
    from .batch.grid import parse_value
    from .batch.runner import batch, compare

    params = {name: parse_value(value) for name, value in args.param}
    run = batch(args.notebook, params=params, grid=args.grid, parallel=args.parallel, cluster=args.cluster,
                name=args.name, progress=True if sys.stderr.isatty() else "lines")
    table = compare(run.id)
    if args.json:
        _print_json({"batch": run.id, "status": run.status, "error": run.error,
                     "executions": table.to_dict(orient="records")})
    else:
        print(f"batch {run.id}: {run.status}" + (f" ({run.error})" if run.error else ""))
        print(table.to_string(index=False))
    return 0 if run.status == "SUCCESS" else 1


def _in_zone(value: Any, zone: str) -> str:
    """A stored UTC time shown in a schedule's time zone: ``2030-01-01 03:00:00 CET``."""
    if not isinstance(value, datetime):
        return "-"
    from zoneinfo import ZoneInfo

    return value.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S %Z")


def _misfire_text(schedule: dict) -> str:
    note = schedule.get("last_misfire")
    if not note:
        return schedule["misfire"]
    at = note.get("at", "")[:19].replace("T", " ")
    return f"{schedule['misfire']} (at {at} UTC: missed {note['missed']}, fired {note['fired']})"


def cmd_schedule(args) -> int:
    from .batch import schedules

    action = args.schedule_command
    if action == "add":
        from .batch.grid import parse_value

        params = {name: parse_value(value) for name, value in args.param}
        record = schedules.schedule(args.notebook, args.cron, params=params or None, grid=args.grid,
                                    parallel=args.parallel, cluster=args.cluster, name=args.name,
                                    misfire=args.misfire, timezone=args.timezone)
        if args.json:
            _print_json(record)
        else:
            print(f"added schedule {record['name']} ({record['id']}): {record['cron']} ({record['timezone']}), "
                  f"next fire at {_in_zone(record['next_fire_at'], record['timezone'])}")
        return 0
    if action == "list":
        listed = schedules.schedules()
        if args.json:
            _print_json(listed)
            return 0
        if not listed:
            print("no schedules; add one with `jupyter flow schedule add NOTEBOOK --cron EXPR`")
            return 0
        rows = []
        for s in listed:
            last = s.get("last_run")
            result = f"{last['status']} {last['id']}" if last else "-"
            rows.append([s["name"], s["cron"], "-" if s["paused"] else _in_zone(s["next_fire_at"], s["timezone"]),
                         result, "yes" if s["paused"] else "no", _misfire_text(s)])
        _table(rows, ["NAME", "CRON", "NEXT FIRE", "LAST RESULT", "PAUSED", "MISFIRE"])
        return 0
    change = {"pause": schedules.pause_schedule, "resume": schedules.resume_schedule,
              "rm": schedules.remove_schedule}[action]
    record = change(args.schedule)
    if args.json:
        _print_json(record)
    elif action == "resume":
        print(f"resumed {record['name']}: next fire at {_in_zone(record['next_fire_at'], record['timezone'])}")
    else:
        print(f"{'paused' if action == 'pause' else 'removed'} {record['name']}")
    return 0


def cmd_scheduler(args) -> int:
    import logging
    import signal
    import threading

    from .batch.scheduler import Scheduler
    from .engine import runtime

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stop = threading.Event()

    def request_stop(signum, frame) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    scheduler = Scheduler(None, interval=args.interval, grace=args.grace, lease_ttl=args.lease_ttl)
    print(f"scheduler {scheduler.holder} firing the schedules of {scheduler.store.location}; "
          "stop it with Ctrl-C or SIGTERM", flush=True)
    try:
        scheduler.run_forever(stop)
    finally:
        # The lease goes first, so another scheduler can take over while batches wind down.
        left = scheduler.close(cancel_timeout=args.cancel_timeout)
        runtime.shutdown()
    if left:
        print(f"stopped; batch run(s) {', '.join(left)} did not end in time and were marked LOST", flush=True)
    else:
        print("stopped", flush=True)
    return 0


def cmd_compare(args) -> int:
    from .batch.runner import compare

    table = compare(args.batch)
    if args.sort:
        if args.sort not in table.columns:
            raise FlowError(f"no column {args.sort!r} to sort by; columns: {list(table.columns)}")
        table = table.sort_values(args.sort, ascending=not args.desc)
    if args.json:
        _print_json(table.to_dict(orient="records"))
    else:
        print(table.to_string(index=False) if len(table) else "no executions")
    return 0


def cmd_export(args) -> int:
    from .kernel.script import export

    count = export(args.notebook, args.output)
    print(f"wrote {args.output} ({count} cells); run it with: python {args.output}")
    return 0


def cmd_trust(args) -> int:
    from .artifacts import trust

    ring = trust.keyring()
    if args.trust_command == "key":
        print(f"user {ring.user}, key {ring.key_id}, public key {ring.public_b64}")
        print(f"others trust it with: jupyter flow trust add {ring.user} --key {ring.public_b64}")
        return 0
    if args.trust_command == "list":
        rows = trust.listing(ring)
        if args.json:
            _print_json(rows)
            return 0
        print(f"you: {ring.user}, key {ring.key_id}")
        for row in rows:
            print(f"{row['user']:<20} key {row['key_id']}  via {row['via']:<16} added {row['added']}")
        if not rows:
            print("you trust no one else: only artifacts you signed are unpickled in your processes")
        return 0
    if args.trust_command == "add":
        for line in trust.add(ring, _store(), args.name, group=args.group, public_key=args.key):
            print(line)
        return 0
    for line in trust.remove(ring, args.name, group=args.group):
        print(line)
    return 0


def cmd_db(args) -> int:
    from .store import Store

    store = Store()  # opening migrates under a lock; upgrade() reports and repeats it explicitly
    store.upgrade()
    print(f"the store at {store.url} is up to date")
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jupyter flow", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    p = add("runs", cmd_runs, "list runs, newest first")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--status")
    p.add_argument("--kind")
    p.add_argument("--name", help="substring of the run name")
    p.add_argument("--parent", help="only children of this run")
    p.add_argument("--owner", help="only runs of this Jupyter user ('me': yours)")
    p.add_argument("--mine", action="store_true", help="only your runs (--owner me)")
    p.add_argument("--json", action="store_true")

    p = add("show", cmd_show, "a run and its tasks")
    p.add_argument("run")
    p.add_argument("--json", action="store_true")

    p = add("lineage", cmd_lineage, "lineage of a run, a task or an artifact hash")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")

    p = add("prov", cmd_prov, "export a run as W3C PROV-JSON")
    p.add_argument("run")
    p.add_argument("-o", "--output", required=True)

    p = add("cache", cmd_cache, "list or collect the cache")
    cache_sub = p.add_subparsers(dest="cache_command", required=True, metavar="ls|gc")
    ls = cache_sub.add_parser("ls", help="list cache entries")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--op", help="only entries of this op name")
    ls.add_argument("--json", action="store_true")
    gc = cache_sub.add_parser("gc", help="remove old artifacts (never those of pinned runs)")
    gc.add_argument("--older-than", help="e.g. 30m, 12h, 7d")
    gc.add_argument("--max-size", help="e.g. 500MB, 10GiB")
    gc.add_argument("--dry-run", action="store_true")

    p = add("pin", cmd_pin, "keep a run's artifacts through cache gc")
    p.add_argument("run")
    p.add_argument("--unpin", action="store_true")

    p = add("rm", cmd_rm, "delete runs and their tasks")
    p.add_argument("runs", nargs="+")

    p = add("clusters", cmd_clusters, "cluster profiles and clusters in use")
    p.add_argument("--json", action="store_true")

    p = add("batch", cmd_batch, "run a notebook once per parameter point with papermill")
    p.add_argument("notebook")
    p.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    p.add_argument("--grid", help="YAML file: parameter name -> list of values (cartesian product)")
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--cluster", help="profile or scheduler address for the notebooks' %%%%flow ops")
    p.add_argument("--name")
    p.add_argument("--json", action="store_true")

    p = add("schedule", cmd_schedule, "add, list, pause, resume or remove notebook batch schedules")
    schedule_sub = p.add_subparsers(dest="schedule_command", required=True, metavar="add|list|pause|resume|rm")
    sp = schedule_sub.add_parser("add", help="fire a batch of a notebook on a cron schedule")
    sp.add_argument("notebook")
    sp.add_argument("--cron", required=True,
                    help="5 fields (minute hour day month weekday), or 6 with seconds first; e.g. '0 3 * * *'")
    sp.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    sp.add_argument("--grid", help="YAML file: parameter name -> list of values (cartesian product)")
    sp.add_argument("--parallel", type=int, default=1)
    sp.add_argument("--cluster", help="profile or scheduler address for the notebooks' %%%%flow ops")
    sp.add_argument("--name", help="unique name (default: the notebook's name)")
    sp.add_argument("--misfire", choices=["skip", "once", "catchup"], default="once",
                    help="what to do with firings missed while no scheduler ran (default: once)")
    sp.add_argument("--timezone", default="UTC", help="IANA time zone the cron is read in (default: UTC)")
    sp.add_argument("--json", action="store_true")
    sp = schedule_sub.add_parser("list", help="schedules with their next fire time and last result")
    sp.add_argument("--json", action="store_true")
    for action, text in (("pause", "stop firing a schedule"), ("resume", "fire a paused schedule again"),
                         ("rm", "remove a schedule (its runs stay)")):
        sp = schedule_sub.add_parser(action, help=text)
        sp.add_argument("schedule", metavar="NAME|ID")
        sp.add_argument("--json", action="store_true")

    p = add("scheduler", cmd_scheduler, "fire due schedules until stopped (one process per store fires at a time)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between two looks at the schedules (1)")
    p.add_argument("--grace", type=float, default=60.0,
                   help="seconds a firing may be late before it counts as missed (60)")
    p.add_argument("--lease-ttl", type=float, default=15.0,
                   help="seconds another scheduler waits after this one dies before taking over (15)")
    p.add_argument("--cancel-timeout", type=float, default=20.0,
                   help="on stop, seconds to wait for the batches it fired to cancel (20)")

    p = add("compare", cmd_compare, "params and metrics of each execution of a batch")
    p.add_argument("batch")
    p.add_argument("--sort", help="column to sort by, e.g. a metric")
    p.add_argument("--desc", action="store_true")
    p.add_argument("--json", action="store_true")

    p = add("export", cmd_export, "write a notebook as a plain script that hits the same cache")
    p.add_argument("notebook")
    p.add_argument("-o", "--output", required=True)

    p = add("trust", cmd_trust, "whose pickled results may be loaded (run code) in your processes")
    trust_sub = p.add_subparsers(dest="trust_command", required=True, metavar="list|add|rm|key")
    tp = trust_sub.add_parser("list", help="the keys you trust")
    tp.add_argument("--json", action="store_true")
    trust_sub.add_parser("key", help="your own key, to give to teammates")
    for action, text in (("add", "trust a user's (or a group's members') published keys"),
                         ("rm", "stop trusting a user (or the keys added through a group)")):
        tp = trust_sub.add_parser(action, help=text, description=text)
        tp.add_argument("name", metavar="USER|GROUP")
        tp.add_argument("--group", action="store_true", help="NAME is a group: its members' keys")
        if action == "add":
            tp.add_argument("--key", help="the user's public key (from `jupyter flow trust key` on their side) "
                                          "instead of the one published in the store")

    p = add("db", cmd_db, "store maintenance")
    p.add_argument("action", choices=["upgrade"])
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except FlowError as err:
        print(f"jupyter flow {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"jupyter flow {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
