"""Extensions over HTTP: SIP identities, dual registration, ring modes, credentials,
the tenant's shared dial plan, group subscriptions, forwarding and ACD agent login."""

import pytest

from tests.conftest import REALM

from .checks import assert_error

LOOK_ALIKES = set("0Oo1lI")


@pytest.fixture
def tenant(tenant_a):
    """Tenant A's own key: hosted customers provision themselves."""
    return tenant_a


@pytest.fixture
def ext(tenant):
    return tenant.extension(tenant.trunk, "101", "Alice")


@pytest.fixture
def carrier(tenant):
    return tenant.ok(tenant.post(f"/tenants/{tenant.trunk}/trunks",
                                 {"name": "carrier", "gateway": "sip.carrier.example"}), 201)


def url(tenant, path=""):
    return f"/tenants/{tenant.trunk}/extensions/101{path}"


def put_dual(tenant, **body):
    return tenant.put(url(tenant, "/dual-registration"), body)


def enable_sip_peer(tenant):
    return tenant.ok(put_dual(tenant, enabled=True, sip_peer=True), 200)


# SIP user IDs


@pytest.mark.parametrize("number", ["10", "101", "4711", "123456"])
def test_create_extension_sip_user_id_is_trunk_and_number(tenant, number):
    created = tenant.extension(tenant.trunk, number)
    assert created["sip_user_id"] == tenant.trunk + number
    assert created["remote_user_id"] is None


def test_get_extension_shows_sip_user_id(tenant, ext):
    shown = tenant.get(url(tenant)).get_json()
    assert shown["sip_user_id"] == tenant.trunk + "101"


# Dual registration (the seed's Advanced tab)


@pytest.mark.parametrize("field", ["external_number", "trunk"])
def test_put_dual_registration_sip_peer_with_external_field_is_422(tenant, ext, carrier, field):
    value = {"external_number": "+4930123456", "trunk": "carrier"}[field]
    response = put_dual(tenant, enabled=True, sip_peer=True, **{field: value})
    assert_error(response, 422, field)


@pytest.mark.parametrize("missing", ["external_number", "trunk"])
def test_put_dual_registration_without_sip_peer_missing_field_is_422(tenant, ext, carrier,
                                                                     missing):
    body = {"external_number": "+4930123456", "trunk": "carrier"}
    del body[missing]
    assert_error(put_dual(tenant, enabled=True, sip_peer=False, **body), 422, missing)


@pytest.mark.parametrize("blank", [None, ""])
def test_put_dual_registration_without_sip_peer_blank_fields_is_422(tenant, ext, blank):
    response = put_dual(tenant, enabled=True, sip_peer=False, external_number=blank, trunk=blank)
    assert_error(response, 422, "external_number", "trunk")


def test_put_dual_registration_sip_peer_with_both_fields_names_both(tenant, ext, carrier):
    response = put_dual(tenant, enabled=True, sip_peer=True, external_number="+4930123456",
                        trunk="carrier")
    assert_error(response, 422, "external_number", "trunk")


@pytest.mark.parametrize("blank", [None, ""])
def test_put_dual_registration_sip_peer_with_blank_fields_is_200(tenant, ext, blank):
    response = put_dual(tenant, enabled=True, sip_peer=True, external_number=blank, trunk=blank)
    assert response.status_code == 200, response.get_json()
    assert (response.get_json()["external_number"], response.get_json()["trunk"]) == (None, None)


def test_put_dual_registration_trunk_of_other_tenant_is_422(api, world, tenant, ext):
    api.ok(api.post(f"/tenants/{world.b.trunk}/trunks",
                    {"name": "elsewhere", "gateway": "gw.b.example"}), 201)
    response = put_dual(tenant, enabled=True, sip_peer=False, external_number="+4930123456",
                        trunk="elsewhere")
    assert_error(response, 422, "trunk")


def test_put_dual_registration_invalid_external_number_is_422(tenant, ext, carrier):
    response = put_dual(tenant, enabled=True, sip_peer=False, external_number="mobile",
                        trunk="carrier")
    assert_error(response, 422, "external_number")


def test_put_dual_registration_without_enabled_is_422(tenant, ext):
    assert_error(put_dual(tenant, sip_peer=True), 422, "enabled")


def test_put_dual_registration_sip_peer_shows_remote_user_id(tenant, ext):
    shown = enable_sip_peer(tenant)
    remote = tenant.trunk + "101r"
    assert shown["remote_user_id"] == remote
    assert tenant.get(url(tenant)).get_json()["remote_user_id"] == remote
    assert tenant.get(url(tenant, "/dual-registration")).get_json()["remote_user_id"] == remote


