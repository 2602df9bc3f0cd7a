"""The artifact registry: one row per stored artifact, and what garbage collection must keep.

The files are the artifact store's (``jupyter_flow.artifacts``); these rows say what
exists, how big it is and which runs still need it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import cast, delete, or_, select, type_coerce
from sqlalchemy.types import Text

from jupyter_flow.core.errors import StoreError
from jupyter_flow.core.status import RunStatus
from jupyter_flow.store.models import UTCDateTime
from jupyter_flow.store.records import TaskRecord
from jupyter_flow.store.transactions import (
    _RUN_ACTIVE,
    ARTIFACTS,
    CACHE,
    PINS,
    RUNS,
    TASKS,
    StoreTransactions,
    _check_fields,
    _chunks,
)

_ARTIFACT_FIELDS = frozenset(ARTIFACTS.c.keys())
_HEX = re.compile(r"[0-9a-fA-F]{8,128}")


class ArtifactIndex(StoreTransactions):
    """Artifact rows, their producers, and the digests pins and resumes still need."""

    def put_artifacts(self, rows: list[dict]) -> None:
        """Register artifacts ({hash, size, serializer, serializer_version, type, uri});
        hashes already known are left as they are."""
        cleaned: dict[str, dict] = {}
        for row in rows:
            _check_fields("put_artifacts", row, _ARTIFACT_FIELDS)
            if "hash" not in row:
                raise StoreError("put_artifacts: every row needs 'hash'")
            cleaned.setdefault(row["hash"], {**dict.fromkeys(_ARTIFACT_FIELDS), **row})
        if not cleaned:
            return
        with self._write() as conn:
            now = self._now(conn)
            conn.execute(
                self._insert(ARTIFACTS).on_conflict_do_nothing(index_elements=[ARTIFACTS.c.hash]),
                [{**row, "created_at": row["created_at"] or now} for row in cleaned.values()],
            )

    def get_artifact(self, digest: str) -> dict | None:
        with self._read() as conn:
            row = conn.execute(select(ARTIFACTS).where(ARTIFACTS.c.hash == digest)).first()
        return None if row is None else row._asdict()

    def artifact_sizes(self, digests: Iterable[str]) -> dict[str, int | None]:
        """Stored size in bytes of each known artifact among ``digests``."""
        digests = list(dict.fromkeys(digests))
        sizes: dict[str, int | None] = {}
        with self._read() as conn:
            for chunk in _chunks(digests):
                for digest, size in conn.execute(
                    select(ARTIFACTS.c.hash, ARTIFACTS.c.size).where(ARTIFACTS.c.hash.in_(chunk))
                ):
                    sizes[digest] = size
        return sizes

    def artifact_runs(self, digest: str) -> list[TaskRecord]:
        """Tasks that output the artifact ``digest`` (its producers, for lineage)."""
        if not _HEX.fullmatch(digest):
            raise StoreError(f"{digest!r} is not an artifact hash (hex digits)")
        # A text search narrows the scan; the exact test is done on the decoded JSON.
        query = (
            select(*(TASKS.c[name] for name in TaskRecord.FIELDS))
            .where(cast(TASKS.c.outputs, Text).contains(digest))
            .order_by(TASKS.c.id)
        )
        with self._read() as conn:
            rows = [TaskRecord(*row) for row in conn.execute(query)]
        return [row for row in rows if digest in (row.outputs or {}).values()]

    def list_artifacts(self) -> list[dict]:
        """Registered artifacts, oldest first (hash, size, serializer, type, uri, created_at)."""
        with self._read() as conn:
            return [row._asdict() for row in conn.execute(
                select(ARTIFACTS).order_by(ARTIFACTS.c.created_at, ARTIFACTS.c.hash))]

    def pinned_artifacts(self) -> set[str]:
        """Artifacts a pinned run needs: its tasks' outputs and its graph snapshot."""
        with self._read() as conn:
            pinned = select(PINS.c.run_id)
            digests: set[str] = set()
            for (outputs,) in conn.execute(select(TASKS.c.outputs).where(TASKS.c.run_id.in_(pinned))):
                digests.update((outputs or {}).values())
            for (snapshot,) in conn.execute(select(RUNS.c.snapshot).where(RUNS.c.id.in_(pinned))):
                if snapshot:
                    digests.add(snapshot)
        return digests

    def resumable_snapshots(self, since: datetime) -> set[str]:
        """Graph snapshots a resume may still need: those of runs not finished (PENDING,
        RUNNING), LOST at any age, or created since ``since``."""
        query = select(RUNS.c.snapshot).where(
            RUNS.c.snapshot.is_not(None),
            or_(RUNS.c.status.in_((*_RUN_ACTIVE, RunStatus.LOST.value)),
                RUNS.c.created_at >= type_coerce(since, UTCDateTime())),
        )
        with self._read() as conn:
            return set(conn.execute(query).scalars())

    def forget_artifacts(self, digests: Iterable[str]) -> int:
        """Drop artifact rows and every cache entry whose outputs use one of them
        (the files themselves are the artifact store's business). Returns entries dropped."""
        digests = set(digests)
        if not digests:
            return 0
        dropped = 0
        with self._write() as conn:
            for chunk in _chunks(sorted(digests)):
                conn.execute(delete(ARTIFACTS).where(ARTIFACTS.c.hash.in_(chunk)))
            stale = [key for key, outputs in conn.execute(select(CACHE.c.key, CACHE.c.outputs))
                     if digests & set((outputs or {}).values())]
            for chunk in _chunks(stale):
                conn.execute(delete(CACHE).where(CACHE.c.key.in_(chunk)))
                dropped += len(chunk)
        return dropped
