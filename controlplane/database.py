"""The database as the web app sees it: one engine per app, one session per request."""

from pathlib import Path

from alembic import command
from alembic.config import Config
import threading

from flask import current_app, g, request

from tenants.crypto import SecretBox
from tenants.db import READER, make_engine, make_sessionmaker
from tenants.platform import Platform

from .config import secret_keys
from .feed import Notifier

EDGE_PATHS = "/api/v1/edge/"
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def _ensure_sqlite_folder(url):
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)


def init_app(app):
    url = app.config["DATABASE_URL"]
    _ensure_sqlite_folder(url)
    # hide_parameters: SQL errors would otherwise print HA1s and ciphertexts into logs.
    engine = make_engine(url, hide_parameters=True)
    platform = Platform(
        realm=app.config["SIP_REALM"],
        sip_server=app.config["SIP_SERVER"],
        box=SecretBox(secret_keys(app.config)),
    )
    sessions = make_sessionmaker(engine, platform)
    notifier = Notifier(engine)
    notifier.watch(sessions)  # a commit that wrote the outbox wakes this worker's long-polls
    app.extensions["trunkline"] = {
        "engine": engine,
        "platform": platform,
        "sessions": sessions,
        "notifier": notifier,
        # Long-polls one worker holds at once; the rest of its threads serve the API.
        "longpoll_slots": threading.BoundedSemaphore(app.config["LONGPOLL_SLOTS"]),
    }
    app.teardown_appcontext(_close_session)


def session():
    """The unit of work of this request. Nothing is saved unless a service commits."""
    if "db_session" not in g:
        ext = current_app.extensions["trunkline"]
        if request.method == "GET" and request.path.startswith(EDGE_PATHS):
            # An edge's reads (and its long-polls) must not queue for SQLite's write lock
            # behind API writes; a deferred transaction still takes it if a write follows.
            g.db_session = ext["sessions"](bind=ext["engine"].execution_options(**READER))
        else:
            g.db_session = ext["sessions"]()
    return g.db_session


def reading_session():
    """A session of this request that never takes SQLite's write lock: the request's own on
    an edge's GET, one of its own otherwise (closed with the request). An edge's POST of
    events authenticates on it, so that its batch can be decided before it queues for the
    write lock (tenants.services.bans.decide_auth_events)."""
    if request.method == "GET" and request.path.startswith(EDGE_PATHS):
        return session()
    if "db_reading_session" not in g:
        ext = current_app.extensions["trunkline"]
        g.db_reading_session = ext["sessions"](bind=ext["engine"].execution_options(**READER))
    return g.db_reading_session


def snapshot_session():
    """A session that reads one point in time and never writes: REPEATABLE READ on
    PostgreSQL, a WAL read transaction (no write lock) on SQLite. The caller closes it."""
    ext = current_app.extensions["trunkline"]
    engine = ext["engine"]
    if engine.dialect.name == "postgresql":
        bind = engine.execution_options(isolation_level="REPEATABLE READ")
    else:
        bind = engine.execution_options(**READER)
    return ext["sessions"](bind=bind)


def _close_session(_exc):
    for name in ("db_session", "db_reading_session"):
        s = g.pop(name, None)
        if s is not None:
            s.close()


def alembic_config(url):
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url, revision="head"):
    _ensure_sqlite_folder(url)
    command.upgrade(alembic_config(url), revision)


def downgrade(url, revision="base"):
    command.downgrade(alembic_config(url), revision)
