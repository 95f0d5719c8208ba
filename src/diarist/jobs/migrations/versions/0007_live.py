"""Live streams: POST /v1/live hands out a single-use socket URL; the stream then runs on one replica.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

from diarist.jobs.tables import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "live_streams",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("key_id", sa.String(32), nullable=False, index=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("token_hash", sa.String(64)),
        sa.Column("token_expires_at", UTCDateTime, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("started_at", UTCDateTime),
        sa.Column("completed_at", UTCDateTime),
        sa.Column("seen_at", UTCDateTime),
        sa.Column("replica", sa.String(200)),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("options", sa.JSON, nullable=False),
        sa.Column("job_id", sa.String(36)),
    )


def downgrade() -> None:
    op.drop_table("live_streams")
