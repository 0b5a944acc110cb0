"""controlplane.warmup: a worker rehearses the edges' event intake, and nothing of it stays."""

import logging
import threading
import time

from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from controlplane.warmup import rehearse_edge_intake
from tenants.models import Base


def contents(app):
    """Every row of every table (the outbox counter's version included)."""
    with app.extensions["trunkline"]["engine"].connect() as conn:
        return {table.name: sorted(map(repr, conn.execute(select(table)).all()))
                for table in Base.metadata.sorted_tables}


def test_the_rehearsal_runs_a_whole_batch_up_to_a_ban_and_keeps_nothing(app, api, caplog):
    api.ok(api.post("/tenants", {"name": "Existing"}), 201)  # data that must stay as it is
    before = contents(app)
    assert before["outbox_counter"] and before["tenants"]
    notifier = app.extensions["trunkline"]["notifier"]
    published = notifier._version

    with caplog.at_level(logging.INFO, logger="controlplane.warmup"):
        result = rehearse_edge_intake(app)

    assert result == {"duplicate": False, "applied": 9, "ignored": [], "banned": True}
    assert contents(app) == before
    assert notifier._version == published  # no long-poll hears of a rolled-back version
    assert "edge intake rehearsed" in caplog.text
    # The app's own sessions work as before, and the outbox goes on from where it was.
    with app.extensions["trunkline"]["engine"].connect() as conn:
        version = conn.scalar(text("SELECT version FROM outbox_counter"))
    api.ok(api.post("/tenants", {"name": "After"}), 201)
    with app.extensions["trunkline"]["engine"].connect() as conn:
        assert conn.scalar(text("SELECT version FROM outbox_counter")) == version + 1


def test_a_second_rehearsal_in_the_same_process_works_as_well(app):
    assert rehearse_edge_intake(app)["banned"]
    assert rehearse_edge_intake(app)["banned"]


def test_the_rehearsal_waits_for_no_writer_and_then_skips(app, backend, caplog):
    """Another process writing must not hold a worker back from serving."""
    engine = app.extensions["trunkline"]["engine"]
    held, release = threading.Event(), threading.Event()

    def writer():
        with engine.connect() as conn, conn.begin():
            if backend == "postgresql":  # the row every commit that writes the outbox takes
                conn.execute(text("SELECT version FROM outbox_counter FOR UPDATE"))
            held.set()
            release.wait(30)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert held.wait(10)
        began = time.monotonic()
        with caplog.at_level(logging.INFO, logger="controlplane.warmup"):
            assert rehearse_edge_intake(app) is None
        assert time.monotonic() - began < 10  # REHEARSAL_LOCK_WAIT_MS, then no more
        assert "rehearsal skipped, the database was busy" in caplog.text
    finally:
        release.set()
        thread.join(30)
    assert rehearse_edge_intake(app)["banned"]  # once the writer is done


def test_a_failing_rehearsal_is_logged_and_the_worker_goes_on(app, monkeypatch, caplog):
    from controlplane import warmup

    def broken(session):
        raise RuntimeError("boom")

    monkeypatch.setattr(warmup, "_apply_batch", broken)
    assert rehearse_edge_intake(app) is None
    assert "rehearsal failed" in caplog.text


def test_a_database_error_that_is_no_lock_is_a_failure_not_a_skip(app, monkeypatch, caplog):
    from controlplane import warmup

    def missing_table(session):
        raise OperationalError("SELECT", None, Exception("no such table: edges"))

    monkeypatch.setattr(warmup, "_apply_batch", missing_table)
    assert rehearse_edge_intake(app) is None
    assert "rehearsal failed" in caplog.text and "skipped" not in caplog.text
