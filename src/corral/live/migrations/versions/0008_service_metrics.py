"""A service's demand may be read from its replicas' Prometheus metrics."""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    with op.batch_alter_table("services") as batch:
        batch.add_column(sa.Column("metrics_path", sa.String(200), nullable=True))
        batch.add_column(
            sa.Column("metrics_counter", sa.String(200), nullable=False, server_default="requests_total")
        )


def downgrade() -> None:
    with op.batch_alter_table("services") as batch:
        batch.drop_column("metrics_counter")
        batch.drop_column("metrics_path")
