"""Wake-ups for edges that long-poll the outbox, one notifier per worker process.

PostgreSQL: a thread LISTENs on the outbox channel with its own connection; every commit
that writes the outbox NOTIFYs it, so waiting edges wake within milliseconds in every
gunicorn worker. SQLite has no notifications: the thread polls the version every 50 ms
(one cheap query per process, however many edges wait).
"""

import logging
import threading
import time

import psycopg
from sqlalchemy import select
from sqlalchemy.engine import make_url

from tenants.models import OutboxCounter
from tenants.outbox import NOTIFY_CHANNEL

log = logging.getLogger(__name__)

SQLITE_POLL = 0.05
# Even with notifications, look again now and then: a notification lost while the
# listener reconnected must not leave an edge waiting for its whole long-poll.
RECHECK = 2.0


class Notifier:
    def __init__(self, engine):
        self._engine = engine
        self._condition = threading.Condition()
        self._version = None
        self._thread = None
        self._lock = threading.Lock()
        self._pid = None
        self._stopping = threading.Event()

    def _ensure_started(self):
        # Started lazily, in the worker process that serves the request (gunicorn forks).
        import os

        with self._lock:
            if self._thread is not None and self._pid == os.getpid():
                return
            self._pid = os.getpid()
            target = self._listen if self._engine.dialect.name == "postgresql" else self._poll
            self._thread = threading.Thread(target=target, name="outbox-notifier", daemon=True)
            self._thread.start()

    def _read_version(self):
        with self._engine.connect() as conn:
            conn = conn.execution_options(sqlite_read_only=True)
            return conn.scalar(select(OutboxCounter.version).where(OutboxCounter.id == 1))

    def _publish(self, version):
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
        with self._condition:
            self._condition.notify_all()

    def _poll(self):
        while not self._stopping.is_set():
            try:
                self._publish(self._read_version())
            except Exception:  # the database is away for a moment; keep serving
                log.warning("outbox poll failed", exc_info=True)
            self._stopping.wait(SQLITE_POLL)

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
            while self._version is None or self._version <= version:
                if self._stopping.is_set():
                    return False
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(remaining)
            return True
