"""/bans, /ban-policy and trusted networks over HTTP, with bans made by the engine."""

import datetime as dt

import pytest

from tenants.models import utcnow
from tenants.services import bans as engine

from .checks import assert_error, error_fields, pagination


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


def test_tenant_sees_its_own_lift_in_its_audit_log(api, world):
    tenant = api.as_(world["tenant"])
    fail_times(api.client.application, "192.0.2.7", ["12345101"] * 5)
    assert tenant.delete("/bans/192.0.2.7").status_code == 204
    for key in ("tenant", "reseller"):
        events = api.ok(api.as_(world[key]).get("/audit-events?action=ban.update"), 200)
        assert [e["object_id"] for e in events] == ["192.0.2.7"]
    assert api.ok(api.as_(world["other"]).get("/audit-events?action=ban.update"), 200) == []


def test_tenant_sees_a_manual_lockout_of_its_user_id_in_its_audit_log(api, world):
    api.ok(api.post("/bans", {"address": "192.0.2.8", "user_id": "12345101"}), 201)
    events = api.ok(api.as_(world["tenant"]).get("/audit-events?action=ban.create"), 200)
    assert [e["details"]["user_id"] for e in events] == ["12345101"]
    assert api.ok(api.as_(world["other"]).get("/audit-events?action=ban.create"), 200) == []


def test_another_tenant_gets_404(api, world):
    fail_times(api.client.application, "192.0.2.7", ["12345101"] * 5)
    other = api.as_(world["other"])
    assert api.ok(other.get("/bans"), 200) == []
    assert other.delete("/bans/192.0.2.7").status_code == 404


def test_a_tenant_sees_only_its_own_user_ids_in_a_scan_that_banned_it(api, world):
    fail_times(api.client.application, "192.0.2.7",
               ["12345101", "54321101", "12345102", "54321102", "12345103"])
    [mine] = api.ok(api.as_(world["tenant"]).get("/bans"), 200)
    assert mine["user_ids"] == ["12345101", "12345102", "12345103"]
    [theirs] = api.ok(api.as_(world["other"]).get("/bans"), 200)
    assert theirs["user_ids"] == ["54321101", "54321102"]
    [everything] = api.ok(api.get("/bans"), 200)
    assert len(everything["user_ids"]) == 5


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
    ({"address": "1" * 65}, "address"),
    ({"address": ""}, "address"),
    ({"address": "192.0.2.1", "user_id": "1" * 65}, "user_id"),
    ({"address": "192.0.2.1", "user_id": ""}, "user_id"),
    ({"address": "192.0.2.1", "reason": "x" * 201}, "reason"),
    ({"address": "192.0.2.1", "reason": ""}, "reason"),
    ({"address": "192.0.2.1", "duration": 0}, "duration"),
    ({"address": "192.0.2.1", "bogus": 1}, "bogus"),
    ({}, "address"),
])
def test_bad_manual_bans_name_the_field(api, body, field):
    response = api.post("/bans", body)
    assert response.status_code == 422
    assert field in response.get_json()["errors"]["json"]


def test_manual_ban_takes_strings_as_long_as_their_columns(api):
    body = {"address": "192.0.2.1", "user_id": "1" * 64, "reason": "x" * 200}
    created = api.ok(api.post("/bans", body), 201)
    assert (created["user_id"], created["reason"]) == (body["user_id"], body["reason"])


@pytest.mark.parametrize("path, field", [
    ("/bans?user_id=" + "1" * 65, "user_id"),
    ("/bans?address=" + "1" * 65, "address"),
    ("/auth-failures?address=" + "1" * 65, "address"),
])
def test_too_long_query_strings_name_the_field(api, path, field):
    response = api.get(path)
    assert response.status_code == 422
    assert field in response.get_json()["errors"]["query"]


def test_too_long_user_id_of_a_lift_names_the_field(api):
    response = api.delete("/bans/192.0.2.1?user_id=" + "1" * 65)
    assert response.status_code == 422
    assert "user_id" in response.get_json()["errors"]["query"]


def test_too_long_trusted_network_names_the_field(api, world):
    cidr = "2001:0db8:0000:0000:0000:0000:0000:0000/" + "0" * 30 + "64"
    for path in ("/trusted-networks", "/tenants/12345/trusted-networks"):
        assert_error(api.post(path, {"cidr": cidr}), 422, "cidr")
        assert_error(api.post(path, {"cidr": "192.0.2.0/24", "description": "x" * 201}), 422,
                     "description")


def test_ban_policy_is_read_and_changed_by_the_platform(api, world):
    policy = api.ok(api.get("/ban-policy"), 200)
    assert policy["max_retry"] == 5 and policy["find_time"] == 600
    changed = {**policy, "max_retry": 3, "ban_time": 60}
    assert api.ok(api.put("/ban-policy", changed), 200)["max_retry"] == 3
    assert api.as_(world["reseller"]).put("/ban-policy", changed).status_code == 403
    bad = api.put("/ban-policy", {**changed, "max_ban_time": 10})
    assert bad.status_code == 422 and "max_ban_time" in bad.get_json()["errors"]["json"]