def test_put_dual_registration_external_number_has_no_remote_user_id(tenant, ext, carrier):
    shown = tenant.ok(put_dual(tenant, enabled=True, sip_peer=False,
                               external_number="+4930123456", trunk="carrier"), 200)
    assert shown["remote_user_id"] is None
    assert (shown["external_number"], shown["trunk"]) == ("+4930123456", "carrier")
    assert tenant.get(url(tenant)).get_json()["remote_user_id"] is None


def test_put_dual_registration_disabled_keeps_settings(tenant, ext, carrier):
    put_dual(tenant, enabled=True, sip_peer=False, external_number="+4930123456",
             trunk="carrier")
    shown = tenant.ok(put_dual(tenant, enabled=False), 200)
    assert shown["enabled"] is False
    assert (shown["sip_peer"], shown["external_number"], shown["trunk"]) == (
        False, "+4930123456", "carrier")


def test_put_dual_registration_disabled_removes_remote_user_id(tenant, ext):
    enable_sip_peer(tenant)
    shown = tenant.ok(put_dual(tenant, enabled=False), 200)
    assert shown["remote_user_id"] is None
    assert shown["sip_peer"] is True
    assert tenant.get(url(tenant)).get_json()["remote_user_id"] is None


def test_put_dual_registration_enabling_sets_tenant_default_ring_mode(api, tenant, ext):
    api.ok(api.patch(f"/tenants/{tenant.trunk}", {"dual_default_ring_mode": "remote"}), 200)
    enable_sip_peer(tenant)
    assert tenant.get(url(tenant, "/ring-mode")).get_json() == {"mode": "remote"}


def test_put_dual_registration_disabling_returns_ring_mode_to_home(tenant, ext):
    enable_sip_peer(tenant)
    tenant.put(url(tenant, "/ring-mode"), {"mode": "both"})
    put_dual(tenant, enabled=False)
    assert tenant.get(url(tenant, "/ring-mode")).get_json() == {"mode": "home"}


def test_delete_trunk_used_by_dual_registration_is_409(tenant, ext, carrier):
    put_dual(tenant, enabled=True, sip_peer=False, external_number="+4930123456",
             trunk="carrier")
    assert_error(tenant.delete(f"/tenants/{tenant.trunk}/trunks/carrier"), 409)


# Ring mode


def test_get_ring_mode_of_new_extension_is_home(tenant, ext):
    response = tenant.get(url(tenant, "/ring-mode"))
    assert response.status_code == 200
    assert response.get_json() == {"mode": "home"}


@pytest.mark.parametrize("mode", ["remote", "both"])
def test_put_ring_mode_without_dual_registration_is_409(tenant, ext, mode):
    assert_error(tenant.put(url(tenant, "/ring-mode"), {"mode": mode}), 409)
    assert tenant.get(url(tenant, "/ring-mode")).get_json() == {"mode": "home"}


def test_put_ring_mode_home_without_dual_registration_is_200(tenant, ext):
    response = tenant.put(url(tenant, "/ring-mode"), {"mode": "home"})
    assert response.status_code == 200
    assert response.get_json() == {"mode": "home"}


@pytest.mark.parametrize("mode", ["home", "remote", "both"])
def test_put_ring_mode_persists(tenant, ext, mode):
    enable_sip_peer(tenant)
    assert tenant.put(url(tenant, "/ring-mode"), {"mode": mode}).get_json() == {"mode": mode}
    assert tenant.get(url(tenant, "/ring-mode")).get_json() == {"mode": mode}
    assert tenant.get(url(tenant)).get_json()["ring_mode"] == mode


@pytest.mark.parametrize("body", [{"mode": "sideways"}, {"mode": None}, {}, {"mode": 2}])
def test_put_ring_mode_invalid_is_422(tenant, ext, body):
    assert_error(tenant.put(url(tenant, "/ring-mode"), body), 422, "mode")


def test_put_ring_mode_of_missing_extension_is_404(tenant):
    assert_error(tenant.put(f"/tenants/{tenant.trunk}/extensions/999/ring-mode",
                            {"mode": "home"}), 404)


# SIP credentials


def test_get_sip_credentials_reveals_identity_and_password(tenant, ext):
    response = tenant.get(url(tenant, "/sip-credentials"))
    assert response.status_code == 200
    creds = response.get_json()
    assert creds["user_id"] == tenant.trunk + "101"
    assert creds["remote_user_id"] is None
    assert creds["realm"] == REALM
    assert creds["sip_server"]
    assert len(creds["password"]) >= 16


