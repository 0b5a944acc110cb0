"""The schema comes from Alembic: upgrade to head and back to base on both backends, and
the models agree with what the migrations build."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

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


def test_sqlite_upgrade_never_hands_out_an_id_anything_remembers(tmp_path):
    url = f"sqlite:///{tmp_path / 'ids.db'}"
    upgrade(url, "0003")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO tenants (id, trunk_number, name, ring_mode_code, voicemail_code,"
            " dual_default_ring_mode, created_at) VALUES"
            " (1, '12345', 'Kept', '36', '*97', 'both', '2026-01-01 00:00:00')"))
        conn.execute(text(
            "INSERT INTO trusted_networks (id, tenant_id, cidr, created_at)"
            " VALUES (3, 1, '192.0.2.0/24', '2026-01-01 00:00:00')"))
        # Tenant 7 and reseller 4 were deleted before the upgrade; their audit records stay.
        conn.execute(text(
            "INSERT INTO audit_events (at, reseller_id, tenant_id, action, object_type,"
            " object_id, details) VALUES ('2026-01-01 00:00:00', 4, 7, 'tenant.delete',"
            " 'tenant', '54321', '{}')"))
    engine.dispose()

    upgrade(url)
    engine = make_engine(url)  # foreign keys enforced, as the application runs
    with engine.begin() as conn:
        ids = {table: conn.execute(text(
            f"INSERT INTO {table} ({columns}) VALUES ({values}) RETURNING id")).scalar_one()
            for table, columns, values in [
                ("resellers", "name, created_at", "'New', '2026-02-01 00:00:00'"),
                ("tenants", "trunk_number, name, ring_mode_code, voicemail_code,"
                 " dual_default_ring_mode, created_at",
                 "'23456', 'New', '36', '*97', 'both', '2026-02-01 00:00:00'"),
                ("trusted_networks", "tenant_id, cidr, created_at",
                 "1, '198.51.100.0/24', '2026-02-01 00:00:00'"),
            ]}
        assert ids == {"resellers": 5, "tenants": 8, "trusted_networks": 4}
        # The rebuilt tables kept their rows, and the foreign keys into them still cascade.
        conn.execute(text("DELETE FROM tenants WHERE id = 1"))
        assert conn.execute(text("SELECT count(*) FROM trusted_networks")).scalar_one() == 0
    engine.dispose()
