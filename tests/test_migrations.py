"""The schema comes from Alembic: upgrade to head and back to base on both backends, and
the models agree with what the migrations build."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from controlplane.database import downgrade, upgrade
from tenants.db import make_engine
from tenants.models import Base

from .conftest import BACKENDS, scratch_postgres_database


@pytest.fixture(params=BACKENDS)
def empty_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
    else:
        url, drop = scratch_postgres_database("trunkline_migrations")
        yield url
        drop()


def test_upgrade_to_head_then_downgrade_to_base(empty_url):
    upgrade(empty_url)
    engine = make_engine(empty_url)
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations differ: {diff}"
    engine.dispose()

    downgrade(empty_url)
    engine = make_engine(empty_url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
