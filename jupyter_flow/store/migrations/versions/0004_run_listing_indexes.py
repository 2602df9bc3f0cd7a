"""Composite indexes for listing runs newest first by status, kind or parent.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_runs_status_id", "runs", ["status", "id"])
    op.create_index("ix_runs_kind_id", "runs", ["kind", "id"])
    op.create_index("ix_runs_parent_id_id", "runs", ["parent_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_runs_parent_id_id", table_name="runs")
    op.drop_index("ix_runs_kind_id", table_name="runs")
    op.drop_index("ix_runs_status_id", table_name="runs")