def test_get_sip_credentials_shows_remote_user_id_when_sip_peer(tenant, ext):
    enable_sip_peer(tenant)
    creds = tenant.get(url(tenant, "/sip-credentials")).get_json()
    assert creds["remote_user_id"] == tenant.trunk + "101r"


def test_get_sip_credentials_password_has_no_look_alikes(tenant):
    passwords = []
    for number in ("21", "22", "23", "24", "25"):
        tenant.extension(tenant.trunk, number)
        passwords.append(tenant.get(
            f"/tenants/{tenant.trunk}/extensions/{number}/sip-credentials").get_json()["password"])
    assert not LOOK_ALIKES & set("".join(passwords))
    assert len(set(passwords)) == len(passwords)


def test_get_sip_credentials_is_stable(tenant, ext):
    first = tenant.get(url(tenant, "/sip-credentials")).get_json()
    assert tenant.get(url(tenant, "/sip-credentials")).get_json() == first


def test_get_sip_credentials_writes_audit_event(world, tenant, ext):
    creds = tenant.get(url(tenant, "/sip-credentials")).get_json()
    response = tenant.get("/audit-events", query_string={"action": "sip_credentials.reveal"})
    events = response.get_json()
    assert len(events) == 1
    event = events[0]
    assert (event["object_type"], event["object_id"]) == ("extension", "101")
    assert event["actor_role"] == "tenant"
    assert event["actor_key_id"] == world.a.keys["tenant"].split(".", 1)[0].removeprefix("tlk_")
    assert creds["password"] not in response.get_data(as_text=True)


def test_get_sip_credentials_audits_every_reveal(tenant, ext):
    for _ in range(3):
        tenant.get(url(tenant, "/sip-credentials"))
    events = tenant.get("/audit-events", query_string={"action": "sip_credentials.reveal"})
    assert len(events.get_json()) == 3


def test_get_extension_never_shows_password(tenant, ext):
    password = tenant.get(url(tenant, "/sip-credentials")).get_json()["password"]
    assert password not in tenant.get(url(tenant)).get_data(as_text=True)
    assert password not in tenant.get(f"/tenants/{tenant.trunk}/extensions").get_data(
        as_text=True)
    assert password not in tenant.get("/audit-events").get_data(as_text=True)


def test_post_rotate_changes_password(tenant, ext):
    before = tenant.get(url(tenant, "/sip-credentials")).get_json()["password"]
    rotated = tenant.post(url(tenant, "/sip-credentials/rotate"))
    assert rotated.status_code == 200
    after = tenant.get(url(tenant, "/sip-credentials")).get_json()["password"]
    assert after != before
    assert rotated.get_json()["password"] == after
    assert len(after) >= 16 and not LOOK_ALIKES & set(after)


def test_post_rotate_keeps_one_password_for_both_endpoints(tenant, ext):
    enable_sip_peer(tenant)
    rotated = tenant.post(url(tenant, "/sip-credentials/rotate")).get_json()
    assert rotated["user_id"] + "r" == rotated["remote_user_id"]
    assert tenant.get(url(tenant, "/sip-credentials")).get_json() == rotated


def test_get_sip_credentials_by_other_tenant_is_404_and_not_audited(api, world, tenant, ext):
    other = api.as_(world.b.keys["tenant"])
    assert_error(other.get(url(tenant, "/sip-credentials")), 404)
    events = api.get("/audit-events", query_string={"action": "sip_credentials.reveal"})
    assert events.get_json() == []


# One dial plan per tenant: extensions, ring groups, queues and feature codes


def test_create_extension_with_ring_mode_feature_code_is_409(tenant):
    response = tenant.post(f"/tenants/{tenant.trunk}/extensions", {"number": "36", "name": "X"})
    assert_error(response, 409, "number")


def test_create_extension_with_changed_feature_code_follows_it(tenant):
    tenant.ok(tenant.patch(f"/tenants/{tenant.trunk}", {"feature_codes": {"ring_mode": "55"}}),
              200)
    assert_error(tenant.post(f"/tenants/{tenant.trunk}/extensions",
                             {"number": "55", "name": "X"}), 409, "number")
    assert tenant.post(f"/tenants/{tenant.trunk}/extensions",
                       {"number": "36", "name": "X"}).status_code == 201


def test_patch_tenant_feature_code_taken_by_extension_is_409(tenant, ext):
    response = tenant.patch(f"/tenants/{tenant.trunk}", {"feature_codes": {"ring_mode": "101"}})
    assert_error(response, 409, "feature_codes.ring_mode")


