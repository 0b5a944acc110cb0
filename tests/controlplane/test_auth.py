"""API keys over HTTP: 401s, keys shown once, last use recorded, and each role's reach."""

import pytest

from .checks import assert_error, assert_error_shape, error_fields, pagination
from .conftest import new_key


def key_id(key):
    """The public half of a key, `tlk_<id>.<secret>`, as the API lists it."""
    return key.split(".", 1)[0].removeprefix("tlk_")


BAD_AUTHORIZATIONS = {
    "missing": lambda key: None,
    "empty": lambda key: "",
    "bearer-without-key": lambda key: "Bearer ",
    "basic-scheme": lambda key: "Basic dXNlcjpwYXNz",
    "key-without-scheme": lambda key: key,
    "malformed": lambda key: "Bearer not-a-key",
    "wrong-prefix": lambda key: "Bearer " + key.replace("tlk_", "xyz_", 1),
    "unknown-id": lambda key: "Bearer tlk_000000000000." + key.split(".", 1)[1],
    "wrong-secret": lambda key: "Bearer " + key[:-4] + ("AAAA" if key[-4:] != "AAAA" else "BBBB"),
    "truncated": lambda key: "Bearer " + key.split(".", 1)[0] + ".",
    "non-ascii": lambda key: "Bearer tlk_ünïcødé.sécret",
}


