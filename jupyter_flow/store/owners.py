"""Writers (owners), their heartbeats and fencing; the signing keys and Dask clusters they publish.

An owner that stops heartbeating is fenced: it may not write any more, and its unfinished
runs become LOST (``reconcile``). Every write of runs, tasks and cache entries checks its
owner first (``StoreTransactions._lock_owner``).
"""

from __future__ import annotations

import getpass
import os
import socket
from datetime import datetime

from sqlalchemy import Connection, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.types import Text

from jupyter_flow.core.ids import new_id
from jupyter_flow.core.status import RunStatus, TaskStatus
from jupyter_flow.store.database import db_now, db_now_minus
from jupyter_flow.store.models import UTCDateTime
from jupyter_flow.store.transactions import (
    _RUN_ACTIVE,
    _TASK_UNFINISHED,
    CLAIMS,
    CLUSTERS,
    OWNERS,
    RUNS,
    SIGNERS,
    TASKS,
    StoreTransactions,
    _chunks,
)


class Owners(StoreTransactions):
    """Owners and fencing, published signing keys, clusters."""

    def publish_signer(self, user: str, key_id: str, public_key: str) -> None:
        """Publish the public half of ``user``'s artifact-signing key (``signers``), so that
        teammates can choose to trust it. Publishing grants nothing; a key id already
        listed keeps its first row. Once per key per Store object."""
        if key_id in self._signers_published:
            return
        with self._write() as conn:
            conn.execute(
                self._insert(SIGNERS).on_conflict_do_nothing(index_elements=[SIGNERS.c.key_id]),
                {"key_id": key_id, "user": user, "public_key": public_key, "created_at": self._now(conn)},
            )
        self._signers_published.add(key_id)

    def signers(self, user: str | None = None) -> list[dict]:
        """Published signing keys ({key_id, user, public_key, created_at}), of ``user`` or all,
        oldest first. Anyone who can write the store can add a row: check a key's id with
        its owner before trusting it."""
        query = select(SIGNERS).order_by(SIGNERS.c.created_at, SIGNERS.c.key_id)
        if user is not None:
            query = query.where(SIGNERS.c.user == user)
        with self._read() as conn:
            return [row._asdict() for row in conn.execute(query)]

    def register_owner(
        self,
        user: str | None = None,
        host: str | None = None,
        pid: int | None = None,
        kind: str = "process",
    ) -> str:
        """Register the calling process as a writer; heartbeat it with ``heartbeat``."""
        owner_id = new_id()
        with self._write() as conn:
            now = self._now(conn)
            conn.execute(
                insert(OWNERS).values(
                    id=owner_id,
                    user=user or getpass.getuser(),
                    host=host or socket.gethostname(),
                    pid=os.getpid() if pid is None else pid,
                    kind=kind,
                    started_at=now,
                    heartbeat_at=now,
                    fenced=False,
                )
            )
        return owner_id

    def heartbeat(self, owner_id: str) -> None:
        """Prove ``owner_id`` is alive (database time); FencedWrite if it was declared dead."""
        with self._write() as conn:
            result = conn.execute(
                update(OWNERS)
                .where(OWNERS.c.id == owner_id, OWNERS.c.fenced.is_(False))
                .values(heartbeat_at=db_now(self.dialect))
            )
            if result.rowcount == 0:
                self._lock_owner(conn, owner_id)  # raises with the right message

    def get_owner(self, owner_id: str) -> dict | None:
        with self._read() as conn:
            row = conn.execute(select(OWNERS).where(OWNERS.c.id == owner_id)).first()
        return None if row is None else row._asdict()

    def release_owner(self, owner_id: str) -> list[str]:
        """Clean exit of ``owner_id``: its unfinished runs become LOST; returns their ids."""
        with self._write() as conn:
            now = self._now(conn)
            result = conn.execute(
                update(OWNERS)
                .where(OWNERS.c.id == owner_id, OWNERS.c.fenced.is_(False))
                .values(fenced=True, ended_at=now)
            )
            if result.rowcount == 0:
                return []
            return self._lose_owned_runs(
                conn, [owner_id], now, f"owner {owner_id} exited while the run was unfinished"
            )

    def reconcile(self, timeout: float = 30.0) -> list[str]:
        """Fence owners silent for ``timeout`` seconds; their unfinished runs become LOST.

        Returns the ids of the runs marked LOST. When every owner is alive this is a
        single indexed query, cheap enough to run before every listing.
        """
        stale_query = select(OWNERS.c.id).where(
            OWNERS.c.fenced.is_(False),
            OWNERS.c.heartbeat_at < db_now_minus(self.dialect, timeout),
        )
        with self._read() as conn:
            if conn.execute(stale_query.limit(1)).first() is None:
                return []
        with self._write() as conn:
            stale = list(conn.execute(stale_query.with_for_update()).scalars())
            if not stale:
                return []
            now = self._now(conn)
            conn.execute(
                update(OWNERS).where(OWNERS.c.id.in_(stale)).values(fenced=True, ended_at=now)
            )
            return self._lose_owned_runs(
                conn,
                stale,
                now,
                f"the process that owned this run stopped heartbeating for over {timeout:g} s; "
                "resume it with jf.resume(run_id)",
            )

    def _lose_owned_runs(
        self, conn: Connection, owner_ids: list[str], now: datetime, error: str
    ) -> list[str]:
        # A dead owner computes nothing any more: waiters take its keys over.
        conn.execute(delete(CLAIMS).where(CLAIMS.c.owner_id.in_(owner_ids)))
        conn.execute(
            update(CLUSTERS)
            .where(CLUSTERS.c.owner_id.in_(owner_ids), CLUSTERS.c.closed_at.is_(None))
            .values(closed_at=now)
        )
        run_ids = list(
            conn.execute(
                select(RUNS.c.id)
                .where(RUNS.c.owner_id.in_(owner_ids), RUNS.c.status.in_(_RUN_ACTIVE))
                .with_for_update()
            ).scalars()
        )
        if not run_ids:
            return []
        for chunk in _chunks(run_ids):
            conn.execute(
                select(TASKS.c.id)
                .where(TASKS.c.run_id.in_(chunk), TASKS.c.status.in_(_TASK_UNFINISHED))
                .with_for_update()
            ).all()
        seqs = self._bump_seq(conn, run_ids)
        conn.execute(
            update(RUNS)
            .where(RUNS.c.id == bindparam("b_id"))
            .values(
                status=RunStatus.LOST.value,
                ended_at=bindparam("b_now", type_=UTCDateTime()),
                error=func.coalesce(RUNS.c.error, bindparam("b_error", type_=Text())),
                seq=bindparam("b_seq"),
            ),
            [{"b_id": r, "b_now": now, "b_error": error, "b_seq": seqs[r]} for r in run_ids],
        )
        conn.execute(
            update(TASKS)
            .where(
                TASKS.c.run_id == bindparam("b_id"),
                # executemany cannot expand IN lists.
                or_(*(TASKS.c.status == status for status in _TASK_UNFINISHED)),
            )
            .values(
                status=TaskStatus.LOST.value,
                ended_at=bindparam("b_now", type_=UTCDateTime()),
                seq=bindparam("b_seq"),
            ),
            [{"b_id": r, "b_now": now, "b_seq": seqs[r]} for r in run_ids],
        )
        return run_ids

    def register_cluster(
        self, owner_id: str | None, profile: str | None, address: str, dashboard: str | None = None
    ) -> str:
        """Record a Dask cluster started (or joined) by ``owner_id``; returns its id."""
        cluster_id = new_id()
        with self._write() as conn:
            now = self._now(conn)
            self._lock_owner(conn, owner_id)
            conn.execute(
                insert(CLUSTERS).values(
                    id=cluster_id,
                    owner_id=owner_id,
                    profile=profile,
                    address=address,
                    dashboard=dashboard,
                    created_at=now,
                )
            )
        return cluster_id

    def close_cluster(self, cluster_id: str) -> None:
        with self._write() as conn:
            now = self._now(conn)
            conn.execute(
                update(CLUSTERS)
                .where(CLUSTERS.c.id == cluster_id, CLUSTERS.c.closed_at.is_(None))
                .values(closed_at=now)
            )

    def list_clusters(self, active_only: bool = True) -> list[dict]:
        """Clusters newest first; active ones are open and have a live (unfenced) owner."""
        query = select(CLUSTERS).order_by(CLUSTERS.c.id.desc())
        if active_only:
            query = query.outerjoin(OWNERS, OWNERS.c.id == CLUSTERS.c.owner_id).where(
                CLUSTERS.c.closed_at.is_(None),
                or_(CLUSTERS.c.owner_id.is_(None), OWNERS.c.fenced.is_(False)),
            )
        with self._read() as conn:
            return [row._asdict() for row in conn.execute(query)]
