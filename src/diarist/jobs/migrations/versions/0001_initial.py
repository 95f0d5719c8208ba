"""API keys, jobs, media uploads and webhook deliveries.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from diarist.jobs.tables import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("webhook_secret", sa.String(100), nullable=False),
        sa.Column("rate_limit_per_minute", sa.Integer),
        sa.Column("quota_seconds", sa.Float),
        sa.Column("used_seconds", sa.Float, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("revoked_at", UTCDateTime),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("request", sa.JSON, nullable=False),
        sa.Column("output", sa.JSON(none_as_null=True)),
        sa.Column("progress", sa.Integer),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("worker", sa.String(100)),
        sa.Column("audio_seconds", sa.Float),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime),
        sa.Column("heartbeat_at", UTCDateTime),
    )
    op.create_index("ix_jobs_key_created", "jobs", ["key_id", "created_at"])
    op.create_index("ix_jobs_status_created", "jobs", ["status", "created_at"])
    op.create_table(
        "media",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("object_key", sa.String(255), primary_key=True),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("uploaded_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_media_uploaded_at", "media", ["uploaded_at"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("due_at", UTCDateTime),
        sa.Column("claimed_until", UTCDateTime),
        sa.Column("delivered", sa.Boolean, nullable=False),
        sa.Column("last_reason", sa.String(30)),
        sa.Column("last_status", sa.Integer),
    )
    op.create_index("ix_webhook_deliveries_job_id", "webhook_deliveries", ["job_id"])
    op.create_index("ix_webhook_deliveries_due_at", "webhook_deliveries", ["due_at"])


def downgrade() -> None:
    for table in ("webhook_deliveries", "media", "jobs", "api_keys"):
        op.drop_table(table)
