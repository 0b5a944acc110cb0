"""Alembic environment. The database URL comes from the caller (controlplane db upgrade,
the tests) through the config's "sqlalchemy.url", or from CONTROLPLANE_DATABASE_URL."""

import os

from alembic import context
from sqlalchemy import create_engine, pool

from tenants.models import Base

config = context.config
target_metadata = Base.metadata


def _url():
    return config.get_main_option("sqlalchemy.url") or os.environ["CONTROLPLANE_DATABASE_URL"]


def run_migrations_offline():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        _run(connection)


def _run(connection):
    # SQLite cannot ALTER most things: batch mode rebuilds tables instead.
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite",
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
