"""The first schema: teams, nodes, jobs, attempts."""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "teams",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("queues", sa.JSON(), nullable=False),
    )
    op.create_table(
        "nodes",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("pool", sa.String(200), nullable=False),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(200), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("registered_s", sa.Float(), nullable=False),
        sa.Column("heartbeat_s", sa.Float(), nullable=False),
        sa.Column("host", sa.Integer(), nullable=False),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(200), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("team", sa.String(200), nullable=False),
        sa.Column("queue", sa.String(200), nullable=False),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("preemptible", sa.Boolean(), nullable=False),
        sa.Column("estimate_s", sa.Float(), nullable=True),
        sa.Column("grace_s", sa.Float(), nullable=False),
        sa.Column("command", sa.JSON(), nullable=False),
        sa.Column("submit_s", sa.Float(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False, index=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("end_s", sa.Float(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("checkpoint_s", sa.Float(), nullable=True),
        sa.Column("run_s", sa.Float(), nullable=False),
    )
    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job", sa.Integer(), sa.ForeignKey("jobs.id"), nullable=False, index=True),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("placement", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False, index=True),
        sa.Column("start_s", sa.Float(), nullable=False),
        sa.Column("end_s", sa.Float(), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("ended", sa.String(20), nullable=False),
        sa.Column("stop_deadline_s", sa.Float(), nullable=True),
    )


def downgrade() -> None:
    for table in ("attempts", "jobs", "nodes", "teams"):
        op.drop_table(table)
