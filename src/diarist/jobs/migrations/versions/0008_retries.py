"""Retries: a job whose input's server is away goes back to the queue, not before `retry_at`.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from diarist.jobs.tables import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as table:
        table.add_column(sa.Column("retries", sa.Integer, nullable=False, server_default="0"))
        table.add_column(sa.Column("retry_at", UTCDateTime))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as table:
        table.drop_column("retry_at")
        table.drop_column("retries")
