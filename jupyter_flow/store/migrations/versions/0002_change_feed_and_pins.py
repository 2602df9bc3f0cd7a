"""Change feed (runs.seq, tasks.seq, counters) and pinned runs.

Existing runs are numbered in creation order, so a UI that starts its feed at cursor 0
still sees every run.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-15
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("seq", sa.BigInteger(), nullable=False, server_default="0"))
        batch.create_index("ix_runs_seq", ["seq"])
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("seq", sa.BigInteger(), nullable=False, server_default="0"))

    counters = op.create_table(
        "counters",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_counters"),
    )
    op.create_table(
        "pins",
        sa.Column("run_id", sa.String(26), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("run_id", name="pk_pins"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_pins_run_id_runs", ondelete="CASCADE"
        ),
    )

    # Number existing runs (and their tasks) in id order, i.e. creation order.
    op.execute(
        "UPDATE runs SET seq = numbered.n FROM "
        "(SELECT id, row_number() OVER (ORDER BY id) AS n FROM runs) AS numbered "
        "WHERE runs.id = numbered.id"
    )
    op.execute("UPDATE tasks SET seq = (SELECT runs.seq FROM runs WHERE runs.id = tasks.run_id)")
    last = op.get_bind().execute(sa.text("SELECT coalesce(max(seq), 0) FROM runs")).scalar()
    op.bulk_insert(counters, [{"name": "seq", "value": int(last)}])


def downgrade() -> None:
    op.drop_table("pins")
    op.drop_table("counters")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("seq")
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_seq")
        batch.drop_column("seq")
