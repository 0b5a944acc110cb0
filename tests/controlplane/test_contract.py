"""The CRUD contract every resource of the API honours (after netbox's API view tests).

A resource declares where its collection is, a valid object, a second one, a change, and
invalid inputs with the field each must be reported under. The mixins check create, read,
list, update, delete and validation, and that an object of side A answers side B's tenant
and reseller keys exactly as an object that does not exist (404). A resource without some
operation (no GET of one object, no PATCH) leaves out the mixin that needs it.
"""

import pytest

from .checks import assert_error, assert_error_shape, error_fields, pagination

MISSING = object()  # in an invalid input: leave the field out


def pytest_generate_tests(metafunc):
    cls = metafunc.cls
    if "invalid_input" in metafunc.fixturenames:
        cases = cls.invalid
        metafunc.parametrize("invalid_input", cases, ids=[_case_id(c) for c in cases])
    if "invalid_change" in metafunc.fixturenames:
        cases = [(changes, field) for changes, field in cls.invalid
                 if MISSING not in changes.values() and not set(changes) & set(cls.immutable)]
        metafunc.parametrize("invalid_change", cases, ids=[_case_id(c) for c in cases])


def _case_id(case):
    changes, field = case
    return f"{field}={next(iter(changes.values()))!r}"[:40]


def _with(body, changes):
    merged = {**body, **changes}
    return {k: v for k, v in merged.items() if v is not MISSING}


class Resource:
    path = None                 # below /tenants/{trunk} when nested, else from /api/v1
    nested = True
    owner = "tenant"            # the narrowest key of side A that may create one
    ident = "number"            # the field that names an object in its URL
    create = {}
    other = {}                  # changes that make a second, distinct object
    update = None
    invalid = []                # (changes to a valid body, field that must be named)
    immutable = ()              # fields a PATCH does not take
    domain_rules = ()           # fields of `invalid` judged by services (they need other rows)
    created_only = ()           # fields only the creation response shows
    missing_ident = "98"
    # Where an outsider is refused with something else than 404 (role restrictions,
    # references in a body): {(action, outsider role): status}.
    refused = {}

    def collection(self, side):
        return f"/tenants/{side.trunk}/{self.path}" if self.nested else self.path

    def body(self, side):
        return dict(self.create)

    def item(self, side, ident):
        return f"{self.collection(side)}/{ident}"

    def missing_item(self, world):
        return self.item(world.a, self.missing_ident)

    def expected(self, action, outsider):
        return self.refused.get((action, outsider), 404)

    def assert_gone(self, client, obj, url):
        assert_error(client.get(url), 404)

    def assert_present(self, client, obj, url):
        assert client.get(url).status_code == 200

    @pytest.fixture
    def owner_api(self, api, world):
        return api if self.owner == "platform" else api.as_(world.a.keys[self.owner])

    @pytest.fixture
    def created(self, owner_api, world):
        """An object on side A: (its representation, its URL)."""
        response = owner_api.post(self.collection(world.a), self.body(world.a))
        assert response.status_code == 201, response.get_json()
        obj = response.get_json()
        return obj, self.item(world.a, obj[self.ident])

    @pytest.fixture(params=["tenant", "reseller"])
    def outsider(self, request, api, world):
        """(role, client) with side B's key of that role."""
        return request.param, api.as_(world.b.keys[request.param])

    def total(self, client, side):
        response = client.get(self.collection(side))
        assert response.status_code == 200, response.get_json()
        return pagination(response)["total"]

    def assert_refused_as_if_missing(self, action, role, hidden, missing):
        assert hidden.status_code == self.expected(action, role), hidden.get_json()
        assert_error_shape(hidden)
        assert missing.status_code == hidden.status_code, missing.get_json()
        assert error_fields(missing.get_json()) == error_fields(hidden.get_json())


