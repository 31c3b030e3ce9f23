"""Each attempt's last reported checkpoint, when it was asked to stop, and the work it kept
once it ended."""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("checkpoint_s", sa.Float(), nullable=True))
        batch.add_column(sa.Column("kept_s", sa.Float(), nullable=True))
        batch.add_column(sa.Column("stop_s", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("stop_s")
        batch.drop_column("kept_s")
        batch.drop_column("checkpoint_s")
