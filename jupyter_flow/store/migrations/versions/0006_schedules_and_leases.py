"""Schedules, leases, and the schedule a batch run was fired by.

- ``schedules``: notebook batches fired on a cron schedule, with the next fire time (UTC)
  that schedulers advance by compare-and-set, and the last firing and misfire.
- ``leases``: named roles held by one process until they expire (the ``scheduler`` lease,
  so that several servers on one store fire each schedule once).
- ``runs.schedule_id`` / ``runs.scheduled_for``: which schedule fired a batch run and for
  which cron time.

Revision ID: 0006
Revises: 0005
Create Date: 2027-01-10
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("notebook", sa.Text(), nullable=False),
        sa.Column("cron", sa.String(120), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("params", _json(), nullable=True),
        sa.Column("grid", _json(), nullable=True),
        sa.Column("parallel", sa.Integer(), nullable=False),
        sa.Column("cluster", sa.String(200), nullable=True),
        sa.Column("misfire", sa.String(16), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("next_fire_at", TS, nullable=True),
        sa.Column("last_fire_at", TS, nullable=True),
        sa.Column("last_run_id", sa.String(26), nullable=True),
        sa.Column("last_misfire", _json(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_schedules"),
        sa.UniqueConstraint("name", name="uq_schedules_name"),
    )
    op.create_index("ix_schedules_paused_next_fire_at", "schedules", ["paused", "next_fire_at"])
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("acquired_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_leases"),
    )
    # Nullable columns: SQLite adds them in place (no table rebuild), runs keep their rows.
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("schedule_id", sa.String(26), nullable=True))
        batch.add_column(sa.Column("scheduled_for", TS, nullable=True))
        batch.create_index("ix_runs_schedule_id", ["schedule_id"])


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_schedule_id")
        batch.drop_column("scheduled_for")
        batch.drop_column("schedule_id")
    op.drop_table("leases")
    op.drop_index("ix_schedules_paused_next_fire_at", table_name="schedules")
    op.drop_table("schedules")
