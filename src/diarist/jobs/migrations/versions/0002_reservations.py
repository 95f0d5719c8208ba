"""Audio held on the quota by unfinished jobs, and per-key storage quotas.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as table:
        table.add_column(sa.Column("reserved_seconds", sa.Float, nullable=False, server_default="0"))
        table.add_column(sa.Column("storage_quota_bytes", sa.BigInteger))
    with op.batch_alter_table("jobs") as table:
        table.add_column(sa.Column("reserved_seconds", sa.Float, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as table:
        table.drop_column("reserved_seconds")
    with op.batch_alter_table("api_keys") as table:
        table.drop_column("storage_quota_bytes")
        table.drop_column("reserved_seconds")
