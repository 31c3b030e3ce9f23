"""Services are named within their team: each stored key becomes 'team:name', and the
demand, replicas and moves that name a service follow it."""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"


def _rename(to_key) -> None:
    """Each service row copied (in SQL, its JSON as it is) under its new key, its references
    moved to it, the old row deleted: no foreign key is ever left dangling, on SQLite or
    PostgreSQL."""
    bind = op.get_bind()
    columns = [c["name"] for c in sa.inspect(bind).get_columns("services")]
    table = sa.table("services", *(sa.column(c) for c in columns))
    for old, team in bind.execute(sa.select(table.c.name, table.c.team)).all():
        new = to_key(team, old)
        if old == new:
            continue
        copy = [sa.literal(new) if c == "name" else table.c[c] for c in columns]
        bind.execute(table.insert().from_select(columns, sa.select(*copy).where(table.c.name == old)))
        for referrer in ("demand", "jobs", "moves"):
            ref = sa.table(referrer, sa.column("service", sa.String))
            bind.execute(ref.update().where(ref.c.service == old).values(service=new))
        bind.execute(table.delete().where(table.c.name == old))


def upgrade() -> None:
    _rename(lambda team, name: name if ":" in name else f"{team}:{name}")


def downgrade() -> None:
    _rename(lambda team, name: name.split(":", 1)[-1])
