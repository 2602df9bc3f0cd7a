"""Initial schema: owners, runs, tasks, cache index, artifacts, clusters.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "owners",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("user", sa.String(255)),
        sa.Column("host", sa.String(255)),
        sa.Column("pid", sa.Integer()),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("heartbeat_at", TS, nullable=False),
        sa.Column("ended_at", TS),
        sa.Column("fenced", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_owners"),
    )
    op.create_index("ix_owners_fenced_heartbeat_at", "owners", ["fenced", "heartbeat_at"])

    op.create_table(
        "runs",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("name", sa.String(255)),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("parent_id", sa.String(26)),
        sa.Column("resumed_from", sa.String(26)),
        sa.Column("owner_id", sa.String(26)),
        sa.Column("user", sa.String(255)),
        sa.Column("host", sa.String(255)),
        sa.Column("params", JSON),
        sa.Column("metrics", JSON),
        sa.Column("graph", JSON),
        sa.Column("snapshot", sa.String(128)),
        sa.Column("cluster", sa.String(255)),
        sa.Column("environment", JSON),
        sa.Column("notebook", sa.Text()),
        sa.Column("error", sa.Text()),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS),
        sa.Column("ended_at", TS),
        sa.Column("cancel_requested_at", TS),
        sa.Column("cancel_requested_by", sa.String(255)),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["runs.id"], name="fk_runs_parent_id_runs", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["owners.id"], name="fk_runs_owner_id_owners", ondelete="SET NULL"
        ),
    )
    for column in ("name", "kind", "status", "parent_id", "owner_id", "notebook", "created_at"):
        op.create_index(f"ix_runs_{column}", "runs", [column])

    op.create_table(
        "tasks",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("run_id", sa.String(26), nullable=False),
        sa.Column("node", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("index", sa.Integer()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("cached", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("key", sa.String(64)),
        sa.Column("components", JSON),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("provenance", JSON),
        sa.Column("outputs", JSON),
        sa.Column("upstream", JSON),
        sa.Column("resources", JSON),
        sa.Column("stdout", sa.Text()),
        sa.Column("stderr", sa.Text()),
        sa.Column("error", sa.Text()),
        sa.Column("traceback", sa.Text()),
        sa.Column("worker", sa.String(255)),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS),
        sa.Column("ended_at", TS),
        sa.Column("duration", sa.Float()),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_tasks_run_id_runs", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_tasks_run_id", "tasks", ["run_id", "status"])
    op.create_index("ix_tasks_key", "tasks", ["key"])

    op.create_table(
        "cache_entries",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("outputs", JSON, nullable=False),
        sa.Column("components", JSON),
        sa.Column("op_name", sa.String(255)),
        sa.Column("task_id", sa.String(26)),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_cache_entries"),
    )
    op.create_index(
        "ix_cache_entries_op_name_created_at", "cache_entries", ["op_name", "created_at"]
    )

    op.create_table(
        "artifacts",
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger()),
        sa.Column("serializer", sa.String(64)),
        sa.Column("serializer_version", sa.String(64)),
        sa.Column("type", sa.String(255)),
        sa.Column("uri", sa.Text()),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("hash", name="pk_artifacts"),
    )

    op.create_table(
        "clusters",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("owner_id", sa.String(26)),
        sa.Column("profile", sa.String(255)),
        sa.Column("address", sa.String(255)),
        sa.Column("dashboard", sa.Text()),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("closed_at", TS),
        sa.PrimaryKeyConstraint("id", name="pk_clusters"),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["owners.id"], name="fk_clusters_owner_id_owners", ondelete="SET NULL"
        ),
    )
    op.create_index("ix_clusters_owner_id", "clusters", ["owner_id"])


def downgrade() -> None:
    for table in ("clusters", "artifacts", "cache_entries", "tasks", "runs", "owners"):
        op.drop_table(table)
