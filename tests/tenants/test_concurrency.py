"""Races that the database must settle, run with real threads and connections."""

import threading

from sqlalchemy import func, select

from tenants.errors import Conflict
from tenants.models import AgentLogin, QueueAgent, Tenant, utcnow
from tenants.services import extensions, queues, tenants

from .conftest import ROOT


def run_concurrently(session_factory, jobs):
    """Run each job(session) on its own thread and connection; return results or errors."""
    results = [None] * len(jobs)

    def worker(index, job):
        with session_factory() as s:
            s.info["principal"] = ROOT
            try:
                results[index] = job(s)
            except Exception as exc:  # collected and inspected by the test
                results[index] = exc

    threads = [threading.Thread(target=worker, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    return results


def test_concurrent_creations_never_share_a_trunk_number(session_factory, session):
    jobs = [lambda s, i=i: tenants.create_tenant(s, ROOT, name=f"t{i}").trunk_number
            for i in range(12)]
    numbers = run_concurrently(session_factory, jobs)
    assert all(isinstance(n, str) for n in numbers), numbers
    assert len(set(numbers)) == 12
    assert session.scalar(select(func.count()).select_from(Tenant)) == 12


# SQLite runs one writing transaction at a time, so the forced overlaps below need PostgreSQL.


def test_two_creations_that_pick_the_same_number_both_succeed(
    pg_session_factory, pg_session, monkeypatch
):
    session_factory = pg_session_factory
    barrier = threading.Barrier(2, timeout=20)
    original = tenants._free_trunk_number
    picks = {}

    def same_first_pick(s):
        ident = threading.get_ident()
        if ident not in picks:
            picks[ident] = "55555"
            barrier.wait()  # both have seen 55555 free before either inserts it
            return "55555"
        return original(s)

    monkeypatch.setattr(tenants, "_free_trunk_number", same_first_pick)
    jobs = [lambda s, i=i: tenants.create_tenant(s, ROOT, name=f"t{i}").trunk_number
            for i in range(2)]
    numbers = run_concurrently(session_factory, jobs)
    assert all(isinstance(n, str) for n in numbers), numbers
    assert "55555" in numbers and len(set(numbers)) == 2


def test_home_and_remote_logging_in_at_once_end_with_one_agent(
    pg_session_factory, pg_session, monkeypatch
):
    session_factory, session = pg_session_factory, pg_session
    tenants.create_tenant(session, ROOT, name="Acme", trunk_number="12345")
    extensions.create_extension(session, ROOT, "12345", number="101", name="Alice")
    extensions.set_dual_registration(session, ROOT, "12345", "101", enabled=True, sip_peer=True)
    queues.create_queue(session, ROOT, "12345", number="700", name="Support")
    queues.create_queue(session, ROOT, "12345", number="701", name="Sales")

    barrier = threading.Barrier(2, timeout=20)
    original = queues.load_extension

    def load_then_wait(s, tenant, number):
        ext = original(s, tenant, number)
        barrier.wait()  # both have read "nobody is logged in"
        return ext

    monkeypatch.setattr(queues, "load_extension", load_then_wait)
    results = run_concurrently(session_factory, [
        lambda s: queues.log_in_agent(s, ROOT, "12345", "700", "101", endpoint="home"),
        lambda s: queues.log_in_agent(s, ROOT, "12345", "701", "101", endpoint="remote"),
    ])
    assert sorted(type(r).__name__ for r in results) == ["Conflict", "QueueAgent"], results
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(AgentLogin)) == 1
    assert session.scalar(select(func.count()).select_from(QueueAgent)) == 1


def test_many_rounds_of_racing_logins_never_log_both_in(session_factory, session):
    tenants.create_tenant(session, ROOT, name="Acme", trunk_number="12345")
    extensions.create_extension(session, ROOT, "12345", number="101", name="Alice")
    extensions.set_dual_registration(session, ROOT, "12345", "101", enabled=True, sip_peer=True)
    queues.create_queue(session, ROOT, "12345", number="700", name="Support")
    for _ in range(20):
        results = run_concurrently(session_factory, [
            lambda s: queues.log_in_agent(s, ROOT, "12345", "700", "101", endpoint="home"),
            lambda s: queues.log_in_agent(s, ROOT, "12345", "700", "101", endpoint="remote"),
        ])
        assert sum(isinstance(r, Conflict) for r in results) == 1, results
        session.expire_all()
        assert len(session.scalars(select(AgentLogin.endpoint)).all()) == 1
        queues.log_out_agent(session, ROOT, "12345", "700", "101")
        assert session.scalars(select(AgentLogin)).all() == []
        # On SQLite every transaction takes the write lock (BEGIN IMMEDIATE): end this one.
        session.rollback()


def test_a_batch_sent_twice_at_once_is_applied_once(session_factory, session):
    # An edge that timed out resends its batch while the first copy is still being applied.
    from tenants.models import FailureWindow
    from tenants.services import edges

    edge, _token = edges.enroll_edge(session, ROOT, name="edge-1")
    failure = {"type": "auth_failure", "address": "192.0.2.7", "user_id": "12345101",
               "reason": "wrong_password", "at": utcnow()}
    barrier = threading.Barrier(2, timeout=20)

    def ingest(s):
        barrier.wait()
        return edges.ingest_events(s, s.get(type(edge), edge.id), batch_id="b1",
                                   events=[failure, failure])

    results = run_concurrently(session_factory, [ingest, ingest])
    assert sorted(r["duplicate"] for r in results) == [False, True], results
    session.expire_all()
    assert session.get(FailureWindow, "192.0.2.7").failures == 2
