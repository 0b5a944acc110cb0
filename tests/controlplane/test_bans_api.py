"""/bans, /ban-policy and trusted networks over HTTP, with bans made by the engine."""

import datetime as dt

import pytest

from tenants.models import utcnow
from tenants.services import bans as engine


@pytest.fixture
def world(api, app):
    reseller = api.reseller("R")
    mine = api.tenant("Mine", reseller_id=reseller["id"], trunk_number="12345")
    other = api.tenant("Other", trunk_number="54321")
    keys = {
        "tenant": api.key("tenant", trunk_number=mine["trunk_number"]),
        "other": api.key("tenant", trunk_number=other["trunk_number"]),
        "reseller": api.key("reseller", reseller_id=reseller["id"]),
    }
    return keys


def fail_times(app, address, user_ids):
    now = utcnow()
    with app.extensions["trunkline"]["sessions"]() as s:
        for i, user_id in enumerate(user_ids):
            engine.record_failure(s, address=address, user_id=user_id, reason="wrong_password",
                                  at=now - dt.timedelta(seconds=len(user_ids) - i), edge="edge-a")


def test_get_bans_says_why(api, app, world):
    fail_times(app, "192.0.2.7", ["12345101"] * 5)
    [ban] = api.ok(api.get("/bans"), 200)
    assert ban["address"] == "192.0.2.7" and ban["kind"] == "address"
    assert ban["user_ids"] == ["12345101"] and ban["failures"] == 5
    assert ban["edges"] == ["edge-a"] and ban["until"] > ban["since"]


def test_tenant_sees_its_own_ban_and_lifts_it(api, world):
    tenant = api.as_(world["tenant"])
    fail_times(api.client.application, "192.0.2.7", ["12345101"] * 5)
    assert len(api.ok(tenant.get("/bans"), 200)) == 1
    assert tenant.delete("/bans/192.0.2.7").status_code == 204
    assert api.ok(api.get("/bans"), 200) == []
    events = api.ok(api.get("/audit-events?action=ban.update"), 200)
    assert events[0]["actor_name"] == "tenant key"


def test_another_tenant_gets_404(api, world):
    fail_times(api.client.application, "192.0.2.7", ["12345101"] * 5)
    other = api.as_(world["other"])
    assert api.ok(other.get("/bans"), 200) == []
    assert other.delete("/bans/192.0.2.7").status_code == 404


def test_a_scan_over_tenants_is_not_liftable_by_one_of_them(api, world):
    fail_times(api.client.application, "192.0.2.7",
               ["12345101", "54321101", "12345102", "54321102", "12345103"])
    response = api.as_(world["tenant"]).delete("/bans/192.0.2.7")
    assert response.status_code == 403
    assert api.as_(world["reseller"]).delete("/bans/192.0.2.7").status_code == 403
    assert api.delete("/bans/192.0.2.7").status_code == 204


def test_manual_ban_is_platform_only_and_audited(api, world):
    created = api.ok(api.post("/bans", {"address": "198.51.100.4", "duration": 120,
                                        "reason": "abuse desk"}), 201)
    assert created["manual"] is True and created["reason"] == "abuse desk"
    assert api.as_(world["reseller"]).post("/bans", {"address": "198.51.100.5"}).status_code == 403
    assert api.post("/bans", {"address": "198.51.100.4"}).status_code == 409
    actions = [e["action"] for e in api.ok(api.get("/audit-events"), 200)]
    assert "ban.create" in actions


def test_ipv6_bans_are_addressed_by_their_prefix(api, world):
    api.ok(api.post("/bans", {"address": "2001:db8:5:6::77"}), 201)
    [ban] = api.ok(api.get("/bans?address=2001:db8:5:6::1"), 200)
    assert ban["address"] == "2001:db8:5:6::/64"
    assert api.delete("/bans/2001:db8:5:6::/64").status_code == 204


@pytest.mark.parametrize("body, field", [
    ({"address": "not-an-ip"}, "address"),
    ({"address": "192.0.2.1", "duration": 0}, "duration"),
    ({"address": "192.0.2.1", "bogus": 1}, "bogus"),
    ({}, "address"),
])
def test_bad_manual_bans_name_the_field(api, body, field):
    response = api.post("/bans", body)
    assert response.status_code == 422
    assert field in response.get_json()["errors"]["json"]


def test_ban_policy_is_read_and_changed_by_the_platform(api, world):
    policy = api.ok(api.get("/ban-policy"), 200)
    assert policy["max_retry"] == 5 and policy["find_time"] == 600
    changed = {**policy, "max_retry": 3, "ban_time": 60}
    assert api.ok(api.put("/ban-policy", changed), 200)["max_retry"] == 3
    assert api.as_(world["reseller"]).put("/ban-policy", changed).status_code == 403
    bad = api.put("/ban-policy", {**changed, "max_ban_time": 10})
    assert bad.status_code == 422 and "max_ban_time" in bad.get_json()["errors"]["json"]


def test_tenant_trusted_networks(api, world):
    tenant = api.as_(world["tenant"])
    created = api.ok(tenant.post("/tenants/12345/trusted-networks",
                                 {"cidr": "198.51.100.0/24", "description": "office"}), 201)
    assert created["cidr"] == "198.51.100.0/24"
    assert tenant.post("/tenants/12345/trusted-networks",
                       {"cidr": "0.0.0.0/0"}).status_code == 422
    assert tenant.post("/tenants/12345/trusted-networks",
                       {"cidr": "198.51.100.0/24"}).status_code == 409
    other = api.as_(world["other"])
    assert other.get("/tenants/12345/trusted-networks").status_code == 404
    assert other.delete(f"/tenants/12345/trusted-networks/{created['id']}").status_code == 404
    assert tenant.delete(f"/tenants/12345/trusted-networks/{created['id']}").status_code == 204
    assert tenant.get("/trusted-networks").status_code == 403
