"""Engines and sessions.

SQLite is the embedded default; PostgreSQL is production. On SQLite every write
transaction starts with BEGIN IMMEDIATE: pysqlite's deferred transactions let two writers
both read and then fail to upgrade their lock ("database is locked") instead of waiting
their turn.

SQLite's own wait for that lock is no queue: its busy handler sleeps and retries (1, 2,
5, 10 ... 100 ms), so under load a small write can lose the lock to the next batch again
and again (seconds, bench/ban_bench.py). So on a database file, writers queue first:
before BEGIN IMMEDIATE a write transaction takes an exclusive `fcntl.flock` on
`<database file>-writer.lock` (created 0600 beside it), and lets it go when the
transaction ends. The kernel wakes a blocked waiter as soon as the lock is free (no
polling), across the threads of a process and across processes alike: each connection
opens the file itself, and flock locks belong to the open file description.

- Readers (READER, `sqlite_read_only`) never queue: they take no write lock (WAL).
- The lock is let go by the pysqlite connection itself (`_QueuedConnection`), once its
  commit() or rollback() has ended the transaction, or at close() (invalidation, pool
  disposal); a failed BEGIN lets it go at once. SQLAlchemy's `commit` and `rollback`
  events would be too early: they run before the DBAPI's COMMIT, and the next writer
  would find SQLite still locked and fall back into the busy handler.
- A wait is bounded like SQLite's: BUSY_TIMEOUT_MS in all (queue and BEGIN together),
  BRIEF_LOCK_WAIT_MS for `waiting_briefly`; then OperationalError "database is locked".
  A free lock is taken at once (LOCK_NB); a contended one is waited for by a short-lived
  thread blocked in flock (which releases the GIL) while the writer waits on an Event
  with the timeout. A writer that gives up leaves that file descriptor to the thread,
  which unlocks and closes it when its flock returns, and opens a fresh one next time.
- A thread never waits on the queue it already holds through another connection of the
  same database (nested sessions, `waiting_briefly` inside a write): that connection goes
  straight to BEGIN IMMEDIATE and SQLite's busy timeout, as before the queue.
- The descriptor is opened lazily, per connection and per process (O_CLOEXEC): one
  inherited across fork is never locked or unlocked by the child.
- `:memory:` and URI (`file:`) databases, and PostgreSQL, have no queue. Writers that do
  not come through make_engine (Alembic's migrations, the sqlite3 shell) skip the queue
  and meet SQLite's busy handler as before.
"""

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
import weakref

from sqlalchemy import create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, sessionmaker

from .errors import Conflict


class Base(DeclarativeBase):
    pass


READER = {"sqlite_read_only": True}
BRIEF_LOCK_WAIT_MS = 200
BUSY_TIMEOUT_MS = 30000
WRITER_LOCK_SUFFIX = "-writer.lock"


