"""What the web page keeps per job: the speaker names a user gave, and the waveform overview.

The overview (`job_peaks`) has its own table so that job lists never read its bytes; both are
deleted with the job's output.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as table:
        table.add_column(sa.Column("speaker_names", sa.JSON(none_as_null=True)))
    op.create_table(
        "job_peaks",
        sa.Column("job_id", sa.String(36), primary_key=True),
        sa.Column("duration", sa.Float, nullable=False),
        sa.Column("rate", sa.Float, nullable=False),
        sa.Column("peaks", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("job_peaks")
    with op.batch_alter_table("jobs") as table:
        table.drop_column("speaker_names")
