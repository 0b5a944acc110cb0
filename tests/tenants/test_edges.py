import datetime as dt

import pytest
from sqlalchemy import select

from tenants.errors import Conflict
from tenants.models import Ban, Registration, utcnow
from tenants.services import bans, edges, extensions

from .conftest import ROOT

NOW = utcnow()  # ingestion purges against the real clock: stay near it


@pytest.fixture
def edge(session):
    edge, _token = edges.enroll_edge(session, ROOT, name="edge-1")
    return edge


def registration(user_id, contact="sip:phone@192.0.2.10:5060", expires=300, at=NOW,
                 address="192.0.2.10"):
    return {"type": "registration", "user_id": user_id, "contact": contact,
            "source_address": address, "source_port": 5060, "transport": "udp",
            "user_agent": "test phone", "expires": expires, "at": at}


def test_enrolled_edge_authenticates_by_token_until_revoked(session):
    edge, token = edges.enroll_edge(session, ROOT, name="edge-1")
    assert edges.authenticate_edge(session, token).id == edge.id
    assert edges.authenticate_edge(session, token[:-1]) is None
    assert edges.authenticate_edge(session, "tlk_" + token[4:]) is None  # an API key's shape
    with pytest.raises(Conflict):
        edges.enroll_edge(session, ROOT, name="edge-1")
    session.rollback()
    edges.revoke_edge(session, ROOT, edge.id)
    assert edges.authenticate_edge(session, token) is None


def test_a_batch_sent_twice_is_applied_once(session, edge):
    failure = {"type": "auth_failure", "address": "192.0.2.7", "user_id": "12345101",
               "reason": "wrong_password", "at": NOW}
    for _ in range(3):
        edges.ingest_events(session, edge, batch_id="b1", events=[failure, failure])
    window = session.get(bans.FailureWindow, "192.0.2.7")
    assert window.failures == 2


def test_registrations_show_both_endpoints_and_expire(session, extension, edge):
    extensions.set_dual_registration(session, ROOT, "12345", "101", enabled=True)
    edges.ingest_events(session, edge, batch_id="b1", events=[
        registration("12345101"), registration("12345101r", "sip:soft@192.0.2.11", 60)])
    regs = session.scalars(edges.list_registrations(session, ROOT, "12345", now=NOW)).all()
    assert [(r.user_id, r.endpoint) for r in regs] == [("12345101", "home"), ("12345101r", "remote")]
    later = NOW + dt.timedelta(seconds=120)  # the edge died; the remote binding expired
    regs = session.scalars(edges.list_registrations(session, ROOT, "12345", now=later)).all()
    assert [r.user_id for r in regs] == ["12345101"]


def test_refresh_updates_one_binding_and_unregister_removes_it(session, extension, edge):
    edges.ingest_events(session, edge, batch_id="b1", events=[registration("12345101")])
    edges.ingest_events(session, edge, batch_id="b2", events=[
        registration("12345101", expires=600, at=NOW + dt.timedelta(seconds=200))])
    [reg] = session.scalars(select(Registration)).all()
    assert reg.expires_at == NOW + dt.timedelta(seconds=800)
    edges.ingest_events(session, edge, batch_id="b3", events=[
        {"type": "unregistration", "user_id": "12345101", "contact": reg.contact}])
    assert session.scalars(select(Registration)).all() == []


def test_registration_of_an_unknown_user_id_is_ignored(session, extension, edge):
    result = edges.ingest_events(session, edge, batch_id="b1",
                                 events=[registration("12345101r")])  # dual registration off
    assert result["ignored"][0]["index"] == 0
    assert session.scalars(select(Registration)).all() == []


