"""controlplane.warmup: a worker rehearses the edges' event intake, and nothing of it stays."""

import logging
import threading
import time

from sqlalchemy import func, select, text

from controlplane.warmup import rehearse_edge_intake
from tenants.models import Base


def row_counts(app):
    with app.extensions["trunkline"]["engine"].connect() as conn:
        return {table.name: conn.scalar(select(func.count()).select_from(table))
                for table in Base.metadata.sorted_tables}


def test_the_rehearsal_runs_a_whole_batch_up_to_a_ban_and_keeps_nothing(app, api, caplog):
    api.ok(api.post("/tenants", {"name": "Existing"}), 201)  # data that must stay as it is
    before = row_counts(app)
    notifier = app.extensions["trunkline"]["notifier"]
    published = notifier._version

    with caplog.at_level(logging.INFO, logger="controlplane.warmup"):
        result = rehearse_edge_intake(app)

    assert result == {"duplicate": False, "applied": 9, "ignored": [], "banned": True}
    assert row_counts(app) == before
    assert notifier._version == published  # no long-poll hears of a rolled-back version
    assert "edge intake rehearsed" in caplog.text
    # The app's own sessions work as before, and the outbox goes on from where it was.
    created = api.ok(api.post("/tenants", {"name": "After"}), 201)
    assert created["name"] == "After"


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
        assert time.monotonic() - began < 5
        assert "rehearsal skipped" in caplog.text
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
