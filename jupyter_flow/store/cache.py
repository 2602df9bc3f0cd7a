"""The cache index (key -> outputs) and the claims that make concurrent runs compute a key once."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from sqlalchemy import Connection, bindparam, delete, func, select, update

from jupyter_flow.core.errors import StoreError
from jupyter_flow.store.models import UTCDateTime
from jupyter_flow.store.records import UNSET, CacheEntry
from jupyter_flow.store.transactions import (CACHE, CLAIMS, OWNERS, RUNS, TASKS, StoreTransactions, _check_fields,
                                             _chunks)

_CACHE_FIELDS = frozenset(CACHE.c.keys()) - {"created_at"}
_CACHE_ENTRY_FIELDS = _CACHE_FIELDS | {"replace"}
_HISTORY_LOOKED_AT = 20  # newest cache entries of an op name searched for the same op's own


def _cached_states(conn: Connection, keys: list[str]) -> dict[str, dict]:
    """``{"state": "cached", outputs, task_id, metrics, signer}`` for those of ``keys`` with an entry."""
    return {
        key: {"state": "cached", "outputs": outputs, "task_id": task_id, "metrics": metrics, "signer": signer}
        for key, outputs, task_id, metrics, signer in conn.execute(
            select(CACHE.c.key, CACHE.c.outputs, CACHE.c.task_id, CACHE.c.metrics, CACHE.c.signer)
            .where(CACHE.c.key.in_(keys))
        )
    }


class Cache(StoreTransactions):
    """Cache entries, single-flight claims, the components history that explains reruns."""

    def lookup_cache(self, keys: Iterable[str], *, components: bool = True) -> dict[str, CacheEntry]:
        """Cache entries for those of ``keys`` that have one, by key: outputs, components,
        task_id, op_name, signer (the key that signed its pickled outputs, or None), owner, and
        metrics (None unless the op recorded some); ``created_at`` is not read. One query
        per 500 keys. ``components=False`` skips the largest column (left UNSET) when only
        the outputs are wanted (the engine's hot path)."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, CacheEntry] = {}
        columns = (CACHE.c.key, CACHE.c.outputs, CACHE.c.task_id, CACHE.c.op_name, CACHE.c.metrics, CACHE.c.signer,
                   CACHE.c.owner)
        if components:
            columns += (CACHE.c.components,)
        with self._read() as conn:
            for chunk in _chunks(keys):
                if self.dialect == "sqlite" and not components:
                    # The engine's hot path: one plain query, no per-row type processing.
                    marks = ", ".join("?" for _ in chunk)
                    rows = conn.exec_driver_sql(
                        f'SELECT "key", outputs, task_id, op_name, metrics, signer, owner FROM "{CACHE.name}" '
                        f'WHERE "key" IN ({marks})',
                        tuple(chunk),
                    ).fetchall()
                    loads = json.loads
                    for key, outputs, task_id, op_name, metrics, signer, owner in rows:
                        found[key] = CacheEntry(key, loads(outputs), UNSET, op_name, task_id, UNSET,
                                                None if metrics is None else loads(metrics), signer, owner)
                    continue
                for row in conn.execute(select(*columns).where(CACHE.c.key.in_(chunk))):
                    found[row.key] = CacheEntry(**row._asdict())
        return found

    def _fill_owners(self, conn, rows: list[dict]) -> None:
        """Each entry's ``owner``: the owner of the run its producing task belongs to."""
        task_ids = sorted({row["task_id"] for row in rows if row.get("task_id")})
        owners: dict[str, str | None] = {}
        for chunk in _chunks(task_ids):
            query = (select(TASKS.c.id, RUNS.c.owner).join(RUNS, RUNS.c.id == TASKS.c.run_id)
                     .where(TASKS.c.id.in_(chunk)))
            for task_id, owner in conn.execute(query):
                owners[task_id] = owner
        for row in rows:
            row["owner"] = owners.get(row.get("task_id"))

    def put_cache(self, entries: list[CacheEntry | dict], owner_id: str | None = None) -> list[str]:
        """Record cache entries ({key, outputs, components, op_name, task_id, metrics, signer}).

        A key keeps the first value recorded for it: an entry for a key that already has
        one is ignored (and its key returned), so concurrent computations can never make
        one key map to two values. ``"replace": True`` (a forced rerun) overwrites. Claims
        on the keys are released in the same transaction. With ``owner_id``, a fenced
        owner (declared dead) gets FencedWrite and nothing is written.
        """
        rows: dict[str, dict] = {}
        replace: set[str] = set()
        for entry in entries:
            _check_fields("put_cache", entry, _CACHE_ENTRY_FIELDS)
            if "key" not in entry or "outputs" not in entry:
                raise StoreError("put_cache: every entry needs 'key' and 'outputs'")
            entry = dict(entry)
            if entry.pop("replace", False):
                replace.add(entry["key"])
            rows[entry["key"]] = {**dict.fromkeys(_CACHE_FIELDS), **entry}
        if not rows:
            return []
        kept: list[str] = []
        with self._write() as conn:
            now = self._now(conn)
            self._lock_owner(conn, owner_id)
            keys = sorted(rows)
            existing: set[str] = set()
            for chunk in _chunks(keys):
                existing.update(conn.execute(select(CACHE.c.key).where(CACHE.c.key.in_(chunk))).scalars())
            self._fill_owners(conn, [rows[k] for k in keys if not rows[k].get("owner")])
            fresh = [{**rows[k], "created_at": now} for k in keys if k not in existing]
            if fresh:
                # Another writer may have inserted a key since the check (PostgreSQL):
                # its value stays.
                conn.execute(self._insert(CACHE).on_conflict_do_nothing(index_elements=[CACHE.c.key]), fresh)
            overwrite = [{**rows[k], "created_at": now} for k in keys if k in existing and k in replace]
            if overwrite:
                statement = self._insert(CACHE)
                statement = statement.on_conflict_do_update(
                    index_elements=[CACHE.c.key],
                    set_={
                        name: statement.excluded[name]
                        for name in ("outputs", "components", "op_name", "task_id", "metrics", "signer",
                                     "created_at")
                    },
                )
                conn.execute(statement, overwrite)
            kept = [k for k in keys if k in existing and k not in replace]
            for chunk in _chunks(keys):
                conn.execute(delete(CLAIMS).where(CLAIMS.c.key.in_(chunk)))
        return kept


    def claim_keys(self, owner_id: str, run_id: str, wanted: dict[str, str | None]) -> dict[str, dict]:
        """Claim cache keys for ``run_id`` so that concurrent runs compute each key once.

        ``wanted`` maps each key to the task id that would compute it. Returns, per key:
        ``{"state": "mine"}`` (this run computes it), ``{"state": "cached", "outputs",
        "task_id", "metrics"}`` (an entry appeared since the caller looked), or
        ``{"state": "held", "run_id", "owner_id"}`` (a live owner's run computes it now:
        wait for its cache entry). A claim whose owner was fenced (declared dead) is
        taken over. FencedWrite if ``owner_id`` itself was fenced.
        """
        keys = sorted(wanted)
        result: dict[str, dict] = {}
        if not keys:
            return result
        with self._write() as conn:
            now = self._now(conn)
            self._lock_owner(conn, owner_id)
            for chunk in _chunks(keys):
                result.update(_cached_states(conn, chunk))
            open_keys = [k for k in keys if k not in result]
            if open_keys:
                conn.execute(
                    self._insert(CLAIMS).on_conflict_do_nothing(index_elements=[CLAIMS.c.key]),
                    [{"key": k, "owner_id": owner_id, "run_id": run_id, "task_id": wanted[k],
                      "claimed_at": now} for k in open_keys],
                )
            takeover = []
            for chunk in _chunks(open_keys):
                rows = conn.execute(
                    select(CLAIMS.c.key, CLAIMS.c.owner_id, CLAIMS.c.run_id, OWNERS.c.fenced)
                    .outerjoin(OWNERS, OWNERS.c.id == CLAIMS.c.owner_id)
                    .where(CLAIMS.c.key.in_(chunk))
                    .with_for_update(of=CLAIMS)
                )
                for key, holder, holder_run, fenced in rows:
                    if holder_run == run_id:
                        result[key] = {"state": "mine"}
                    elif fenced or fenced is None:
                        takeover.append(key)
                        result[key] = {"state": "mine", "took_over_from": holder_run}
                    else:
                        result[key] = {"state": "held", "run_id": holder_run, "owner_id": holder}
            if takeover:
                conn.execute(
                    update(CLAIMS)
                    .where(CLAIMS.c.key == bindparam("b_key"))
                    .values(owner_id=owner_id, run_id=run_id, task_id=bindparam("b_task"),
                            claimed_at=bindparam("b_now", type_=UTCDateTime())),
                    [{"b_key": k, "b_task": wanted[k], "b_now": now} for k in takeover],
                )
        return result

    def claim_status(self, keys: Iterable[str]) -> dict[str, dict]:
        """What waiters poll: per key, ``{"state": "cached", …}`` once an entry exists,
        ``{"state": "held", "run_id", "owner_id", "fenced"}`` while claimed, else
        ``{"state": "free"}`` (the claimer gave up or failed: claim it to compute)."""
        keys = list(dict.fromkeys(keys))
        result: dict[str, dict] = {}
        with self._read() as conn:
            for chunk in _chunks(keys):
                result.update(_cached_states(conn, chunk))
                for key, holder, holder_run, fenced in conn.execute(
                    select(CLAIMS.c.key, CLAIMS.c.owner_id, CLAIMS.c.run_id, OWNERS.c.fenced)
                    .outerjoin(OWNERS, OWNERS.c.id == CLAIMS.c.owner_id)
                    .where(CLAIMS.c.key.in_(chunk))
                ):
                    if key not in result:
                        result[key] = {"state": "held", "run_id": holder_run, "owner_id": holder,
                                       "fenced": bool(fenced) or fenced is None}
        for key in keys:
            result.setdefault(key, {"state": "free"})
        return result

    def release_claims(self, run_id: str, keys: Iterable[str] | None = None) -> None:
        """Drop the claims of ``run_id`` (all of them, or those on ``keys``)."""
        with self._write() as conn:
            if keys is None:
                conn.execute(delete(CLAIMS).where(CLAIMS.c.run_id == run_id))
                return
            for chunk in _chunks(list(dict.fromkeys(keys))):
                conn.execute(delete(CLAIMS).where(CLAIMS.c.run_id == run_id, CLAIMS.c.key.in_(chunk)))

    def claims(self) -> list[dict]:
        """Every current claim (key, owner_id, run_id, task_id, claimed_at)."""
        with self._read() as conn:
            return [row._asdict() for row in conn.execute(select(CLAIMS).order_by(CLAIMS.c.claimed_at))]

    def drop_cache(self, keys: Iterable[str]) -> None:
        keys = list(dict.fromkeys(keys))
        with self._write() as conn:
            for chunk in _chunks(keys):
                conn.execute(delete(CACHE).where(CACHE.c.key.in_(chunk)))

    def last_components(self, op_names: Iterable[str], origins: Mapping[str, str | None] | None = None,
                        ) -> dict[str, dict]:
        """Components of the newest cache entry of each op name (to explain a rerun).

        ``origins`` (op name -> where the op is defined, ``core.keys.op_origin``) keeps, of
        the newest few entries of that name, the newest of the same op: another notebook's
        or script's op of the same name is not this op's history. Entries written before
        origins were recorded match any origin.
        """
        op_names = list(dict.fromkeys(op_names))
        origins = origins or {}
        result: dict[str, dict] = {}
        with self._read() as conn:
            for chunk in _chunks(op_names):
                newest = (
                    select(
                        CACHE.c.op_name,
                        CACHE.c.components,
                        func.row_number()
                        .over(
                            partition_by=CACHE.c.op_name,
                            order_by=(CACHE.c.created_at.desc(), CACHE.c.key.desc()),
                        )
                        .label("rank"),
                    )
                    .where(CACHE.c.op_name.in_(chunk))
                    .subquery()
                )
                rows = conn.execute(
                    select(newest.c.op_name, newest.c.components, newest.c.rank)
                    .where(newest.c.rank <= _HISTORY_LOOKED_AT).order_by(newest.c.op_name, newest.c.rank)
                ).all()
                for op_name, components, _ in rows:
                    if op_name in result:
                        continue
                    wanted = origins.get(op_name)
                    found = (components or {}).get("origin")
                    if wanted is None or found is None or found == wanted:
                        result[op_name] = components
        return result

    def list_cache(self, limit: int | None = None, op_name: str | None = None) -> list[CacheEntry]:
        """Cache entries, newest first: key, op_name, outputs, task_id, created_at (the others UNSET)."""
        query = select(CACHE.c.key, CACHE.c.op_name, CACHE.c.outputs, CACHE.c.task_id,
                       CACHE.c.created_at).order_by(CACHE.c.created_at.desc(), CACHE.c.key)
        if op_name is not None:
            query = query.where(CACHE.c.op_name == op_name)
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            return [CacheEntry(**row._asdict()) for row in conn.execute(query)]