class CreateContract:
    def test_create_returns_201_with_fields(self, owner_api, world):
        body = self.body(world.a)
        response = owner_api.post(self.collection(world.a), body)
        assert response.status_code == 201, response.get_json()
        obj = response.get_json()
        assert {k: obj.get(k) for k in body} == body

    def test_create_invalid_input_is_422(self, owner_api, world, invalid_input):
        changes, field = invalid_input
        response = owner_api.post(self.collection(world.a), _with(self.body(world.a), changes))
        assert_error(response, 422, field)

    def test_create_several_invalid_fields_names_each(self, owner_api, world):
        merged, fields = {}, set()
        for changes, field in self.invalid:
            (key,) = changes
            if key not in merged and field not in self.domain_rules:
                merged[key] = changes[key]
                fields.add(field)
        response = owner_api.post(self.collection(world.a), _with(self.body(world.a), merged))
        assert_error(response, 422, *fields)

    def test_create_unknown_field_is_422(self, owner_api, world):
        response = owner_api.post(self.collection(world.a),
                                  {**self.body(world.a), "colour": "blue"})
        assert_error(response, 422, "colour")

    def test_create_by_outsider_is_refused_as_if_missing(self, api, world, outsider):
        role, client = outsider
        before = self.total(api, world.a)
        hidden = client.post(self.collection(world.a), self.body(world.a))
        missing = client.post(self.collection(world.missing), self.body(world.missing))
        self.assert_refused_as_if_missing("create", role, hidden, missing)
        assert self.total(api, world.a) == before


class ListContract:
    def test_list_is_paginated(self, owner_api, world, created):
        obj, _url = created
        response = owner_api.get(self.collection(world.a))
        assert response.status_code == 200, response.get_json()
        items = response.get_json()
        assert pagination(response)["total"] == len(items)
        assert obj[self.ident] in [item[self.ident] for item in items]

    def test_list_page_size_limits_items(self, owner_api, world, created):
        owner_api.ok(owner_api.post(self.collection(world.a),
                                    _with(self.body(world.a), self.other)), 201)
        url = self.collection(world.a)
        first = owner_api.get(url, query_string={"page_size": 1})
        second = owner_api.get(url, query_string={"page_size": 1, "page": 2})
        page = pagination(first)
        assert len(first.get_json()) == len(second.get_json()) == 1
        assert page["total"] >= 2 and page["total_pages"] == page["total"]
        assert first.get_json()[0][self.ident] != second.get_json()[0][self.ident]

    def test_list_by_outsider_hides_object(self, world, created, outsider):
        role, client = outsider
        obj, _url = created
        hidden = client.get(self.collection(world.a))
        if self.nested:
            missing = client.get(self.collection(world.missing))
            self.assert_refused_as_if_missing("list", role, hidden, missing)
        else:
            assert hidden.status_code == 200, hidden.get_json()
            assert obj[self.ident] not in [item[self.ident] for item in hidden.get_json()]


class ReadContract(ListContract):
    def test_get_returns_created_object(self, owner_api, created):
        obj, url = created
        response = owner_api.get(url)
        assert response.status_code == 200, response.get_json()
        shown = {k: v for k, v in obj.items() if k not in self.created_only}
        assert response.get_json() == shown

    def test_get_missing_is_404(self, owner_api, world):
        assert_error(owner_api.get(self.missing_item(world)), 404)

    def test_get_by_outsider_is_404(self, world, created, outsider):
        role, client = outsider
        _obj, url = created
        self.assert_refused_as_if_missing(
            "read", role, client.get(url), client.get(self.missing_item(world)))


class UpdateContract:
    def test_patch_changes_value(self, owner_api, created):
        _obj, url = created
        response = owner_api.patch(url, self.update)
        assert response.status_code == 200, response.get_json()
        for shown in (response.get_json(), owner_api.get(url).get_json()):
            assert {k: shown.get(k) for k in self.update} == self.update

    def test_patch_invalid_input_is_422(self, owner_api, created, invalid_change):
        changes, field = invalid_change
        _obj, url = created
        assert_error(owner_api.patch(url, changes), 422, field)

    def test_patch_unknown_field_is_422(self, owner_api, created):
        _obj, url = created
        assert_error(owner_api.patch(url, {"colour": "blue"}), 422, "colour")

    def test_patch_missing_is_404(self, owner_api, world):
        assert_error(owner_api.patch(self.missing_item(world), self.update), 404)

    def test_patch_by_outsider_is_404_and_changes_nothing(self, owner_api, world, created,
                                                          outsider):
        role, client = outsider
        obj, url = created
        self.assert_refused_as_if_missing(
            "update", role, client.patch(url, self.update),
            client.patch(self.missing_item(world), self.update))
        assert owner_api.get(url).get_json() == {
            k: v for k, v in obj.items() if k not in self.created_only}


