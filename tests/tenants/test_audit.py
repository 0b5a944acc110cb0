import datetime as dt

from sqlalchemy import select

from tenants.models import AuditEvent, Role, utcnow
from tenants.scope import Principal
from tenants.services import audit_log, edges, extensions, resellers, ring_groups, tenants

from .conftest import ROOT


def events(session, action=None):
    stmt = select(AuditEvent).order_by(AuditEvent.id)
    if action:
        stmt = stmt.where(AuditEvent.action == action)
    return session.scalars(stmt).all()


def test_every_write_is_audited_with_its_actor(session, tenant):
    actor = Principal(role=Role.PLATFORM, name="ops", key_id="abc123")
    session.info["principal"] = actor
    extensions.create_extension(session, actor, "12345", number="101", name="Alice")
    extensions.update_extension(session, actor, "12345", "101", name="Alice B")
    extensions.delete_extension(session, actor, "12345", "101")
    found = [(e.action, e.object_id, e.actor_key_id, e.actor_name)
             for e in events(session) if e.object_type == "extension"]
    assert found == [
        ("extension.create", "101", "abc123", "ops"),
        ("extension.update", "101", "abc123", "ops"),
        ("extension.delete", "101", "abc123", "ops"),
    ]
    [update] = events(session, "extension.update")
    assert update.details == {"name": ["Alice", "Alice B"]}
    assert update.tenant_id == tenant.id


def test_audit_never_holds_secrets(session, extension):
    creds = extensions.reveal_credentials(session, ROOT, "12345", "101")
    extensions.rotate_credentials(session, ROOT, "12345", "101")
    extensions.update_extension(session, ROOT, "12345", "101", voicemail={"pin": "4321"})
    text = " ".join(str(e.details) for e in events(session))
    for secret in (creds["password"], extension.ha1_md5, extension.ha1_sha256,
                   extension.password_enc, "4321"):
        assert secret not in text
    assert "(changed)" in text and "(secret)" in text


def test_reveal_and_rotation_are_audited(session, extension):
    extensions.reveal_credentials(session, ROOT, "12345", "101")
    extensions.rotate_credentials(session, ROOT, "12345", "101")
    assert [e.object_id for e in events(session, "sip_credentials.reveal")] == ["101"]
    assert [e.object_id for e in events(session, "sip_credentials.rotate")] == ["101"]


def test_a_refused_write_leaves_no_audit_record(session, extension):
    count = len(events(session))
    try:
        extensions.create_extension(session, ROOT, "12345", number="101", name="dup")
    except Exception:
        session.rollback()
    assert len(events(session)) == count


def test_audit_log_is_scoped(session):
    reseller = resellers.create_reseller(session, ROOT, name="R")
    mine = tenants.create_tenant(session, ROOT, name="Mine", reseller_id=reseller.id)
    other = tenants.create_tenant(session, ROOT, name="Other")
    as_reseller = Principal(role=Role.RESELLER, name="r", reseller_id=reseller.id)
    as_tenant = Principal(role=Role.TENANT, name="t", tenant_id=other.id)

    def seen(principal):
        stmt = audit_log.list_audit_events(session, principal)
        return {(e.object_type, e.object_id) for e in session.scalars(stmt)}

    assert seen(as_reseller) == {("reseller", str(reseller.id)), ("tenant", mine.trunk_number)}
    assert seen(as_tenant) == {("tenant", other.trunk_number)}
    assert len(seen(ROOT)) == 3


def test_a_change_of_group_subscriptions_alone_is_audited(session, tenant):
    for number in ("600", "601"):
        ring_groups.create_ring_group(session, ROOT, "12345", number=number, name=number)
    extensions.create_extension(session, ROOT, "12345", number="101", name="Alice",
                                ring_groups=["600"])
    extensions.update_extension(session, ROOT, "12345", "101", ring_groups=["601", "600"])
    extensions.update_extension(session, ROOT, "12345", "101", ring_groups=["601"])
    extensions.update_extension(session, ROOT, "12345", "101", ring_groups=["601"])  # no change
    [created] = events(session, "extension.create")
    assert created.details["ring_groups"] == ["600"]
    assert [e.details for e in events(session, "extension.update")] == [
        {"ring_groups": [["600"], ["600", "601"]]},
        {"ring_groups": [["600", "601"], ["601"]]},
    ]


def test_edge_heartbeats_leave_no_audit_record(session):
    edge, _token = edges.enroll_edge(session, ROOT, name="edge-1")
    for n in range(3):
        edges.ingest_events(session, edge, batch_id=f"b{n}", events=[
            {"type": "heartbeat", "applied_version": n, "addresses": [f"192.0.2.{n}"],
             "at": utcnow()}])
    edges.authenticate_edge(session, _token, now=utcnow() + dt.timedelta(minutes=1))
    assert (edge.applied_version, edge.addresses) == (2, ["192.0.2.2"])
    assert events(session, "edge.update") == []
    edges.revoke_edge(session, ROOT, edge.id)  # a person's act: recorded
    [revoked] = events(session, "edge.update")
    assert list(revoked.details) == ["revoked_at"]
