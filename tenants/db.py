"""Engines and sessions.

SQLite is the embedded default; PostgreSQL is production. On SQLite every transaction
starts with BEGIN IMMEDIATE: pysqlite's deferred transactions let two writers both read
and then fail to upgrade their lock ("database is locked") instead of waiting their turn.
"""

import contextlib

from sqlalchemy import create_engine, event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, sessionmaker

from .errors import Conflict


class Base(DeclarativeBase):
    pass


def make_engine(url, **kwargs):
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _configure_sqlite(engine):
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        # Let SQLAlchemy, not pysqlite, decide when transactions begin (and allow SAVEPOINT).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        # Readers that never write (the edges' snapshot, the outbox poll) take no write lock,
        # and see one point in time for as long as their transaction lasts (WAL).
        read_only = conn.get_execution_options().get("sqlite_read_only")
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


READER = {"sqlite_read_only": True}
BRIEF_LOCK_WAIT_MS = 200
BUSY_TIMEOUT_MS = 30000


def is_reader(session):
    """Was the session made to read only (bound with READER's execution options)?"""
    return bool(session.get_bind().get_execution_options().get("sqlite_read_only"))


@contextlib.contextmanager
def waiting_briefly(engine):
    """A transaction of its own (committed on exit) that gives up with OperationalError
    after BRIEF_LOCK_WAIT_MS instead of queueing behind a lock: for bookkeeping writes
    that must never hold up the work they accompany."""
    engine = engine.execution_options(sqlite_read_only=False)
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # Before BEGIN IMMEDIATE (which the first statement issues) takes the lock.
            conn.connection.driver_connection.execute(
                f"PRAGMA busy_timeout={BRIEF_LOCK_WAIT_MS}")
        try:
            with conn.begin():
                if not sqlite:
                    conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{BRIEF_LOCK_WAIT_MS}ms'")
                yield conn
        finally:
            if sqlite:
                conn.connection.driver_connection.execute(
                    f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


def make_sessionmaker(engine, platform):
    """Sessions carry the platform settings (realm, secret box) that services need, and
    write the audit log and the edge outbox as part of every commit."""
    from . import audit, outbox

    factory = sessionmaker(engine, expire_on_commit=False, info={"platform": platform})
    audit.install(factory)
    outbox.install(factory)
    return factory


def platform_of(session):
    return session.info["platform"]


def commit(session, conflict_message="conflicts with existing data"):
    """Commit the unit of work; a constraint that another transaction won is a Conflict."""
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(conflict_message) from exc