def make_engine(url, **kwargs):
    if url.startswith("sqlite"):
        connect_args = {"timeout": BUSY_TIMEOUT_MS / 1000}
        if _has_writer_queue(url):
            connect_args["factory"] = _QueuedConnection
        engine = create_engine(url, connect_args=connect_args, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _has_writer_queue(url):
    """A database file (not :memory:, not a URI), so a lock file can sit beside it."""
    parsed = make_url(url)
    database = parsed.database
    return bool(database) and database != ":memory:" and not database.startswith("file:") \
        and parsed.query.get("uri", "false").lower() not in ("true", "1")


def writer_lock_path(database):
    """The queue's lock file of a database file (as SQLite opens it: relative to the cwd)."""
    return os.path.abspath(os.fsdecode(database)) + WRITER_LOCK_SUFFIX


def writer_busy(engine):
    """Whether another writer holds this SQLite database's writers' queue at this moment
    (False without a queue: PostgreSQL, :memory:). A hint, stale once returned: the caller
    may read and decide meanwhile (the ban engine), then queue as any writer."""
    if engine.dialect.name != "sqlite" or not _has_writer_queue(str(engine.url)):
        return False
    try:
        fd = os.open(writer_lock_path(engine.url.database), os.O_RDWR | os.O_CLOEXEC)
    except OSError:  # no writer yet (created by the first), or a read-only folder
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


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
        options = conn.get_execution_options()
        # Readers that never write (the edges' snapshot, the outbox poll) take no write lock,
        # and see one point in time for as long as their transaction lasts (WAL).
        if options.get("sqlite_read_only"):
            conn.exec_driver_sql("BEGIN")
            return
        wait_ms = options.get("sqlite_lock_wait_ms", BUSY_TIMEOUT_MS)
        dbapi_connection = conn.connection.driver_connection
        if not isinstance(dbapi_connection, _QueuedConnection):
            _begin_immediate(conn, dbapi_connection, wait_ms)
            return
        started = time.monotonic()
        waited = dbapi_connection.queue_for_writing(wait_ms / 1000)
        try:
            # What is left of the wait goes to SQLite's busy handler, for writers outside
            # the queue (or this thread's own other connection).
            left_ms = wait_ms - int((time.monotonic() - started) * 1000) if waited else wait_ms
            _begin_immediate(conn, dbapi_connection, max(left_ms, 1))
        except BaseException:
            dbapi_connection.leave_writer_queue()
            raise


def _begin_immediate(conn, dbapi_connection, wait_ms):
    if wait_ms == BUSY_TIMEOUT_MS:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        return
    dbapi_connection.execute(f"PRAGMA busy_timeout={wait_ms}")
    try:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    finally:
        with contextlib.suppress(sqlite3.Error):  # closed by a failed BEGIN
            dbapi_connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


# --- the writers' queue (see the module's docstring) ---

_held = threading.local()  # .by_path: lock path -> weakref to the connection holding it


def _held_by_this_thread():
    by_path = getattr(_held, "by_path", None)
    if by_path is None:
        by_path = _held.by_path = {}
    return by_path


class _QueuedConnection(sqlite3.Connection):
    """A pysqlite connection whose write transactions queue on the database's lock file."""

    def __init__(self, database, *args, **kwargs):
        super().__init__(database, *args, **kwargs)
        self._lock_path = writer_lock_path(database)
        self._lock_file = None  # a _LockFile, opened by the first write of this process
        self._holders = None  # while held: the by_path dict of the thread that took it

    def queue_for_writing(self, timeout):
        """Wait (at most `timeout` seconds) for the queue's lock. False when this thread
        already holds it through another connection: never wait for oneself. Raises
        OperationalError ('database is locked') after the timeout."""
        if self._holds_queue():
            return True
        self._holders = None  # (held by the parent, if forked mid-transaction)
        holders = _held_by_this_thread()
        holder = holders.get(self._lock_path)
        holder = holder() if holder is not None else None
        if holder is not None and holder._holds_queue():
            return False
        lock_file = self._lock_file
        if lock_file is None or lock_file.pid != os.getpid():
            if lock_file is not None:
                lock_file.close()  # inherited across fork: closed, never unlocked, here
            lock_file = self._lock_file = _LockFile(self._lock_path)
        try:
            locked = lock_file.lock(timeout)
        except OSError:  # no lock file here (a read-only folder, no flock): SQLite alone
            return False
        if not locked:
            raise OperationalError(
                "BEGIN IMMEDIATE", None, sqlite3.OperationalError(
                    f"database is locked (waited {timeout * 1000:.0f} ms in the writers' queue)"))
        self._holders = holders
        holders[self._lock_path] = weakref.ref(self)
        return True

    def _holds_queue(self):
        return self._holders is not None and self._lock_file.pid == os.getpid()

    def leave_writer_queue(self):
        holders, self._holders = self._holders, None
        if holders is None:
            return
        holder = holders.get(self._lock_path)
        if holder is not None and holder() is self:
            holders.pop(self._lock_path, None)
        self._lock_file.unlock()

    def _leave_unless_in_transaction(self):
        if self._holders is None:
            return
        try:
            busy = self.in_transaction
        except sqlite3.Error:  # closed
            busy = False
        if not busy:
            self.leave_writer_queue()

    def commit(self):
        try:
            super().commit()
        finally:
            self._leave_unless_in_transaction()

    def rollback(self):
        try:
            super().rollback()
        finally:
            self._leave_unless_in_transaction()

    def close(self):
        try:
            super().close()
        finally:
            self.leave_writer_queue()
            if self._lock_file is not None:
                self._lock_file.close()
                self._lock_file = None


class _LockFile:
    """A lock file opened by one process (one open file description at a time)."""

    def __init__(self, path):
        self.path = path
        self.pid = os.getpid()
        self.fd = None
        self.locked = False

    def lock(self, timeout):
        """Take LOCK_EX within `timeout` seconds; False if not."""
        if self.fd is None:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fd, self.fd = self.fd, None  # the waiter's, until it hands it back
            if not _Waiter(fd).wait(timeout):
                return False  # the next lock() opens a fresh one
            self.fd = fd
        self.locked = True
        return True

    def unlock(self):
        locked, self.locked = self.locked, False
        if locked and self.fd is not None and self.pid == os.getpid():
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self):
        if self.fd is None:
            self.locked = False
            return
        try:
            self.unlock()  # explicitly: a child forked meanwhile would keep it alive
        finally:
            fd, self.fd = self.fd, None
            os.close(fd)

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()


