import datetime as dt

import pytest

from tenants import feed
from tenants.models import utcnow
from tenants.services import bans, extensions, ring_groups, tenants, trunks

from .conftest import ROOT


def snapshot_records(session, **kw):
    return list(feed.snapshot(session, now=utcnow(), **kw))


def test_snapshot_carries_every_kind_with_its_version(session, extension):
    trunks.create_trunk(session, ROOT, "12345", name="gw", gateway="gw.example")
    ring_groups.create_ring_group(session, ROOT, "12345", number="600", name="Sales")
    extensions.update_extension(session, ROOT, "12345", "101", ring_groups=["600"])
    extensions.set_dual_registration(session, ROOT, "12345", "101", enabled=True)
    bans.ban_by_hand(session, ROOT, address="192.0.2.1")
    bans.add_trusted_network(session, ROOT, cidr="198.51.100.0/24")
    records = snapshot_records(session)
    begin, *objects, end = records
    assert begin["type"] == "begin" and end["type"] == "end"
    assert begin["version"] == end["version"] == feed.current_version(session)
    assert end["count"] == len(objects)
    kinds = {r["kind"] for r in objects}
    assert kinds == {"ban_policy", "ban", "trusted_network", "tenant", "ring_group", "extension"}
    [ext] = [r for r in objects if r["kind"] == "extension"]
    assert [i["user_id"] for i in ext["payload"]["identities"]] == ["12345101", "12345101r"]
    # the group section loaded members' numbers only; the extension record is still whole
    assert ext["payload"]["ring_groups"] == ["600"] and ext["payload"]["realm"]
    [group] = [r for r in objects if r["kind"] == "ring_group"]
    assert group["payload"]["members"] == ["101"]


def test_snapshot_of_one_tenant_leaves_the_others_out(session, extension):
    other = tenants.create_tenant(session, ROOT, name="Other", trunk_number="54321")
    extensions.create_extension(session, ROOT, other.trunk_number, number="200", name="B")
    keys = {(r.get("kind"), r.get("key")) for r in snapshot_records(session, trunk_number="12345")}
    assert ("extension", "12345101") in keys and ("extension", "54321200") not in keys
    assert ("ban_policy", "platform") not in keys


def test_snapshot_streams_many_extensions(session, tenant, monkeypatch):
    monkeypatch.setattr(feed, "CHUNK", 7)  # several chunks
    for n in range(30):
        extensions.create_extension(session, ROOT, "12345", number=f"{100 + n}", name=str(n))
    records = snapshot_records(session)
    numbers = [r["payload"]["number"] for r in records if r.get("kind") == "extension"]
    assert numbers == [str(100 + n) for n in range(30)]


def test_changes_after_a_version_in_order(session, extension):
    start = feed.current_version(session)
    extensions.update_extension(session, ROOT, "12345", "101", name="Bob")
    extensions.rotate_credentials(session, ROOT, "12345", "101")
    entries, latest = feed.changes_after(session, start)
    assert [e.version for e in entries] == [start + 1, start + 2] and latest == start + 2
    assert entries[0].payload["number"] == "101"
    entries, _ = feed.changes_after(session, start, limit=1)
    assert len(entries) == 1


def test_pruned_versions_are_gone(session, extension):
    version = feed.current_version(session)
    later = utcnow() + dt.timedelta(days=8)
    assert feed.prune(session, now=later) == version
    with pytest.raises(feed.Gone):
        feed.changes_after(session, version - 1)
    entries, latest = feed.changes_after(session, version)
    assert entries == [] and latest == version
