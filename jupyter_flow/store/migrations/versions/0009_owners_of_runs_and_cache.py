"""Runs and cache entries belong to a Jupyter user (issue 21 point 1).

- ``runs.owner``: the Jupyter (hub) user the run belongs to; ``runs.user`` stays the OS
  user that ran it (provenance). Existing runs belong to their OS user, as they did.
- ``cache_entries.owner``: the owner of the run whose task produced the value; existing
  entries take it from their producing task's run, when it is still stored.
- ``ix_runs_owner_listing``: listing a user's runs newest first reads one index range.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("owner", sa.String(255), nullable=True))
    op.create_index("ix_runs_owner_listing", "runs", ["owner", "id"])
    with op.batch_alter_table("cache_entries") as batch:
        batch.add_column(sa.Column("owner", sa.String(255), nullable=True))
    runs = sa.table("runs", sa.column("id", sa.String), sa.column("user", sa.String), sa.column("owner", sa.String))
    tasks = sa.table("tasks", sa.column("id", sa.String), sa.column("run_id", sa.String))
    cache = sa.table("cache_entries", sa.column("task_id", sa.String), sa.column("owner", sa.String))
    op.execute(runs.update().values(owner=runs.c.user))
    producer_owner = (
        sa.select(runs.c.owner).select_from(tasks.join(runs, runs.c.id == tasks.c.run_id))
        .where(tasks.c.id == cache.c.task_id).scalar_subquery()
    )
    op.execute(cache.update().values(owner=producer_owner))


def downgrade() -> None:
    with op.batch_alter_table("cache_entries") as batch:
        batch.drop_column("owner")
    op.drop_index("ix_runs_owner_listing", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("owner")