class DeleteContract:
    def test_delete_returns_204_then_gone(self, owner_api, created):
        obj, url = created
        response = owner_api.delete(url)
        assert response.status_code == 204, response.get_json()
        self.assert_gone(owner_api, obj, url)

    def test_delete_missing_is_404(self, owner_api, world):
        assert_error(owner_api.delete(self.missing_item(world)), 404)

    def test_delete_by_outsider_is_404_and_keeps_object(self, owner_api, world, created,
                                                        outsider):
        role, client = outsider
        obj, url = created
        self.assert_refused_as_if_missing(
            "delete", role, client.delete(url), client.delete(self.missing_item(world)))
        self.assert_present(owner_api, obj, url)


class CrudContract(Resource, CreateContract, ReadContract, UpdateContract, DeleteContract):
    pass


class TestResellers(CrudContract):
    path = "/resellers"
    nested = False
    owner = "platform"
    ident = "id"
    create = {"name": "Voxpop Telecom"}
    other = {"name": "Callmatic"}
    update = {"name": "Voxpop Telecom GmbH"}
    invalid = [
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": MISSING}, "name"),
        ({"name": 42}, "name"),
    ]
    missing_ident = "987654"
    # Writing resellers is the platform's alone, whatever the reseller.
    refused = {(action, role): 403 for action in ("create", "update", "delete")
               for role in ("tenant", "reseller")}


class TestTenants(CrudContract):
    path = "/tenants"
    nested = False
    owner = "reseller"
    ident = "trunk_number"
    create = {"name": "Bakery Miller"}
    other = {"name": "Garage Smith"}
    update = {"name": "Bakery Miller & Sons"}
    invalid = [
        ({"name": ""}, "name"),
        ({"name": MISSING}, "name"),
        ({"trunk_number": "01234"}, "trunk_number"),
        ({"trunk_number": "123456"}, "trunk_number"),
        ({"trunk_number": "1234a"}, "trunk_number"),
        ({"reseller_id": "first"}, "reseller_id"),
        ({"feature_codes": {"ring_mode": "ring"}}, "feature_codes.ring_mode"),
        ({"feature_codes": {"ring_mode": "*97"}}, "feature_codes"),
        ({"feature_codes": {"intercom": "55"}}, "feature_codes.intercom"),
        ({"dual_default_ring_mode": "sideways"}, "dual_default_ring_mode"),
    ]
    immutable = ("trunk_number", "reseller_id")
    domain_rules = ("feature_codes",)
    refused = {
        ("create", "tenant"): 403,     # a tenant key never creates tenants
        ("delete", "tenant"): 403,     # nor deletes one, not even its own
        ("create", "reseller"): 422,   # reseller_id names no reseller it may see
    }

    def body(self, side):
        return {**self.create, "reseller_id": side.reseller_id}

    def item(self, side, ident):
        return f"/tenants/{ident}"

    def missing_item(self, world):
        return self.item(world.a, world.missing.trunk)


class TestTrunks(CrudContract):
    path = "trunks"
    ident = "name"
    create = {"name": "carrier-1", "gateway": "sip.carrier.example:5060"}
    other = {"name": "carrier-2"}
    update = {"gateway": "[2001:db8::1]:5080"}
    invalid = [
        ({"name": "carrier one"}, "name"),
        ({"name": "-carrier"}, "name"),
        ({"name": MISSING}, "name"),
        ({"gateway": "not a host!"}, "gateway"),
        ({"gateway": "sip.carrier.example:70000"}, "gateway"),
        ({"gateway": MISSING}, "gateway"),
    ]
    missing_ident = "no-such-trunk"


class TestExtensions(CrudContract):
    path = "extensions"
    create = {"number": "101", "name": "Alice Liddell"}
    other = {"number": "102", "name": "Bob"}
    update = {"name": "Alice L.", "rings_before_voicemail": 8, "class_of_service": "local"}
    invalid = [
        ({"number": "1"}, "number"),
        ({"number": "1234567"}, "number"),
        ({"number": "10a"}, "number"),
        ({"number": 101}, "number"),
        ({"number": MISSING}, "number"),
        ({"name": ""}, "name"),
        ({"name": MISSING}, "name"),
        ({"caller_id_number": "call me"}, "caller_id_number"),
        ({"rings_before_voicemail": 0}, "rings_before_voicemail"),
        ({"concurrent_call_limit": 0}, "concurrent_call_limit"),
        ({"class_of_service": "galactic"}, "class_of_service"),
        ({"voicemail": {"pin": "12"}}, "voicemail.pin"),
        ({"voicemail": {"email": "nobody"}}, "voicemail.email"),
        ({"forwarding": {"busy": {"destination": "mum"}}}, "forwarding.busy.destination"),
        ({"forwarding": {"always": {"enabled": True}}}, "forwarding.always.destination"),
        ({"ring_groups": ["600"]}, "ring_groups"),
        ({"ring_mode": "both"}, "ring_mode"),
        ({"sip_user_id": "12345101"}, "sip_user_id"),
    ]
    immutable = ("number",)
    domain_rules = ("forwarding.always.destination", "ring_groups")


