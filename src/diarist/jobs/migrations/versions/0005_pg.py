"""When a job's latest attempt started, for the job duration and real-time factor metrics, and an
index on when jobs ended, which the metrics and retention select by.

Upload sizes become 64-bit: PostgreSQL's INTEGER stops at 2 GiB, below what `max_input_bytes`
may allow (SQLite's INTEGER is 64-bit already, so its table is left as it is).

`created_at` includes the wait in the queue and `updated_at` moves with every progress report,
so neither tells how long a worker took.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from diarist.jobs.tables import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as table:
        table.add_column(sa.Column("started_at", UTCDateTime))
    op.create_index("ix_jobs_finished_at", "jobs", ["finished_at"])
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("media", "size", type_=sa.BigInteger, existing_type=sa.Integer, existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("media", "size", type_=sa.Integer, existing_type=sa.BigInteger, existing_nullable=False)
    op.drop_index("ix_jobs_finished_at", "jobs")
    with op.batch_alter_table("jobs") as table:
        table.drop_column("started_at")
