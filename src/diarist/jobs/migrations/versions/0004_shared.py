"""State that every API replica shares: the URL signing secret, and which replica holds each upload.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from diarist.jobs.tables import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "server_secret",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("value", sa.String(128), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    with op.batch_alter_table("media") as table:
        table.add_column(sa.Column("origin", sa.String(300)))


def downgrade() -> None:
    with op.batch_alter_table("media") as table:
        table.drop_column("origin")
    op.drop_table("server_secret")
