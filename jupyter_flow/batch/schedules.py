"""Schedules: a notebook batch fired on a cron schedule (``jf.schedule``, ``jupyter flow schedule``).

A schedule is a row in the store; a :class:`~jupyter_flow.batch.scheduler.Scheduler` (in
the Jupyter server or ``jupyter flow scheduler``) fires it. Cron expressions have 5 fields
(minute hour day month weekday) or 6 with seconds first (``*/2 * * * * *``: every 2 s), and
are evaluated in the schedule's time zone; times are stored in UTC.

Parameters are checked when the schedule is made, with the rule every batch uses
(``validate_params``). Secret-named parameters are refused: a schedule's parameters are
stored so that it can fire later, and secrets are never stored in plain text — the
notebook reads them from its environment instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone as dt_timezone
from pathlib import Path
from typing import Any

from ..core.errors import FlowError
from ..core.secrets import REDACTED, looks_secret, redact

MISFIRE_POLICIES = ("skip", "once", "catchup")
#: Longest schedule name (the store's column).
MAX_NAME = 200


# ------------------------------------------------------------------------------ cron


def check_cron(cron: Any) -> str:
    """The cron expression, stripped; FlowError naming the field if croniter cannot use it.

    >>> check_cron(" 0 3 * * * ")
    '0 3 * * *'
    """
    from croniter import croniter

    if not isinstance(cron, str) or not cron.strip():
        raise FlowError(f"cron: give a cron expression such as '0 3 * * *' (daily at 03:00), got {cron!r}")
    cron = " ".join(cron.split())
    fields = cron.split(" ")
    if not cron.startswith("@") and len(fields) not in (5, 6):
        raise FlowError(
            f"cron: {cron!r} has {len(fields)} fields; use 5 (minute hour day month weekday) "
            "or 6 with seconds first (second minute hour day month weekday)"
        )
    try:
        croniter(cron, datetime(2000, 1, 1, tzinfo=dt_timezone.utc), second_at_beginning=True).get_next(datetime)
    except (ValueError, KeyError, TypeError) as err:   # croniter's errors are ValueErrors
        raise FlowError(f"cron: {cron!r} is not a valid cron expression ({err})") from None
    return cron


def check_timezone(name: Any):
    """The ``ZoneInfo`` of an IANA time zone name; FlowError naming the field otherwise.

    >>> check_timezone("Europe/Berlin").key
    'Europe/Berlin'
    """
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not isinstance(name, str) or not name:
        raise FlowError(f"timezone: give an IANA time zone name such as 'UTC' or 'Europe/Berlin', got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise FlowError(f"timezone: unknown time zone {name!r}; use an IANA name such as 'UTC' or "
                        "'Europe/Berlin'") from None


def fire_times(cron: str, zone: str, after: datetime) -> Iterator[datetime]:
    """The cron times strictly after ``after``, in order, as UTC datetimes.

    >>> t = fire_times("0 3 * * *", "Europe/Berlin", datetime(2030, 1, 1, tzinfo=dt_timezone.utc))
    >>> next(t).isoformat()
    '2030-01-01T02:00:00+00:00'
    """
    from croniter import croniter

    tz = check_timezone(zone)
    times = croniter(cron, after.astimezone(tz), second_at_beginning=True)
    while True:
        yield times.get_next(datetime).astimezone(dt_timezone.utc)


def previous_fire_time(cron: str, zone: str, before: datetime) -> datetime:
    """The last cron time strictly before ``before`` (UTC)."""
    from croniter import croniter

    times = croniter(cron, before.astimezone(check_timezone(zone)), second_at_beginning=True)
    return times.get_prev(datetime).astimezone(dt_timezone.utc)


def next_fire_time(cron: str, zone: str, after: datetime) -> datetime:
    """The first cron time strictly after ``after`` (UTC)."""
    return next(fire_times(cron, zone, after))


# ------------------------------------------------------------------------------ store


def _open(store, db_url):
    """The store to use and whether this call must close it."""
    if store is not None:
        return store, False
    from ..store import Store

    return Store(db_url), True


def _find(store, id_or_name: str) -> dict:
    from ..store import ScheduleNotFound

    found = store.get_schedule(str(id_or_name))
    if found is None:
        raise ScheduleNotFound(
            f"no schedule {id_or_name!r}; list them with jf.schedules() or `jupyter flow schedule list`"
        )
    return found


def _refuse_secrets(params: dict, grid: dict) -> None:
    """A schedule stores its parameters to fire later; a secret would be stored redacted
    (``***``) and every firing would run without it, so refuse it up front."""
    merged = {**grid, **params}
    names = sorted(name for name, value in merged.items()
                   if (looks_secret(str(name)) and redact(value, str(name)) == REDACTED)
                   or redact(value, str(name)) != value)
    if names:
        listed = ", ".join(repr(n) for n in names)
        raise FlowError(
            f"params: {listed} look{'s' if len(names) == 1 else ''} secret; a schedule stores its parameters and "
            "secrets are never stored in plain text, so it could not fire with the value. Leave it out of the "
            f"schedule and have the notebook read it from the environment (os.environ[{names[0].upper()!r}])"
        )


def schedule(
    notebook: str | Path,
    cron: str,
    *,
    params: dict[str, Any] | None = None,
    grid: dict[str, list] | str | Path | None = None,
    parallel: int = 1,
    cluster: str | None = None,
    name: str | None = None,
    misfire: str = "once",
    timezone: str = "UTC",
    created_by: str | None = None,
    db_url: str | None = None,
    store=None,
) -> dict:
    """Fire a batch of ``notebook`` on a cron schedule; returns the schedule record.

    Bad input raises FlowError naming the field (``cron: …``, ``timezone: …``,
    ``parameter 'lr' …``); a name already taken raises its subclass ``ScheduleExists``.

    The batch is what ``jf.batch(notebook, params, grid, parallel=…, cluster=…)`` runs,
    started by the scheduler of a Jupyter server with jupyter_flow or of
    ``jupyter flow scheduler``. ``misfire`` says what happens to firings missed while no
    scheduler ran: "skip" them, fire "once" for all of them (default), or "catchup" (one
    firing per missed time, at most 100).

    >>> jf.schedule("train.ipynb", "0 3 * * *", params={"epochs": 10}, timezone="Europe/Berlin")  # doctest: +SKIP
    {'id': '01J…', 'name': 'train', 'cron': '0 3 * * *', 'next_fire_at': datetime(…), …}
    """
    from ..core.provenance import flow_user
    from .declared import read_notebook, validate_params
    from .grid import load_grid

    cron = check_cron(cron)
    check_timezone(timezone)
    if misfire not in MISFIRE_POLICIES:
        raise FlowError(f"misfire: {misfire!r} is not a policy; use one of {', '.join(MISFIRE_POLICIES)}")
    if not isinstance(parallel, int) or isinstance(parallel, bool) or parallel < 1:
        raise FlowError(f"parallel: must be a whole number >= 1, got {parallel!r}")
    path, _ = read_notebook(notebook)
    name = path.stem if name is None else name
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME or not name.isprintable():
        raise FlowError(f"name: give a schedule name of 1 to {MAX_NAME} printable characters, got {name!r}")
    if cluster is not None:
        _check_cluster(cluster)
    if isinstance(grid, (str, Path)):
        grid = load_grid(grid)
    _refuse_secrets(dict(params or {}), dict(grid or {}))
    params, grid = validate_params(path, params, grid)

    from ..store import ScheduleExists

    store, close = _open(store, db_url)
    try:
        taken = store.get_schedule(name)
        if taken is not None and taken["name"] == name:
            raise ScheduleExists(
                f"name: a schedule named {name!r} already exists; pass another name, or remove that one "
                f"first (jf.remove_schedule({name!r}))"
            )
        try:
            return store.create_schedule({
                "name": name, "notebook": str(path), "cron": cron, "timezone": timezone,
                "params": params or None, "grid": grid or None, "parallel": parallel, "cluster": cluster,
                "misfire": misfire, "paused": False, "created_by": created_by or flow_user(),
                "next_fire_at": next_fire_time(cron, timezone, store.now()),
            })
        except ScheduleExists as err:   # made by someone else just now
            raise ScheduleExists(f"name: {err}") from None
    finally:
        if close:
            store.close()


def _check_cluster(cluster: Any) -> None:
    from ..deploy import cluster as clusters

    if not isinstance(cluster, str) or not cluster:
        raise FlowError(f"cluster: give a cluster profile name or a scheduler address, got {cluster!r}")
    if "://" not in cluster and cluster not in clusters.profiles():
        raise FlowError(
            f"cluster: unknown cluster profile {cluster!r}; known: {', '.join(sorted(clusters.profiles()))} "
            "(or give a scheduler address such as tcp://host:8786)"
        )


def schedules(*, db_url: str | None = None, store=None) -> list[dict]:
    """Every schedule, by name, with its next fire time and last result.

    >>> [(s["name"], s["next_fire_at"], (s["last_run"] or {}).get("status")) for s in jf.schedules()]  # doctest: +SKIP
    [('train', datetime(2030, 1, 1, 2, 0, tzinfo=timezone.utc), 'SUCCESS')]
    """
    store, close = _open(store, db_url)
    try:
        return store.list_schedules()
    finally:
        if close:
            store.close()


def pause_schedule(id_or_name: str, *, db_url: str | None = None, store=None) -> dict:
    """Stop firing a schedule until it is resumed (``ScheduleNotFound``, a FlowError, if
    there is none by that id or name).

    >>> jf.pause_schedule("train")["paused"]     # doctest: +SKIP
    True
    """
    store, close = _open(store, db_url)
    try:
        return store.update_schedule(_find(store, id_or_name)["id"], paused=True)
    finally:
        if close:
            store.close()


def resume_schedule(id_or_name: str, *, db_url: str | None = None, store=None) -> dict:
    """Fire a paused schedule again, from its next cron time after now (the times it was
    paused through are not misfires).

    >>> jf.resume_schedule("train")["next_fire_at"]     # doctest: +SKIP
    datetime.datetime(2030, 1, 2, 2, 0, tzinfo=datetime.timezone.utc)
    """
    store, close = _open(store, db_url)
    try:
        found = _find(store, id_or_name)
        return store.update_schedule(
            found["id"], paused=False, next_fire_at=next_fire_time(found["cron"], found["timezone"], store.now())
        )
    finally:
        if close:
            store.close()


def remove_schedule(id_or_name: str, *, db_url: str | None = None, store=None) -> dict:
    """Delete a schedule (the runs it fired stay); returns what was removed.

    >>> jf.remove_schedule("train")["name"]     # doctest: +SKIP
    'train'
    """
    store, close = _open(store, db_url)
    try:
        found = _find(store, id_or_name)
        store.delete_schedule(found["id"])
        return found
    finally:
        if close:
            store.close()
