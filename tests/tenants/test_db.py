"""SQLite's writers' queue (tenants/db.py): a flock on `<database>-writer.lock` taken before
BEGIN IMMEDIATE, across threads and processes, never by readers, never waited for by the
thread that holds it, and let go by every way a transaction ends."""

import fcntl
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from tenants.db import READER, make_engine, waiting_briefly, writer_busy, writer_lock_path

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def database(tmp_path):
    return tmp_path / "queue.db"


@pytest.fixture
def engine(database):
    engine = make_engine(f"sqlite:///{database}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    yield engine
    engine.dispose()


@pytest.fixture
def begins(engine):
    """(thread ident, time) of every BEGIN IMMEDIATE the engine sends to SQLite."""
    sent = []

    @event.listens_for(engine, "before_cursor_execute")
    def _record(_conn, _cursor, statement, *_args):
        if statement == "BEGIN IMMEDIATE":
            sent.append((threading.get_ident(), time.monotonic()))

    return sent


def lock_is_free(database):
    fd = os.open(writer_lock_path(database), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def rows(engine):
    with engine.execution_options(**READER).connect() as conn:
        return sorted(x for (x,) in conn.exec_driver_sql("SELECT x FROM t"))


class Holder:
    """A thread that holds a write transaction until released."""

    def __init__(self, engine, value=0):
        self.holding = threading.Event()
        self.release = threading.Event()
        self.released_at = None
        self.thread = threading.Thread(target=self._run, args=(engine, value))
        self.thread.start()
        assert self.holding.wait(10)

    def _run(self, engine, value):
        with engine.begin() as conn:
            conn.exec_driver_sql(f"INSERT INTO t VALUES ({value})")
            self.holding.set()
            self.release.wait(20)
            self.released_at = time.monotonic()

    def finish(self):
        self.release.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


def start_writers(engine, values):
    results = {}

    def write(value):
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"INSERT INTO t VALUES ({value})")
            results[value] = "ok"
        except Exception as exc:  # inspected by the test
            results[value] = exc

    threads = [threading.Thread(target=write, args=(v,)) for v in values]
    for t in threads:
        t.start()
    return threads, results


def join_all(threads, within=10):
    deadline = time.monotonic() + within
    for t in threads:
        t.join(max(0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), f"not finished within {within} s"


def test_a_writer_is_busy_while_another_holds_the_queue_and_readers_never_are(engine, database):
    assert not writer_busy(engine)
    holder = Holder(engine)
    assert writer_busy(engine)
    assert writer_busy(engine)  # asking takes nothing: still the holder's
    holder.finish()
    assert not writer_busy(engine) and lock_is_free(database)
    with engine.execution_options(**READER).begin() as conn:
        conn.exec_driver_sql("SELECT x FROM t").all()
        assert not writer_busy(engine)


def test_without_a_queue_no_writer_is_ever_busy(tmp_path):
    assert not writer_busy(make_engine("sqlite://"))
    assert not writer_busy(make_engine(f"sqlite:///{tmp_path / 'never-written.db'}"))


def test_the_lock_file_sits_beside_the_database_private(engine, database):
    path = Path(writer_lock_path(database))
    assert path == database.parent / "queue.db-writer.lock"
    assert path.stat().st_mode & 0o777 == 0o600
    assert lock_is_free(database)


def test_writers_queue_behind_a_held_write_transaction(engine, database, begins):
    holder = Holder(engine)
    threads, results = start_writers(engine, range(1, 7))
    time.sleep(0.3)  # let them reach the queue
    assert not lock_is_free(database)
    holder.finish()
    join_all(threads)
    assert results == {v: "ok" for v in range(1, 7)}
    assert rows(engine) == list(range(7))
    # Nobody knocked at SQLite's lock (its busy handler) while the holder had it.
    others = [at for ident, at in begins if ident != holder.thread.ident]
    assert len(others) == 6
    assert all(at > holder.released_at for at in others)
    assert lock_is_free(database)


CHILD = textwrap.dedent("""
    import sys
    from tenants.db import make_engine
    engine = make_engine(sys.argv[1])
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (100)")
        print("holding", flush=True)
        sys.stdin.readline()
    print("committed", flush=True)
""")


def test_another_process_queues_too(engine, database, begins):
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, f"sqlite:///{database}"], cwd=ROOT,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "holding"
        assert not lock_is_free(database)
        threads, results = start_writers(engine, [1, 2])
        time.sleep(0.3)
        assert begins == []  # queued on the lock file, not spinning on SQLite's lock
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "committed"
        join_all(threads)
        assert results == {1: "ok", 2: "ok"}
        assert rows(engine) == [1, 2, 100]
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(10)
    assert lock_is_free(database)


def test_this_process_queues_behind_another_process(engine, database):
    """And the other way round: a child process waits for this one's transaction."""
    holder = Holder(engine)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, f"sqlite:///{database}"], cwd=ROOT,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        holder.finish()
        assert child.stdout.readline().strip() == "holding"
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "committed"
        assert child.wait(10) == 0
    finally:
        if child.poll() is None:
            child.kill()
    assert rows(engine) == [0, 100]


