"""Wake-ups for edges that long-poll the outbox, one notifier per worker process.

In the worker that commits: a commit that wrote the outbox publishes its version to this
process's notifier right after the commit (``Notifier.watch`` on the session factory), so
long-polls waiting in the same worker wake at once, on either database.

Other workers: on PostgreSQL a thread LISTENs on the outbox channel with its own connection;
every commit that writes the outbox NOTIFYs it, so waiting edges wake within milliseconds in
every gunicorn worker. SQLite has no notifications: the thread watches ``PRAGMA
data_version`` on a connection of its own every SQLITE_POLL (5 ms; a few microseconds of
SQLite, no transaction, no lock) and reads the outbox version only when another connection
has committed. It polls only while a long-poll waits in its process.
"""

import logging
import os
import sqlite3
import threading
import time

import psycopg
from sqlalchemy import event, select
from sqlalchemy.engine import make_url

from tenants.models import OutboxCounter
from tenants.outbox import NOTIFY_CHANNEL

log = logging.getLogger(__name__)

SQLITE_POLL = 0.005
# Even with notifications, look again now and then: a notification lost while the
# listener reconnected must not leave an edge waiting for its whole long-poll.
RECHECK = 2.0
_WRITTEN_BEFORE = "notifier_outbox_before"


class Notifier:
    def __init__(self, engine, *, sqlite_poll=SQLITE_POLL):
        self._engine = engine
        self._sqlite_poll = sqlite_poll
        self._condition = threading.Condition()
        self._version = None
        self._waiting = 0  # long-polls waiting in this process
        self._wanted = threading.Event()  # set while some wait: the SQLite poll runs
        self._thread = None
        self._lock = threading.Lock()
        self._pid = None
        self._stopping = threading.Event()

    # --- commits of this process ---

    def watch(self, session_factory):
        """Publish, right after each commit of these sessions that wrote the outbox, the
        version it wrote: long-polls in this process wake without waiting for the poll or
        the notification."""
        # Before the outbox's own before_commit hook (insert=True): what it had written
        # before this commit. A commit that failed leaves its versions unpublished.
        event.listen(session_factory, "before_commit", self._before_commit, insert=True)
        event.listen(session_factory, "after_commit", self._after_commit)

    @staticmethod
    def _before_commit(session):
        session.info[_WRITTEN_BEFORE] = session.info.get("outbox_written")

    def _after_commit(self, session):
        written = session.info.get("outbox_written")
        if written and written is not session.info.pop(_WRITTEN_BEFORE, None):
            self.publish(max(written.values()))

    def publish(self, version):
        """The outbox holds `version` (committed): wake the long-polls waiting below it."""
        self._publish(version)

    # --- the watcher thread ---

    def _ensure_started(self):
        # Started lazily, in the worker process that serves the request (gunicorn forks).
        with self._lock:
            if self._thread is not None and self._pid == os.getpid():
                return
            self._pid = os.getpid()
            if self._engine.dialect.name == "postgresql":
                target = self._listen
            else:
                target = self._poll
            self._thread = threading.Thread(target=target, name="outbox-notifier", daemon=True)
            self._thread.start()

    def _read_version(self):
        with self._engine.connect() as conn:
            conn = conn.execution_options(sqlite_read_only=True)
            return conn.scalar(select(OutboxCounter.version).where(OutboxCounter.id == 1))

    def _publish(self, version):
        if version is None:
            return
        with self._condition:
            if self._version is None or version > self._version:
                self._version = version
                self._condition.notify_all()

    @property
    def stopping(self):
        return self._stopping.is_set()

    def stop(self):
        """Let the thread end (within RECHECK seconds), and answer every waiting long-poll
        now: a worker that is shutting down must not hold its exit for their whole wait."""
        self._stopping.set()
        self._wanted.set()
        with self._condition:
            self._condition.notify_all()

    def _sqlite_path(self):
        database = make_url(self._engine.url).database
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        return database

    def _poll(self):
        path = self._sqlite_path()
        while not self._stopping.is_set():
            try:
                if path is None:  # no file another connection could watch: read each time
                    self._poll_reading(self._read_version)
                else:
                    self._poll_data_version(path)
            except Exception:  # the database is away for a moment; keep serving
                log.warning("outbox poll failed", exc_info=True)
                self._stopping.wait(min(1.0, 20 * self._sqlite_poll))

    def _idle(self):
        """Wait while no long-poll waits here; True when one does (False: stopping)."""
        while not self._wanted.wait(RECHECK):
            pass
        return not self._stopping.is_set()

    def _poll_reading(self, read):
        while self._idle():
            self._publish(read())
            self._stopping.wait(self._sqlite_poll)

    def _poll_data_version(self, path):
        # A connection of its own, never in a transaction: data_version moves whenever
        # another connection (any process) commits; then the version is read.
        conn = sqlite3.connect(path, timeout=5, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.execute("PRAGMA query_only=1")

            def read():
                row = conn.execute("SELECT version FROM outbox_counter WHERE id = 1").fetchone()
                return row[0] if row else None

            seen, read_at = None, 0.0
            while self._idle():
                data_version = conn.execute("PRAGMA data_version").fetchone()[0]
                now = time.monotonic()
                if data_version != seen or now - read_at >= RECHECK:
                    seen, read_at = data_version, now
                    self._publish(read())
                self._stopping.wait(self._sqlite_poll)
        finally:
            conn.close()

    def _listen(self):
        url = make_url(self._engine.url).set(drivername="postgresql")
        dsn = url.render_as_string(hide_password=False)
        while not self._stopping.is_set():
            try:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    while not self._stopping.is_set():
                        self._publish(self._read_version())
                        for note in conn.notifies(timeout=RECHECK):
                            self._publish(int(note.payload))
            except Exception:
                if self._stopping.is_set():
                    return
                log.warning("outbox listener lost its connection; reconnecting", exc_info=True)
                self._stopping.wait(1)

    def wait_beyond(self, version, timeout):
        """Block until the outbox is known to be past `version`, or timeout; True if so."""
        if self._stopping.is_set():
            return False
        self._ensure_started()
        deadline = time.monotonic() + timeout
        with self._condition:
            self._waiting += 1
            self._wanted.set()
            try:
                while self._version is None or self._version <= version:
                    if self._stopping.is_set():
                        return False
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._condition.wait(remaining)
                return True
            finally:
                self._waiting -= 1
                if not self._waiting and not self._stopping.is_set():
                    self._wanted.clear()
