"""Services, their demand and the broker's moves; a job may be a service's replica."""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.create_table(
        "services",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("team", sa.String(200), nullable=False),
        sa.Column("queue", sa.String(200), nullable=False),
        sa.Column("gpus_per_replica", sa.Integer(), nullable=False),
        sa.Column("min_replicas", sa.Integer(), nullable=False),
        sa.Column("max_replicas", sa.Integer(), nullable=False),
        sa.Column("replica_rps", sa.Float(), nullable=False),
        sa.Column("startup_s", sa.Float(), nullable=False),
        sa.Column("slo_latency_s", sa.Float(), nullable=False),
        sa.Column("slo_percentile", sa.Float(), nullable=False),
        sa.Column("command", sa.JSON(), nullable=False),
        sa.Column("target_replicas", sa.Integer(), nullable=False),
        sa.Column("created_s", sa.Float(), nullable=False),
    )
    op.create_table(
        "demand",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "service", sa.String(200), sa.ForeignKey("services.name", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("t_s", sa.Float(), nullable=False),
        sa.Column("requests_per_s", sa.Float(), nullable=False),
    )
    op.create_index("ix_demand_service", "demand", ["service"])
    op.create_table(
        "moves",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("t_s", sa.Float(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("service", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("before", sa.Integer(), nullable=False),
        sa.Column("after", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("service", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("service")
    op.drop_table("moves")
    op.drop_index("ix_demand_service", "demand")
    op.drop_table("demand")
    op.drop_table("services")