def test_ring_mode_dialled_on_a_phone_is_persisted_and_audited(session, extension, edge):
    extensions.set_dual_registration(session, ROOT, "12345", "101", enabled=True)
    edges.ingest_events(session, edge, batch_id="b1", events=[
        {"type": "ring_mode", "user_id": "12345101r", "mode": "remote", "at": NOW}])
    session.expire_all()
    assert extensions.get_extension(session, ROOT, "12345", "101").ring_mode == "remote"
    from tenants.models import AuditEvent

    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "extension.update")
                            .order_by(AuditEvent.id.desc())).first()
    assert event.actor_name == "edge:edge-1" and event.details["ring_mode"] == ["both", "remote"]


def test_ring_mode_refused_without_dual_registration_is_reported(session, extension, edge):
    result = edges.ingest_events(session, edge, batch_id="b1", events=[
        {"type": "ring_mode", "user_id": "12345101", "mode": "both", "at": NOW}])
    assert "dual registration" in result["ignored"][0]["reason"]


def test_heartbeat_records_the_applied_version_and_addresses(session, edge):
    edges.ingest_events(session, edge, batch_id="b1", events=[
        {"type": "heartbeat", "applied_version": 7, "addresses": ["127.0.0.1"], "at": NOW}])
    edges.ingest_events(session, edge, batch_id="b2", events=[
        {"type": "heartbeat", "applied_version": 5, "at": NOW}])  # late and out of order
    assert (edge.applied_version, edge.addresses) == (7, ["127.0.0.1"])


def test_the_edges_own_addresses_are_never_banned(session, edge):
    edges.ingest_events(session, edge, batch_id="b1", events=[
        {"type": "heartbeat", "applied_version": 0, "addresses": ["127.0.0.1"], "at": NOW}])
    events = [{"type": "auth_failure", "address": address, "user_id": f"1234510{i}",
               "reason": "unknown_user", "at": NOW + dt.timedelta(seconds=i)}
              for address in ("127.0.0.1", "127.0.0.2") for i in range(6)]
    edges.ingest_events(session, edge, batch_id="b2", events=events)
    banned = session.scalars(select(Ban.source)).all()
    assert banned == ["127.0.0.2"]  # loopback is not special: only the edge's own address


def test_registrations_shelter_an_office_from_a_whole_ban(session, extension, edge):
    extensions.create_extension(session, ROOT, "12345", number="102", name="Bob")
    edges.ingest_events(session, edge, batch_id="b1", events=[
        registration("12345102", address="198.51.100.9")])
    failures = [{"type": "auth_failure", "address": "198.51.100.9", "user_id": "12345101",
                 "reason": "wrong_password", "at": NOW + dt.timedelta(seconds=i)} for i in range(5)]
    edges.ingest_events(session, edge, batch_id="b2", events=failures)
    [ban] = session.scalars(select(Ban)).all()
    assert (ban.source, ban.user_id) == ("198.51.100.9", "12345101")


@pytest.mark.parametrize("registered", ["12345102", "12345199"])  # the second: no such ID
def test_only_a_registration_applied_shelters_the_failures_of_its_own_batch(
    session, extension, edge, registered
):
    # The batch's registration is decided with its failures; refused (an ID deleted since),
    # it is withdrawn and the source decided again without it.
    extensions.create_extension(session, ROOT, "12345", number="102", name="Bob")
    failures = [{"type": "auth_failure", "address": "198.51.100.9", "user_id": "12345101",
                 "reason": "wrong_password", "at": NOW + dt.timedelta(seconds=1 + i)}
                for i in range(5)]
    result = edges.ingest_events(session, edge, batch_id="b1", events=[
        registration(registered, address="198.51.100.9"), *failures])
    [ban] = session.scalars(select(Ban)).all()
    if registered == "12345102":
        assert result["ignored"] == []
        assert (ban.source, ban.user_id) == ("198.51.100.9", "12345101")  # a pair lockout
    else:
        assert [entry["index"] for entry in result["ignored"]] == [0]
        assert (ban.source, ban.user_id) == ("198.51.100.9", None)  # the whole address
        assert session.scalars(select(bans.SourceRegistration)).all() == []


