"""Why a task failed is a column, written by the engine, not guessed from its error text.

- ``tasks.failure_kind``: ``core.status.FailureKind`` (exception, timeout, worker,
  canceled, upstream) of a task that did not succeed; NULL for the others. Readers used to
  derive "timeout" and "worker" from the error message's first word (``OpTimeout…``,
  ``WorkerLost…``).
- Existing rows are backfilled as the engine would have written them: a FAILED task's
  kind from its error text as before (``OpTimeout`` → timeout, ``WorkerLost`` → worker,
  else exception), CANCELED → canceled, SKIPPED → upstream.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("failure_kind", sa.String(16), nullable=True))
    tasks = sa.table("tasks", sa.column("status", sa.String), sa.column("error", sa.Text),
                     sa.column("failure_kind", sa.String))
    op.execute(
        tasks.update()
        .where(tasks.c.status.in_(("FAILED", "CANCELED", "SKIPPED")))
        .values(failure_kind=sa.case(
            (tasks.c.status == "CANCELED", "canceled"),
            (tasks.c.status == "SKIPPED", "upstream"),
            (tasks.c.error.like("OpTimeout%"), "timeout"),
            (tasks.c.error.like("WorkerLost%"), "worker"),
            else_="exception",
        ))
    )


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("failure_kind")
