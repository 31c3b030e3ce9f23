"""Elastic jobs: the sizes a job may be resized to and how its throughput scales."""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("min_gpus", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("max_gpus", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("step_gpus", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("scaling", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("scaling")
        batch.drop_column("step_gpus")
        batch.drop_column("max_gpus")
        batch.drop_column("min_gpus")
