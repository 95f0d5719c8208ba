"""Leases: the reaper's index, when a job was last published to the broker, and the workers table.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from diarist.jobs.tables import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as table:
        table.add_column(sa.Column("published_at", UTCDateTime))
        table.create_index("ix_jobs_status_heartbeat", ["status", "heartbeat_at"])
    op.create_table(
        "workers",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("queues", sa.String(200), nullable=False),
        sa.Column("concurrency", sa.Integer, nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("seen_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_workers_seen_at", "workers", ["seen_at"])


def downgrade() -> None:
    op.drop_index("ix_workers_seen_at", "workers")
    op.drop_table("workers")
    with op.batch_alter_table("jobs") as table:
        table.drop_index("ix_jobs_status_heartbeat")
        table.drop_column("published_at")