def test_reload_writes_a_version_and_reports_who_applied_it(session, tenant, edge):
    version = edges.request_reload(session, ROOT, "12345")
    status = edges.reload_status(session, ROOT, "12345", version)
    assert (status["applied"], status["total"]) == (0, 1)
    edges.ingest_events(session, edge, batch_id="b1", events=[
        {"type": "heartbeat", "applied_version": version, "at": utcnow()}])
    assert edges.reload_status(session, ROOT, "12345", version)["applied"] == 1


def test_maintenance_forgets_old_batches_and_bindings(session, extension, edge):
    from tenants.models import EdgeBatch
    from tenants.services import maintenance

    edges.ingest_events(session, edge, batch_id="b1", events=[registration("12345101")])
    maintenance.run(session, NOW + dt.timedelta(days=2))
    assert session.scalars(select(EdgeBatch)).all() == []
    assert session.scalars(select(Registration)).all() == []
    # the batch id is forgotten, so the same id is a new batch again
    assert edges.ingest_events(session, edge, batch_id="b1", events=[])["duplicate"] is False


def status(session, now=NOW):
    return [(r.user_id, r.edge.name) for r in
            session.scalars(edges.list_registrations(session, ROOT, "12345", now=now))]


def test_disabling_dual_registration_drops_the_remote_registrations_at_once(
        session, extension, edge):
    extensions.set_dual_registration(session, ROOT, "12345", "101", enabled=True)
    edges.ingest_events(session, edge, batch_id="b1", events=[
        registration("12345101"), registration("12345101r", "sip:soft@192.0.2.11")])
    extensions.set_dual_registration(session, ROOT, "12345", "101", enabled=False)
    assert status(session) == [("12345101", "edge-1")]


def test_rotating_credentials_drops_the_extensions_registrations(session, extension, edge):
    extensions.set_dual_registration(session, ROOT, "12345", "101", enabled=True)
    edges.ingest_events(session, edge, batch_id="b1", events=[
        registration("12345101"), registration("12345101r", "sip:soft@192.0.2.11")])
    extensions.create_extension(session, ROOT, "12345", number="102", name="Bob")
    edges.ingest_events(session, edge, batch_id="b2", events=[registration("12345102")])
    extensions.rotate_credentials(session, ROOT, "12345", "101")
    assert status(session) == [("12345102", "edge-1")]


def test_deleting_an_extension_drops_its_registrations(session, extension, edge):
    edges.ingest_events(session, edge, batch_id="b1", events=[registration("12345101")])
    extensions.delete_extension(session, ROOT, "12345", "101")
    assert session.scalars(select(Registration)).all() == []


def test_a_phone_that_moves_to_another_edge_shows_once(session, extension, edge):
    other, _token = edges.enroll_edge(session, ROOT, name="edge-2")
    edges.ingest_events(session, edge, batch_id="b1", events=[registration("12345101")])
    edges.ingest_events(session, other, batch_id="b1", events=[
        registration("12345101", at=NOW + dt.timedelta(seconds=30))])
    assert status(session) == [("12345101", "edge-2")]


def test_a_late_registration_from_the_old_edge_does_not_take_the_phone_back(
        session, extension, edge):
    other, _token = edges.enroll_edge(session, ROOT, name="edge-2")
    edges.ingest_events(session, other, batch_id="b1", events=[
        registration("12345101", at=NOW + dt.timedelta(seconds=30))])
    result = edges.ingest_events(session, edge, batch_id="b1", events=[registration("12345101")])
    assert "later registration" in result["ignored"][0]["reason"]
    assert status(session) == [("12345101", "edge-2")]


def test_another_contact_of_the_same_user_id_on_another_edge_stays(session, extension, edge):
    other, _token = edges.enroll_edge(session, ROOT, name="edge-2")
    edges.ingest_events(session, edge, batch_id="b1", events=[registration("12345101")])
    edges.ingest_events(session, other, batch_id="b1", events=[
        registration("12345101", contact="sip:second-phone@192.0.2.12")])
    assert sorted(status(session)) == [("12345101", "edge-1"), ("12345101", "edge-2")]