@pytest.mark.parametrize("role", ["tenant", "reseller"])
def test_ban_policy_is_refused_to_others_like_every_platform_only_read(api, world, role):
    client = api.as_(world[role])
    refused = assert_error(client.get("/ban-policy"), 403)
    platform_only = assert_error(client.get("/trusted-networks"), 403)
    assert error_fields(refused) == error_fields(platform_only) == set()


@pytest.mark.parametrize("name", ["max_retry", "scan_user_ids"])
def test_ban_policy_counting_more_failures_than_are_kept_names_the_field(api, name):
    policy = api.ok(api.get("/ban-policy"), 200)
    assert api.ok(api.put("/ban-policy", {**policy, name: engine.RECENT_CAP}), 200)
    response = api.put("/ban-policy", {**policy, name: engine.RECENT_CAP + 1})
    assert_error(response, 422, name)


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


# GET /auth-failures: the failure windows behind (and before) the bans.


def test_get_auth_failures_shows_each_sources_window(api, world):
    fail_times(api.client.application, "192.0.2.7", ["12345101", "12345102"])
    [shown] = api.ok(api.get("/auth-failures"), 200)
    assert shown["address"] == "192.0.2.7" and shown["failures"] == 2
    assert shown["recent_failures"] == 2 and shown["reasons"] == {"wrong_password": 2}
    assert shown["user_ids"] == ["12345101", "12345102"] and shown["other_user_ids"] is False
    assert shown["edges"] == ["edge-a"]
    assert shown["first_attempt_at"] < shown["last_attempt_at"]
    assert (shown["trusted"], shown["banned"], shown["locked_out"]) == (None, False, [])


def test_get_auth_failures_shows_failures_from_trusted_networks(api, world):
    api.ok(api.post("/trusted-networks", {"cidr": "203.0.113.0/24"}), 201)
    fail_times(api.client.application, "203.0.113.5", [f"1234510{i}" for i in range(8)])
    [shown] = api.ok(api.get("/auth-failures"), 200)
    assert (shown["failures"], shown["trusted"], shown["banned"]) == (8, "platform", False)
    assert api.ok(api.get("/bans"), 200) == []


def test_get_auth_failures_shows_a_tenants_trusted_office_and_its_lockout(api, world):
    tenant = api.as_(world["tenant"])
    api.ok(tenant.post("/tenants/12345/trusted-networks", {"cidr": "198.51.100.0/24"}), 201)
    fail_times(api.client.application, "198.51.100.9", ["12345101"] * 5)
    [shown] = api.ok(tenant.get("/auth-failures"), 200)
    assert (shown["trusted"], shown["banned"], shown["locked_out"]) == (
        "tenant", False, ["12345101"])


def test_get_auth_failures_shows_a_banned_source(api, world):
    fail_times(api.client.application, "192.0.2.7", ["12345101"] * 5)
    [shown] = api.ok(api.get("/auth-failures"), 200)
    assert shown["banned"] is True and shown["recent_failures"] == 0


def test_get_auth_failures_is_scoped_like_the_bans(api, world):
    fail_times(api.client.application, "192.0.2.7", ["12345101"] * 2)
    fail_times(api.client.application, "192.0.2.8", ["54321101"] * 2)
    seen = {role: [f["address"] for f in api.ok(api.as_(world[role]).get("/auth-failures"), 200)]
            for role in world}
    assert seen == {"tenant": ["192.0.2.7"], "reseller": ["192.0.2.7"], "other": ["192.0.2.8"]}
    assert len(api.ok(api.get("/auth-failures"), 200)) == 2


def test_get_auth_failures_of_an_address_outside_the_scope_lists_nothing(api, world):
    fail_times(api.client.application, "192.0.2.8", ["54321101"] * 2)
    response = api.as_(world["tenant"]).get("/auth-failures?address=192.0.2.8")
    assert api.ok(response, 200) == [] and pagination(response)["total"] == 0


def test_get_auth_failures_shows_a_tenant_only_its_own_user_ids(api, world):
    fail_times(api.client.application, "192.0.2.7", ["12345101", "54321101", "nobody"])
    [mine] = api.ok(api.as_(world["tenant"]).get("/auth-failures"), 200)
    assert mine["user_ids"] == ["12345101"] and mine["other_user_ids"] is True
    [everything] = api.ok(api.get("/auth-failures"), 200)
    assert everything["user_ids"] == ["12345101", "54321101", "nobody"]
    assert everything["other_user_ids"] is True  # "nobody" is no tenant's


def test_get_auth_failures_filters_by_address(api, world):
    fail_times(api.client.application, "192.0.2.7", ["12345101"])
    fail_times(api.client.application, "2001:db8:5:6::77", ["12345101"])
    [v4] = api.ok(api.get("/auth-failures?address=::ffff:192.0.2.7"), 200)
    [v6] = api.ok(api.get("/auth-failures?address=2001:db8:5:6::1"), 200)
    assert (v4["address"], v6["address"]) == ("192.0.2.7", "2001:db8:5:6::/64")
    assert_error(api.get("/auth-failures?address=not-an-ip"), 422, "address")


def test_get_auth_failures_is_paginated(api, world):
    for i in range(3):
        fail_times(api.client.application, f"192.0.2.{i + 1}", ["12345101"])
    response = api.get("/auth-failures?page=2&page_size=2")
    assert len(api.ok(response, 200)) == 1
    assert pagination(response)["total"] == 3