def test_waiting_briefly_inside_a_write_transaction_of_the_same_thread(engine, database):
    started = time.monotonic()
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        # The queue is this thread's own: no waiting on it (that would never end); SQLite's
        # busy timeout, set to the brief limit, gives up instead.
        with pytest.raises(OperationalError, match="database is locked"):
            with waiting_briefly(engine) as brief:
                brief.exec_driver_sql("INSERT INTO t VALUES (2)")
    assert time.monotonic() - started < 10
    assert rows(engine) == [1]
    with waiting_briefly(engine) as brief:  # and the connection's busy timeout is back
        brief.exec_driver_sql("INSERT INTO t VALUES (3)")
        assert brief.connection.driver_connection.execute(
            "PRAGMA busy_timeout").fetchone()[0] == 30000
    assert rows(engine) == [1, 3]
    assert lock_is_free(database)


def test_waiting_briefly_gives_up_in_the_queue_behind_another_thread(engine, database):
    holder = Holder(engine)
    try:
        started = time.monotonic()
        with pytest.raises(OperationalError, match="database is locked"):
            with waiting_briefly(engine) as brief:
                brief.exec_driver_sql("INSERT INTO t VALUES (1)")
        assert time.monotonic() - started < 10
    finally:
        holder.finish()
    # The writer that gave up left its waiting thread behind; that thread lets the lock
    # go as soon as it gets it.
    deadline = time.monotonic() + 10
    while not lock_is_free(database) or any(
            t.name == "sqlite-writer-queue" for t in threading.enumerate()):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with waiting_briefly(engine) as brief:
        brief.exec_driver_sql("INSERT INTO t VALUES (2)")
    assert rows(engine) == [0, 2]


def test_readers_never_wait_on_the_queue(engine, database):
    holder = Holder(engine)
    seen = {}

    def read_with_engine_options():
        with engine.execution_options(**READER).begin() as conn:
            seen["engine"] = conn.exec_driver_sql("SELECT count(*) FROM t").scalar()

    def read_with_connection_options():  # as the outbox notifier does
        with engine.connect() as conn:
            conn = conn.execution_options(sqlite_read_only=True)
            seen["connection"] = conn.exec_driver_sql("SELECT count(*) FROM t").scalar()

    try:
        readers = [threading.Thread(target=read_with_engine_options),
                   threading.Thread(target=read_with_connection_options)]
        for t in readers:
            t.start()
        join_all(readers)  # while the holder still holds the queue
        assert not lock_is_free(database)
    finally:
        holder.finish()
    assert seen == {"engine": 0, "connection": 0}


def test_the_lock_is_let_go_after_an_exception_in_the_transaction(engine, database):
    with pytest.raises(ZeroDivisionError):
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
            assert not lock_is_free(database)
            1 / 0
    assert lock_is_free(database)
    assert rows(engine) == []


def test_the_lock_is_let_go_after_rollback_and_after_a_failed_statement(engine, database):
    with engine.connect() as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        assert not lock_is_free(database)
        conn.rollback()
        assert lock_is_free(database)
        with pytest.raises(OperationalError):
            conn.exec_driver_sql("INSERT INTO no_such_table VALUES (1)")
        conn.rollback()
        assert lock_is_free(database)
        conn.exec_driver_sql("INSERT INTO t VALUES (2)")
        conn.commit()
        assert lock_is_free(database)
    assert rows(engine) == [2]


def test_the_lock_is_let_go_when_the_connection_is_invalidated(engine, database):
    with engine.connect() as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        assert not lock_is_free(database)
        conn.invalidate()
        assert lock_is_free(database)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (2)")
    assert rows(engine) == [2]


def test_the_lock_is_let_go_when_begin_itself_fails(engine, database):
    # A writer outside the queue (the sqlite3 shell, a migration) holds SQLite's lock.
    outsider = sqlite3.connect(database, isolation_level=None)
    outsider.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(OperationalError, match="database is locked"):
            with waiting_briefly(engine) as brief:
                brief.exec_driver_sql("INSERT INTO t VALUES (1)")
        assert lock_is_free(database)
    finally:
        outsider.rollback()
        outsider.close()
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (2)")
    assert rows(engine) == [2]


def test_a_child_forked_while_the_lock_is_held_cannot_let_it_go(engine, database):
    with engine.connect() as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        dbapi_connection = conn.connection.driver_connection
        pid = os.fork()
        if pid == 0:  # the child: what a gunicorn worker forked now would do at most
            try:
                dbapi_connection.leave_writer_queue()
                dbapi_connection._lock_file.close()
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        assert not lock_is_free(database)
        conn.commit()
    assert lock_is_free(database)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_no_queue_without_a_database_file(url):
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            assert type(conn.connection.driver_connection).__name__ == "Connection"
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        with waiting_briefly(engine) as brief:
            brief.exec_driver_sql("INSERT INTO t VALUES (1)")
    finally:
        engine.dispose()