def test_create_extension_with_feature_code_of_other_tenant_is_201(api, world, tenant):
    api.ok(api.patch(f"/tenants/{world.b.trunk}", {"feature_codes": {"ring_mode": "55"}}), 200)
    assert tenant.post(f"/tenants/{tenant.trunk}/extensions",
                       {"number": "55", "name": "X"}).status_code == 201


@pytest.mark.parametrize("taken_by", ["extensions", "ring-groups", "queues"])
@pytest.mark.parametrize("created", ["extensions", "ring-groups", "queues"])
def test_create_number_already_in_dial_plan_is_409(tenant, taken_by, created):
    tenant.ok(tenant.post(f"/tenants/{tenant.trunk}/{taken_by}",
                          {"number": "500", "name": "first"}), 201)
    response = tenant.post(f"/tenants/{tenant.trunk}/{created}", {"number": "500", "name": "2nd"})
    assert_error(response, 409, "number")


def test_create_extension_number_used_in_other_tenant_is_201(api, world, tenant):
    api.extension(world.b.trunk, "101")
    assert tenant.post(f"/tenants/{tenant.trunk}/extensions",
                       {"number": "101", "name": "Alice"}).status_code == 201


# Group subscriptions


@pytest.fixture
def groups(tenant):
    for number in ("600", "601"):
        tenant.ok(tenant.post(f"/tenants/{tenant.trunk}/ring-groups",
                              {"number": number, "name": f"group {number}"}), 201)


def members(tenant, group):
    return tenant.get(f"/tenants/{tenant.trunk}/ring-groups/{group}").get_json()["members"]


def test_patch_extension_ring_groups_subscribes(tenant, ext, groups):
    shown = tenant.ok(tenant.patch(url(tenant), {"ring_groups": ["601", "600"]}), 200)
    assert shown["ring_groups"] == ["600", "601"]
    assert members(tenant, "600") == members(tenant, "601") == ["101"]


def test_patch_extension_ring_groups_replaces_subscriptions(tenant, ext, groups):
    tenant.patch(url(tenant), {"ring_groups": ["600", "601"]})
    shown = tenant.ok(tenant.patch(url(tenant), {"ring_groups": ["601"]}), 200)
    assert shown["ring_groups"] == ["601"]
    assert members(tenant, "600") == []


def test_patch_extension_ring_groups_empty_unsubscribes(tenant, ext, groups):
    tenant.patch(url(tenant), {"ring_groups": ["600"]})
    assert tenant.ok(tenant.patch(url(tenant), {"ring_groups": []}), 200)["ring_groups"] == []
    assert members(tenant, "600") == []


def test_create_extension_with_ring_groups_subscribes(tenant, groups):
    created = tenant.extension(tenant.trunk, "102", ring_groups=["600"])
    assert created["ring_groups"] == ["600"]
    assert members(tenant, "600") == ["102"]


def test_patch_extension_ring_group_of_other_tenant_is_422(api, world, tenant, ext):
    api.ok(api.post(f"/tenants/{world.b.trunk}/ring-groups",
                    {"number": "600", "name": "theirs"}), 201)
    assert_error(tenant.patch(url(tenant), {"ring_groups": ["600"]}), 422, "ring_groups")


def test_patch_extension_unknown_ring_group_changes_nothing(tenant, ext, groups):
    tenant.patch(url(tenant), {"ring_groups": ["600"]})
    assert_error(tenant.patch(url(tenant), {"ring_groups": ["601", "699"]}), 422, "ring_groups")
    assert tenant.get(url(tenant)).get_json()["ring_groups"] == ["600"]


def test_delete_ring_group_unsubscribes_extension(tenant, ext, groups):
    tenant.patch(url(tenant), {"ring_groups": ["600", "601"]})
    assert tenant.delete(f"/tenants/{tenant.trunk}/ring-groups/600").status_code == 204
    assert tenant.get(url(tenant)).get_json()["ring_groups"] == ["601"]


# Forwarding


@pytest.mark.parametrize("kind", ["always", "busy", "no_answer"])
def test_patch_forwarding_enabled_without_destination_is_422(tenant, ext, kind):
    response = tenant.patch(url(tenant), {"forwarding": {kind: {"enabled": True}}})
    assert_error(response, 422, f"forwarding.{kind}.destination")
    assert tenant.get(url(tenant)).get_json()["forwarding"][kind]["enabled"] is False