class _Waiter:
    """A thread blocked in flock for a writer who waits on an Event with a timeout
    (flock itself has none). The fd is the thread's while it waits; if the writer gives
    up, the thread unlocks and closes it once its flock returns."""

    def __init__(self, fd):
        self.fd = fd
        self._mutex = threading.Lock()
        self._done = threading.Event()
        self._outcome = None  # "locked", "failed", or "abandoned" (by the writer)
        self._error = None

    def wait(self, timeout):
        """True: locked, and the fd is the caller's again. False: not within timeout."""
        thread = threading.Thread(target=self._run, name="sqlite-writer-queue", daemon=True)
        try:
            thread.start()
        except BaseException:
            os.close(self.fd)
            raise
        try:
            self._done.wait(timeout)
        except BaseException:  # interrupted: nobody will own the lock
            if self._settle() == "locked":
                fcntl.flock(self.fd, fcntl.LOCK_UN)
                os.close(self.fd)
            raise
        outcome = self._settle()
        if outcome == "failed":
            raise self._error
        return outcome == "locked"

    def _settle(self):
        with self._mutex:
            if self._outcome is None:
                self._outcome = "abandoned"
            outcome = self._outcome
        if outcome == "failed":
            os.close(self.fd)
        return outcome

    def _run(self):
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            outcome, error = "locked", None
        except OSError as exc:
            outcome, error = "failed", exc
        with self._mutex:
            if self._outcome == "abandoned":
                if outcome == "locked":
                    fcntl.flock(self.fd, fcntl.LOCK_UN)
                os.close(self.fd)
                return
            self._outcome, self._error = outcome, error
        self._done.set()


def is_reader(session):
    """Was the session made to read only (bound with READER's execution options)?"""
    return bool(session.get_bind().get_execution_options().get("sqlite_read_only"))


@contextlib.contextmanager
def waiting_briefly(engine, wait_ms=BRIEF_LOCK_WAIT_MS, *, keep=True):
    """A transaction of its own (committed on exit; rolled back with keep=False) that gives
    up with OperationalError after wait_ms instead of queueing behind a lock: for
    bookkeeping writes that must never hold up the work they accompany. (On SQLite: the
    writers' queue and then BEGIN IMMEDIATE, within wait_ms together; a thread that holds
    the queue itself skips it and meets SQLite's busy timeout, set to that limit.)"""
    engine = engine.execution_options(sqlite_read_only=False, sqlite_lock_wait_ms=wait_ms)
    with engine.connect() as conn, conn.begin() as transaction:
        if conn.dialect.name != "sqlite":
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{wait_ms}ms'")
        yield conn
        if not keep:
            transaction.rollback()


def is_lock_timeout(error):
    """Did this DBAPI error (an OperationalError's .orig) give up waiting for a lock?"""
    if getattr(error, "sqlstate", None) in ("55P03", "57014"):  # lock_not_available,
        return True  # query_canceled (statement_timeout)
    return isinstance(error, sqlite3.OperationalError) and "locked" in str(error)


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