def _call(client, path, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    return client.get("/api/v1" + path, headers=headers)


@pytest.mark.parametrize("case", BAD_AUTHORIZATIONS)
def test_request_with_bad_key_is_401(client, platform_key, case):
    response = _call(client, "/tenants", BAD_AUTHORIZATIONS[case](platform_key))
    assert_error(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("case", BAD_AUTHORIZATIONS)
def test_request_with_bad_key_answers_like_missing_key(client, platform_key, case):
    missing = _call(client, "/tenants", None)
    response = _call(client, "/tenants", BAD_AUTHORIZATIONS[case](platform_key))
    assert response.get_json() == missing.get_json()


@pytest.mark.parametrize("path", ["/tenants/12345/extensions/101", "/no-such-resource",
                                  "/api-keys/0123456789ab"])
def test_request_without_key_is_401_before_404(client, path):
    assert_error(_call(client, path, None), 401)


def test_request_with_revoked_key_is_401(api):
    key = new_key(api, "platform")
    assert api.delete(f"/api-keys/{key_id(key)}").status_code == 204
    response = api.as_(key).get("/tenants")
    assert_error(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_request_with_lowercase_bearer_scheme_is_accepted(client, platform_key):
    assert _call(client, "/tenants", f"bearer {platform_key}").status_code == 200


def test_request_with_key_of_deleted_tenant_is_401(api, world):
    assert api.delete(f"/tenants/{world.a.trunk}").status_code == 204
    assert_error(api.as_(world.a.keys["tenant"]).get("/tenants"), 401)


def test_create_api_key_shows_key_once(api, world):
    created = api.ok(api.post("/api-keys", {"role": "tenant", "name": "portal",
                                            "trunk_number": world.a.trunk}), 201)
    secret = created["key"].split(".", 1)[1]
    shown = api.get(f"/api-keys/{created['id']}")
    listed = api.get("/api-keys", query_string={"page_size": 1000})
    assert shown.status_code == listed.status_code == 200
    assert "key" not in shown.get_json()
    assert all("key" not in item for item in listed.get_json())
    assert secret not in shown.get_data(as_text=True)
    assert secret not in listed.get_data(as_text=True)


def test_create_api_key_keeps_secret_out_of_audit_log(api, world):
    created = api.ok(api.post("/api-keys", {"role": "tenant", "name": "portal",
                                            "trunk_number": world.a.trunk}), 201)
    events = api.get("/audit-events", query_string={"action": "api_key.create"})
    assert created["id"] in {e["object_id"] for e in events.get_json()}
    assert created["key"].split(".", 1)[1] not in events.get_data(as_text=True)


def test_create_api_key_gives_working_key_of_that_role(api, world):
    key = new_key(api, "tenant", trunk_number=world.a.trunk)
    tenants = api.as_(key).get("/tenants").get_json()
    assert [t["trunk_number"] for t in tenants] == [world.a.trunk]


def test_get_api_key_records_last_used_at(api, world):
    key = new_key(api, "tenant", trunk_number=world.a.trunk)
    before = api.get(f"/api-keys/{key_id(key)}").get_json()
    api.as_(key).get("/tenants")
    after = api.get(f"/api-keys/{key_id(key)}").get_json()
    assert before["last_used_at"] is None
    assert after["last_used_at"] is not None
    assert after["last_used_at"] >= after["created_at"]


def test_get_api_key_unused_key_has_no_last_used_at(api, world):
    new_key(api, "tenant", trunk_number=world.a.trunk)
    unused = api.get("/api-keys", query_string={"page_size": 1000}).get_json()[-1]
    assert unused["last_used_at"] is None


# A reseller key manages its own tenants and nothing else.


def test_list_tenants_as_reseller_shows_only_its_tenants(api, world):
    api.tenant("Unowned")
    reseller = api.as_(world.a.keys["reseller"])
    response = reseller.get("/tenants")
    assert [t["trunk_number"] for t in response.get_json()] == [world.a.trunk]
    assert pagination(response)["total"] == 1


def test_create_tenant_as_reseller_is_owned_by_it(api, world):
    reseller = api.as_(world.a.keys["reseller"])
    created = reseller.ok(reseller.post("/tenants", {"name": "New customer"}), 201)
    assert created["reseller_id"] == world.a.reseller_id
    assert api.get(f"/tenants/{created['trunk_number']}").get_json()["reseller_id"] == \
        world.a.reseller_id


@pytest.mark.parametrize("owner", ["b", "missing"])
def test_create_tenant_as_reseller_for_another_reseller_is_422(api, world, owner):
    reseller = api.as_(world.a.keys["reseller"])
    response = reseller.post("/tenants", {"name": "Stolen",
                                          "reseller_id": getattr(world, owner).reseller_id})
    assert_error(response, 422, "reseller_id")


@pytest.mark.parametrize("owner", ["b", "missing"])
def test_patch_tenant_as_reseller_moving_it_is_422(api, world, owner):
    reseller = api.as_(world.a.keys["reseller"])
    response = reseller.patch(f"/tenants/{world.a.trunk}",
                              {"reseller_id": getattr(world, owner).reseller_id})
    assert_error(response, 422, "reseller_id")
    assert api.get(f"/tenants/{world.a.trunk}").get_json()["reseller_id"] == world.a.reseller_id


def test_create_api_key_as_reseller_for_its_tenant_reaches_only_that_tenant(api, world):
    reseller = api.as_(world.a.keys["reseller"])
    created = reseller.ok(reseller.post("/api-keys", {"role": "tenant", "name": "customer",
                                                      "trunk_number": world.a.trunk}), 201)
    tenant = api.as_(created["key"])
    assert tenant.get(f"/tenants/{world.a.trunk}").status_code == 200
    assert_error(tenant.get(f"/tenants/{world.b.trunk}"), 404)


@pytest.mark.parametrize("side", ["b", "missing"])
def test_create_api_key_as_reseller_for_other_tenant_is_422(api, world, side):
    # The trunk number is input that names no tenant the caller may see: the same answer
    # as for a trunk number that names no tenant at all, so nothing leaks.
    reseller = api.as_(world.a.keys["reseller"])
    response = reseller.post("/api-keys", {"role": "tenant", "name": "stolen",
                                           "trunk_number": getattr(world, side).trunk})
    body = assert_error(response, 422, "trunk_number")
    assert getattr(world, side).trunk in body["message"]


def test_create_api_key_as_reseller_for_other_tenant_creates_nothing(api, world):
    reseller = api.as_(world.a.keys["reseller"])
    before = pagination(api.get("/api-keys"))["total"]
    reseller.post("/api-keys", {"role": "tenant", "name": "stolen", "trunk_number": world.b.trunk})
    assert pagination(api.get("/api-keys"))["total"] == before


def test_create_api_key_as_reseller_for_itself_is_201(api, world):
    reseller = api.as_(world.a.keys["reseller"])
    created = reseller.ok(reseller.post("/api-keys", {"role": "reseller", "name": "2nd"}), 201)
    assert created["reseller_id"] == world.a.reseller_id


def test_list_api_keys_as_reseller_shows_its_and_its_tenants_keys(api, world):
    reseller = api.as_(world.a.keys["reseller"])
    ids = {k["id"] for k in reseller.get("/api-keys").get_json()}
    assert ids == {key_id(world.a.keys["reseller"]), key_id(world.a.keys["tenant"])}


def test_delete_api_key_as_reseller_revokes_its_tenants_key(api, world):
    reseller = api.as_(world.a.keys["reseller"])
    assert reseller.delete(f"/api-keys/{key_id(world.a.keys['tenant'])}").status_code == 204
    assert_error(api.as_(world.a.keys["tenant"]).get("/tenants"), 401)


# A tenant key sees its tenant and nothing else.


def test_list_tenants_as_tenant_shows_only_its_tenant(api, world):
    response = api.as_(world.a.keys["tenant"]).get("/tenants")
    assert [t["trunk_number"] for t in response.get_json()] == [world.a.trunk]
    assert pagination(response)["total"] == 1


def test_list_resellers_as_tenant_is_empty(api, world):
    response = api.as_(world.a.keys["tenant"]).get("/resellers")
    assert response.status_code == 200
    assert response.get_json() == []


def test_list_api_keys_as_tenant_shows_only_its_keys(api, world):
    tenant = api.as_(world.a.keys["tenant"])
    assert {k["id"] for k in tenant.get("/api-keys").get_json()} == {
        key_id(world.a.keys["tenant"])}


def test_create_api_key_as_tenant_is_for_its_tenant(api, world):
    tenant = api.as_(world.a.keys["tenant"])
    created = tenant.ok(tenant.post("/api-keys", {"role": "tenant", "name": "desk app"}), 201)
    assert created["trunk_number"] == world.a.trunk


def test_list_audit_events_as_tenant_shows_only_its_events(api, world):
    api.extension(world.a.trunk, "101")
    api.extension(world.b.trunk, "201")
    events = api.as_(world.a.keys["tenant"]).get("/audit-events").get_json()
    created = {e["object_id"] for e in events if e["action"] == "extension.create"}
    assert created == {"101"}


def test_patch_tenant_as_tenant_renames_it(api, world):
    tenant = api.as_(world.a.keys["tenant"])
    response = tenant.patch(f"/tenants/{world.a.trunk}", {"name": "Renamed"})
    assert response.status_code == 200
    assert response.get_json()["name"] == "Renamed"


# Operations a role may never perform: 403, whatever the object.

ROLE_RESTRICTED = [
    ("tenant", "post", "/tenants", {"name": "Another"}),
    ("tenant", "post", "/resellers", {"name": "Another"}),
    ("tenant", "delete", "/tenants/{trunk}", None),
    ("tenant", "post", "/api-keys", {"role": "reseller", "name": "escalate"}),
    ("tenant", "post", "/api-keys", {"role": "platform", "name": "escalate"}),
    ("reseller", "post", "/resellers", {"name": "Another"}),
    ("reseller", "patch", "/resellers/{reseller_id}", {"name": "Renamed"}),
    ("reseller", "delete", "/resellers/{reseller_id}", None),
    ("reseller", "post", "/api-keys", {"role": "platform", "name": "escalate"}),
]


@pytest.mark.parametrize(("role", "method", "path", "body"), ROLE_RESTRICTED,
                         ids=[f"{r}-{m}-{p}-{(b or {}).get('role', '')}"
                              for r, m, p, b in ROLE_RESTRICTED])
def test_role_restricted_operation_is_403(api, world, role, method, path, body):
    client = api.as_(world.a.keys[role])
    url = path.format(trunk=world.a.trunk, reseller_id=world.a.reseller_id)
    kwargs = {} if body is None else {"json": body}
    before = api.get("/audit-events").get_json()
    assert_error(getattr(client, method)(url, **kwargs), 403)
    assert api.get("/audit-events").get_json() == before


def test_create_api_key_as_tenant_escalating_names_no_field(api, world):
    response = api.as_(world.a.keys["tenant"]).post(
        "/api-keys", {"role": "reseller", "name": "x", "reseller_id": world.a.reseller_id})
    body = assert_error_shape(response)
    assert response.status_code == 403
    assert error_fields(body) == set()
