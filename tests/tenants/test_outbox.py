"""Every change the edges need is in the outbox, written in the same transaction."""

import pytest
from sqlalchemy import select

from tenants.errors import Conflict
from tenants.models import OutboxEntry
from tenants.services import bans, extensions, queues, ring_groups, tenants, trunks

from .conftest import ROOT


def entries(session, after=0):
    return session.scalars(
        select(OutboxEntry).where(OutboxEntry.version > after).order_by(OutboxEntry.version)
    ).all()


def last_version(session):
    found = entries(session)
    return found[-1].version if found else 0


def test_create_extension_records_its_identities_with_ha1s(session, tenant):
    before = last_version(session)
    ext = extensions.create_extension(session, ROOT, "12345", number="101", name="Alice")
    [entry] = entries(session, before)
    assert (entry.kind, entry.key, entry.op) == ("extension", "12345101", "upsert")
    [home] = entry.payload["identities"]
    assert home == {"user_id": "12345101", "endpoint": "home",
                    "ha1_md5": ext.ha1_md5, "ha1_sha256": ext.ha1_sha256}
    assert "password" not in str(entry.payload)


def test_versions_grow_by_one_per_entry(session, tenant):
    for number in ("101", "102", "103"):
        extensions.create_extension(session, ROOT, "12345", number=number, name=number)
    versions = [e.version for e in entries(session)]
    assert versions == list(range(versions[0], versions[0] + len(versions)))


def test_dual_registration_adds_the_remote_identity(session, extension):
    before = last_version(session)
    extensions.set_dual_registration(session, ROOT, "12345", "101", enabled=True, sip_peer=True)
    [entry] = entries(session, before)
    assert [i["user_id"] for i in entry.payload["identities"]] == ["12345101", "12345101r"]
    assert entry.payload["ring_mode"] == "both"
    assert entry.payload["dual_registration"]["enabled"] is True


def test_disabling_dual_registration_removes_the_remote_identity(session, extension):
    extensions.set_dual_registration(session, ROOT, "12345", "101", enabled=True, sip_peer=True)
    before = last_version(session)
    extensions.set_dual_registration(session, ROOT, "12345", "101", enabled=False)
    [entry] = entries(session, before)
    assert [i["user_id"] for i in entry.payload["identities"]] == ["12345101"]
    assert entry.payload["ring_mode"] == "home"


def test_rotation_changes_the_ha1s_the_edges_get(session, extension):
    old = extension.ha1_md5
    before = last_version(session)
    extensions.rotate_credentials(session, ROOT, "12345", "101")
    [entry] = entries(session, before)
    assert entry.payload["identities"][0]["ha1_md5"] not in (old, None)


def test_ring_mode_and_call_handling_reach_the_outbox(session, extension):
    extensions.set_dual_registration(session, ROOT, "12345", "101", enabled=True, sip_peer=True)
    before = last_version(session)
    extensions.set_ring_mode(session, ROOT, "12345", "101", mode="remote")
    extensions.update_extension(session, ROOT, "12345", "101", concurrent_call_limit=4,
                                forwarding={"busy": {"enabled": True, "destination": "200"}})
    first, second = entries(session, before)
    assert first.payload["ring_mode"] == "remote"
    assert second.payload["concurrent_call_limit"] == 4
    assert second.payload["forwarding"]["busy"] == {"enabled": True, "destination": "200"}


def test_group_subscription_records_extension_and_group(session, extension):
    ring_groups.create_ring_group(session, ROOT, "12345", number="600", name="Sales")
    before = last_version(session)
    extensions.update_extension(session, ROOT, "12345", "101", ring_groups=["600"])
    found = {(e.kind, e.key): e.payload for e in entries(session, before)}
    assert found[("extension", "12345101")]["ring_groups"] == ["600"]
    assert found[("ring_group", "12345/600")]["members"] == ["101"]


def test_tenant_feature_codes_and_trunks_reach_the_outbox(session, tenant):
    before = last_version(session)
    trunks.create_trunk(session, ROOT, "12345", name="gw", gateway="gw.example:5060")
    tenants.update_tenant(session, ROOT, "12345", feature_codes={"ring_mode": "*36"})
    first, second = entries(session, before)
    assert first.payload["trunks"] == [{"name": "gw", "gateway": "gw.example:5060"}]
    assert second.payload["feature_codes"]["ring_mode"] == "*36"


def test_deletions_are_recorded(session, extension):
    before = last_version(session)
    extensions.delete_extension(session, ROOT, "12345", "101")
    tenants.delete_tenant(session, ROOT, "12345")
    found = [(e.kind, e.key, e.op, e.payload) for e in entries(session, before)]
    assert found == [("extension", "12345101", "delete", None),
                     ("tenant", "12345", "delete", None)]


def test_deleting_a_tenant_deletes_everything_of_it_the_edges_hold(session, extension):
    extensions.create_extension(session, ROOT, "12345", number="102", name="Bob")
    ring_groups.create_ring_group(session, ROOT, "12345", number="600", name="Sales")
    queues.create_queue(session, ROOT, "12345", number="700", name="Hotline")
    office = bans.add_trusted_network(session, ROOT, "12345", cidr="198.51.100.0/24")
    platform_wide = bans.add_trusted_network(session, ROOT, cidr="203.0.113.0/24")
    tenant_id = extension.tenant_id
    before = last_version(session)
    tenants.delete_tenant(session, ROOT, "12345")
    found = [(e.kind, e.key, e.op, e.payload, e.tenant_id) for e in entries(session, before)]
    assert found[-1] == ("tenant", "12345", "delete", None, tenant_id)
    assert sorted(found[:-1]) == [
        ("extension", "12345101", "delete", None, tenant_id),
        ("extension", "12345102", "delete", None, tenant_id),
        ("queue", "12345/700", "delete", None, tenant_id),
        ("ring_group", "12345/600", "delete", None, tenant_id),
        ("trusted_network", str(office.id), "delete", None, tenant_id),
    ]
    assert str(platform_wide.id) not in [key for _kind, key, *_ in found]


def test_a_refused_change_records_nothing(session, extension):
    before = last_version(session)
    with pytest.raises(Conflict):
        extensions.set_ring_mode(session, ROOT, "12345", "101", mode="both")
    session.rollback()
    with pytest.raises(Conflict):
        extensions.create_extension(session, ROOT, "12345", number="101", name="again")
    session.rollback()
    assert entries(session, before) == []


def test_a_rolled_back_transaction_records_nothing(session, extension):
    before = last_version(session)
    ext = extensions.get_extension(session, ROOT, "12345", "101")
    ext.name = "changed"
    from tenants import outbox

    outbox.record_change(session, "extension", ext)
    session.rollback()
    session.commit()
    assert entries(session, before) == []
