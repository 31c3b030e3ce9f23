"""Jobs name their dependencies, arrays and submitting user; a job cancelled by the
scheduler says why."""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("user", sa.String(200), nullable=False, server_default=""))
        batch.add_column(sa.Column("after", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("array_job", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("array_task", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("array_limit", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("reason", sa.String(400), nullable=True))
        batch.add_column(sa.Column("released_s", sa.Float(), nullable=True))
        batch.add_column(sa.Column("released_rank", sa.Integer(), nullable=True))
        batch.create_index("ix_jobs_array_job", ["array_job"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_array_job")
        for column in (
            "released_rank",
            "released_s",
            "reason",
            "array_limit",
            "array_task",
            "array_job",
            "after",
        ):
            batch.drop_column(column)
