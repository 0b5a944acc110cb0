"""Fixtures shared by the whole suite (names after flask's tutorial: app, client, runner).

Every test that touches the database runs once on SQLite and once on PostgreSQL. Each
backend's schema is built once per run with the Alembic migrations (never create_all);
after each test every table is emptied.

PostgreSQL: TEST_POSTGRES_URL (default: the CI machine's server, trust authentication,
database `test`); the suite creates a scratch database beside it and drops it at the end.
TRUNKLINE_TEST_BACKENDS=sqlite runs SQLite alone (for a laptop without PostgreSQL).
"""

import os
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from controlplane import create_app
from controlplane.database import upgrade
from tenants.crypto import SecretBox
from tenants.db import make_engine, make_sessionmaker
from tenants.models import Base
from tenants.platform import Platform
from tenants.scope import platform_principal

PG_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BACKENDS = [b for b in os.environ.get("TRUNKLINE_TEST_BACKENDS", "sqlite,postgresql").split(",") if b]
SECRET_KEYS = [SecretBox.generate_key()]
REALM = "sip.test.trunkline"


def scratch_postgres_database(prefix="trunkline_test"):
    """Create an empty database beside TEST_POSTGRES_URL; returns (url, drop)."""
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)

    def drop():
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


@pytest.fixture(scope="session")
def migrated_databases(tmp_path_factory):
    urls, drops = {}, []
    if "sqlite" in BACKENDS:
        path = tmp_path_factory.mktemp("sqlite") / "test.db"
        urls["sqlite"] = f"sqlite:///{path}"
    if "postgresql" in BACKENDS:
        urls["postgresql"], drop = scratch_postgres_database()
        drops.append(drop)
    for url in urls.values():
        upgrade(url)
    yield urls
    for drop in drops:
        drop()


_engines = {}


def engine_for(url):
    if url not in _engines:
        _engines[url] = make_engine(url)
    return _engines[url]


def empty_all_tables(engine):
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))
        # The rows the migrations seed.
        conn.execute(text("INSERT INTO outbox_counter (id, version) VALUES (1, 0)"))
        conn.execute(text(
            "INSERT INTO ban_policy (id, max_retry, find_time, ban_time, ban_time_factor,"
            " max_ban_time, scan_user_ids, ipv6_prefix) VALUES (1, 5, 600, 3600, 2, 604800, 3, 64)"
        ))


@pytest.fixture(params=BACKENDS)
def db_url(request, migrated_databases):
    url = migrated_databases[request.param]
    yield url
    empty_all_tables(engine_for(url))


@pytest.fixture(params=[b for b in BACKENDS if b == "postgresql"])
def pg_db_url(request, migrated_databases):
    """For races that only a server database can run in parallel."""
    url = migrated_databases[request.param]
    yield url
    empty_all_tables(engine_for(url))


@pytest.fixture
def pg_session_factory(pg_db_url, platform):
    return make_sessionmaker(engine_for(pg_db_url), platform)


@pytest.fixture
def pg_session(pg_session_factory):
    with pg_session_factory() as s:
        s.info["principal"] = platform_principal("test")
        yield s


@pytest.fixture
def backend(db_url):
    return make_url(db_url).get_backend_name()


@pytest.fixture
def platform():
    return Platform(realm=REALM, sip_server="sip.test.trunkline", box=SecretBox(SECRET_KEYS))


@pytest.fixture
def session_factory(db_url, platform):
    return make_sessionmaker(engine_for(db_url), platform)


@pytest.fixture
def session(session_factory):
    with session_factory() as s:
        s.info["principal"] = platform_principal("test")
        yield s


@pytest.fixture
def app(db_url):
    app = create_app({
        "TESTING": True,
        "DATABASE_URL": db_url,
        "SECRET_KEYS": SECRET_KEYS,
        "SIP_REALM": REALM,
        "SIP_SERVER": "sip.test.trunkline",
    })
    yield app
    app.extensions["trunkline"]["notifier"].stop()
    app.extensions["trunkline"]["engine"].dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def platform_key(app):
    from tenants.services.api_keys import create_api_key

    with app.extensions["trunkline"]["sessions"]() as s:
        _key, token = create_api_key(s, platform_principal("test"), role="platform", name="root")
    return token


@pytest.fixture
def api(client, platform_key):
    """An HTTP client of the API with a platform key; `api.as_(key)` for another key."""
    from tests.helpers import ApiClient

    return ApiClient(client, platform_key)
