"""Single-flight claims, the store's keys, and metrics of tasks and cache entries.

- ``claims``: one row per cache key being computed, so that concurrent processes that
  need the same key wait for one computation instead of each running it.
- ``store_keys``: secrets that belong to the store rather than to the artifact store
  (the key that authenticates pickled artifacts).
- ``tasks.metrics`` / ``cache_entries.metrics``: ``jf.record`` inside an op, kept with
  the task and restored on cache hits.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "claims",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("owner_id", sa.String(26), nullable=False),
        sa.Column("run_id", sa.String(26), nullable=False),
        sa.Column("task_id", sa.String(26), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["owners.id"], name="fk_claims_owner_id_owners",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("key", name="pk_claims"),
    )
    op.create_index("ix_claims_owner_id", "claims", ["owner_id"])
    op.create_index("ix_claims_run_id", "claims", ["run_id"])
    op.create_table(
        "store_keys",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_store_keys"),
    )
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("metrics", _json(), nullable=True))
    with op.batch_alter_table("cache_entries") as batch:
        batch.add_column(sa.Column("metrics", _json(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cache_entries") as batch:
        batch.drop_column("metrics")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("metrics")
    op.drop_table("store_keys")
    op.drop_index("ix_claims_run_id", table_name="claims")
    op.drop_index("ix_claims_owner_id", table_name="claims")
    op.drop_table("claims")