@pytest.mark.parametrize("kind", ["always", "busy", "no_answer"])
def test_patch_forwarding_clearing_destination_of_enabled_rule_is_422(tenant, ext, kind):
    tenant.ok(tenant.patch(url(tenant), {"forwarding": {kind: {
        "enabled": True, "destination": "+4930123456"}}}), 200)
    response = tenant.patch(url(tenant), {"forwarding": {kind: {"destination": None}}})
    assert_error(response, 422, f"forwarding.{kind}.destination")


@pytest.mark.parametrize("kind", ["always", "busy", "no_answer"])
def test_patch_forwarding_with_destination_is_saved(tenant, ext, kind):
    rule = {"enabled": True, "destination": "+4930123456"}
    tenant.ok(tenant.patch(url(tenant), {"forwarding": {kind: rule}}), 200)
    assert tenant.get(url(tenant)).get_json()["forwarding"][kind] == rule


def test_patch_forwarding_destination_too_long_is_422(tenant, ext):
    response = tenant.patch(url(tenant), {"forwarding": {"busy": {
        "enabled": True, "destination": "+" + "1" * 32}}})
    assert_error(response, 422, "forwarding.busy.destination")


def test_patch_voicemail_pin_is_never_shown(tenant, ext):
    shown = tenant.ok(tenant.patch(url(tenant), {"voicemail": {"pin": "4711"}}), 200)
    assert shown["voicemail"]["pin_set"] is True
    assert "4711" not in tenant.get(url(tenant)).get_data(as_text=True)


# ACD queues: either endpoint may be the agent, never both


@pytest.fixture
def queue(tenant):
    tenant.ok(tenant.post(f"/tenants/{tenant.trunk}/queues",
                          {"number": "700", "name": "Hotline"}), 201)
    return f"/tenants/{tenant.trunk}/queues/700"


def test_put_agent_home_logs_in(tenant, ext, queue):
    response = tenant.put(f"{queue}/agents/101", {"endpoint": "home"})
    assert response.status_code == 200
    assert response.get_json()["endpoint"] == "home"
    agents = tenant.get(queue).get_json()["agents"]
    assert [(a["extension"], a["endpoint"]) for a in agents] == [("101", "home")]


def test_put_agent_remote_while_home_logged_in_is_409(tenant, ext, queue):
    enable_sip_peer(tenant)
    tenant.ok(tenant.put(f"{queue}/agents/101", {"endpoint": "home"}), 200)
    assert_error(tenant.put(f"{queue}/agents/101", {"endpoint": "remote"}), 409)


def test_put_agent_remote_while_home_logged_in_elsewhere_is_409(tenant, ext, queue):
    enable_sip_peer(tenant)
    tenant.ok(tenant.post(f"/tenants/{tenant.trunk}/queues", {"number": "701", "name": "B"}), 201)
    tenant.ok(tenant.put(f"/tenants/{tenant.trunk}/queues/701/agents/101",
                         {"endpoint": "home"}), 200)
    assert_error(tenant.put(f"{queue}/agents/101", {"endpoint": "remote"}), 409)


def test_put_agent_remote_without_dual_registration_is_409(tenant, ext, queue):
    assert_error(tenant.put(f"{queue}/agents/101", {"endpoint": "remote"}), 409)
    assert tenant.get(queue).get_json()["agents"] == []


def test_put_agent_remote_after_home_logged_out_is_200(tenant, ext, queue):
    enable_sip_peer(tenant)
    tenant.put(f"{queue}/agents/101", {"endpoint": "home"})
    assert tenant.delete(f"{queue}/agents/101").status_code == 204
    response = tenant.put(f"{queue}/agents/101", {"endpoint": "remote"})
    assert response.status_code == 200
    assert response.get_json()["endpoint"] == "remote"


def test_put_dual_registration_disabled_logs_remote_agent_out(tenant, ext, queue):
    enable_sip_peer(tenant)
    tenant.ok(tenant.put(f"{queue}/agents/101", {"endpoint": "remote"}), 200)
    put_dual(tenant, enabled=False)
    assert tenant.get(queue).get_json()["agents"] == []


@pytest.mark.parametrize("body", [{"endpoint": "desk"}, {}, {"endpoint": None}])
def test_put_agent_invalid_endpoint_is_422(tenant, ext, queue, body):
    assert_error(tenant.put(f"{queue}/agents/101", body), 422, "endpoint")


def test_put_agent_unknown_extension_is_404(tenant, queue):
    assert_error(tenant.put(f"{queue}/agents/999", {"endpoint": "home"}), 404)


def test_delete_agent_not_logged_in_is_404(tenant, ext, queue):
    assert_error(tenant.delete(f"{queue}/agents/101"), 404)
