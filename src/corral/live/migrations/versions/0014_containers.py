"""A job may run in a container image, with mounts, through a runtime it names."""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("image", sa.String(1000), nullable=True))
        batch.add_column(sa.Column("mounts", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("runtime", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for column in ("runtime", "mounts", "image"):
            batch.drop_column(column)