class TestRingGroups(CrudContract):
    path = "ring-groups"
    create = {"number": "600", "name": "Sales"}
    other = {"number": "601", "name": "Support"}
    update = {"name": "Sales EMEA", "strategy": "sequential", "ring_seconds": 30}
    invalid = [
        ({"number": "6"}, "number"),
        ({"number": MISSING}, "number"),
        ({"name": ""}, "name"),
        ({"strategy": "random"}, "strategy"),
        ({"ring_seconds": 1}, "ring_seconds"),
        ({"ring_seconds": "long"}, "ring_seconds"),
        ({"members": ["101"]}, "members"),
    ]
    immutable = ("number",)


class TestQueues(CrudContract):
    path = "queues"
    create = {"number": "700", "name": "Hotline"}
    other = {"number": "701", "name": "Billing"}
    update = {"name": "Hotline 24/7"}
    invalid = [
        ({"number": "x7"}, "number"),
        ({"number": MISSING}, "number"),
        ({"name": ""}, "name"),
        ({"name": MISSING}, "name"),
        ({"agents": []}, "agents"),
    ]
    immutable = ("number",)


class TestApiKeys(Resource, CreateContract, ReadContract, DeleteContract):
    """Keys have no update; deleting one revokes it (it stays listed, and stops working)."""

    path = "/api-keys"
    nested = False
    ident = "id"
    create = {"role": "tenant", "name": "provisioning script"}
    other = {"name": "phone app"}
    invalid = [
        ({"role": "god"}, "role"),
        ({"role": MISSING}, "role"),
        ({"name": ""}, "name"),
        ({"trunk_number": "123"}, "trunk_number"),
        ({"reseller_id": "one"}, "reseller_id"),
        ({"key": "tlk_mine.secret"}, "key"),
    ]
    created_only = ("key",)
    missing_ident = "0123456789ab"
    refused = {("create", "tenant"): 422, ("create", "reseller"): 422}  # trunk_number unknown

    def body(self, side):
        return {**self.create, "trunk_number": side.trunk}

    def assert_gone(self, client, obj, url):
        response = client.get(url)
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["revoked_at"] is not None

    def test_delete_revoked_key_stops_working(self, owner_api, created):
        obj, url = created
        assert owner_api.as_(obj["key"]).get("/tenants").status_code == 200
        assert owner_api.delete(url).status_code == 204
        assert_error(owner_api.as_(obj["key"]).get("/tenants"), 401)


class TestTenantTrustedNetworks(Resource, CreateContract, ListContract, DeleteContract):
    """No GET of one network and no update: a network is trusted, or it is not. Its id
    names it, so the checks of one network go through the list."""

    path = "trusted-networks"
    ident = "id"
    create = {"cidr": "198.51.100.0/24", "description": "Head office"}
    other = {"cidr": "2001:db8:42::/48"}
    invalid = [
        ({"cidr": "not a network"}, "cidr"),
        ({"cidr": "198.51.100.0/33"}, "cidr"),
        ({"cidr": "10.0.0.0/8"}, "cidr"),    # wider than a tenant may trust
        ({"cidr": MISSING}, "cidr"),
        ({"cidr": 42}, "cidr"),
        ({"description": "x" * 201}, "description"),
        ({"id": 7}, "id"),
    ]
    domain_rules = ("cidr",)
    missing_ident = "2147483647"  # the widest id there is: never one of side A's

    def listed(self, client, url):
        collection = url.rsplit("/", 1)[0]
        response = client.get(collection, query_string={"page_size": 1000})
        assert response.status_code == 200, response.get_json()
        return [item["id"] for item in response.get_json()]

    def assert_gone(self, client, obj, url):
        assert obj["id"] not in self.listed(client, url)

    def assert_present(self, client, obj, url):
        assert obj["id"] in self.listed(client, url)

    def test_delete_through_own_tenant_with_others_id_is_404(self, owner_api, api, world,
                                                           created):
        obj, url = created
        side_b = api.as_(world.b.keys["tenant"])
        assert_error(side_b.delete(self.item(world.b, obj["id"])), 404)
        self.assert_present(owner_api, obj, url)
