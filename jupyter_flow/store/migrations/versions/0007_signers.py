"""Per-user signing keys: the store publishes public keys, never a shared secret.

- ``signers``: the public half of each user's Ed25519 artifact-signing key (published by
  their processes), so that teammates can choose to trust it (``jupyter flow trust add``).
  The private halves live in each user's home (``artifacts/keyring.py``).
- ``cache_entries.signer``: the key that signed the entry's pickled outputs (NULL when
  none is pickled), so a run skips entries its user would refuse to unpickle.
- ``store_keys`` is dropped: its shared HMAC key was readable by everyone who could read
  the database, so anyone could sign a pickle with it. Artifacts signed with it are no
  longer trusted and are recomputed when needed.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signers",
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("public_key", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key_id", name="pk_signers"),
    )
    op.create_index("ix_signers_user", "signers", ["user"])
    with op.batch_alter_table("cache_entries") as batch:
        batch.add_column(sa.Column("signer", sa.String(16), nullable=True))
    op.drop_table("store_keys")


def downgrade() -> None:
    op.create_table(
        "store_keys",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_store_keys"),
    )
    with op.batch_alter_table("cache_entries") as batch:
        batch.drop_column("signer")
    op.drop_index("ix_signers_user", table_name="signers")
    op.drop_table("signers")
