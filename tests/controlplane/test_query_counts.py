"""No N+1 queries: a list request issues the same number of SQL statements for 3 items as
for 30, whatever each item carries (ring group subscriptions, dual registration with a
trunk, queue agents, the tenant of a key).

Each test fills one list up to SMALL items, counts the statements of one GET, grows the
same list to LARGE items and counts again. The statements are caught on the app's engine
(before_cursor_execute), so everything the request does is counted: authentication, the
tenant lookup, the page, the pagination count and every eager load.
"""

from contextlib import contextmanager

import pytest
from sqlalchemy import event

SMALL, LARGE = 3, 30
# Every item on one page: the default page size (50) is above LARGE.
assert LARGE < 50


@contextmanager
def statements_of(app):
    engine = app.extensions["trunkline"]["engine"]
    statements = []

    def _catch(_conn, _cursor, statement, _parameters, _context, _executemany):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", _catch)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", _catch)


def list_statements(app, api, path, expected_items):
    """The SQL statements of one GET of a list, after a first GET that warms up."""
    # The first use of a key records last_used_at (a write, once a minute): not this count.
    api.ok(api.get(path), 200)
    with statements_of(app) as statements:
        items = api.ok(api.get(path), 200)
    assert len(items) == expected_items, items
    return statements


def assert_same_count(small, large):
    assert len(large) == len(small), (
        f"{len(small)} statements for {SMALL} items, {len(large)} for {LARGE}:\n"
        + "\n---\n".join(large)
    )


class TenantWithEverything:
    """A tenant whose extensions exercise every relationship a listed extension shows."""

    def __init__(self, api):
        self.api = api
        self.trunk = api.tenant("Busy Tenant")["trunk_number"]
        self.url = f"/tenants/{self.trunk}"
        api.ok(api.post(f"{self.url}/trunks",
                        {"name": "carrier", "gateway": "sip.carrier.example"}), 201)
        for group in ("601", "602"):
            api.ok(api.post(f"{self.url}/ring-groups", {"number": group, "name": f"Group {group}"}),
                   201)
        self.extensions = 0
        self.queues = 0

    def add_extensions(self, upto):
        while self.extensions < upto:
            number = str(200 + self.extensions)
            kind = self.extensions % 3
            self.api.extension(self.trunk, number, f"User {number}",
                               ring_groups=["601", "602"] if kind != 2 else ["601"])
            dual = self.api.put(f"{self.url}/extensions/{number}/dual-registration",
                                {"enabled": True, "sip_peer": True} if kind == 0 else
                                {"enabled": True, "sip_peer": False,
                                 "external_number": "+4930123456", "trunk": "carrier"})
            self.api.ok(dual, 200)
            self.extensions += 1

    def add_queues(self, upto):
        """Queue i has extension 200's home endpoint as an agent (every queue) and extension
        200+i's: its remote endpoint where it has one (dual registration as a SIP peer)."""
        self.add_extensions(upto)
        while self.queues < upto:
            number = str(700 + self.queues)
            self.api.ok(self.api.post(f"{self.url}/queues", {"number": number, "name": "Sales"}),
                        201)
            agents = {"200": "home"}
            if self.queues:
                agents[str(200 + self.queues)] = "remote" if self.queues % 3 == 0 else "home"
            for ext, endpoint in agents.items():
                self.api.ok(self.api.put(f"{self.url}/queues/{number}/agents/{ext}",
                                         {"endpoint": endpoint}), 200)
            self.queues += 1


@pytest.fixture
def busy(api):
    return TenantWithEverything(api)


def test_list_extensions_statements_do_not_grow_with_extensions(app, api, busy):
    path = f"{busy.url}/extensions"
    busy.add_extensions(SMALL)
    small = list_statements(app, api, path, SMALL)
    busy.add_extensions(LARGE)
    large = list_statements(app, api, path, LARGE)
    assert_same_count(small, large)


def test_list_extensions_shows_what_was_eagerly_loaded(app, api, busy):
    """The constant count is not bought by leaving fields out."""
    busy.add_extensions(SMALL)
    items = api.ok(api.get(f"{busy.url}/extensions"), 200)
    assert items[0]["ring_groups"] == ["601", "602"]
    assert items[0]["remote_user_id"] == busy.trunk + "200r"
    assert items[1]["dual_registration"]["trunk"] == "carrier"


def test_list_extensions_with_tenant_key_statements_do_not_grow(app, api, busy):
    tenant = api.as_(api.key("tenant", trunk_number=busy.trunk))
    path = f"{busy.url}/extensions"
    busy.add_extensions(SMALL)
    small = list_statements(app, tenant, path, SMALL)
    busy.add_extensions(LARGE)
    large = list_statements(app, tenant, path, LARGE)
    assert_same_count(small, large)


def test_list_ring_groups_statements_do_not_grow_with_groups(app, api, busy):
    busy.add_extensions(4)

    def grow(upto):
        # Two groups exist already; each new one gets members through an extension PATCH.
        for index in range(len(api.ok(api.get(f"{busy.url}/ring-groups"), 200)), upto):
            api.ok(api.post(f"{busy.url}/ring-groups",
                            {"number": str(610 + index), "name": f"Group {index}"}), 201)
        groups = [g["number"] for g in api.ok(api.get(f"{busy.url}/ring-groups"), 200)]
        for ext in ("200", "201"):
            api.ok(api.patch(f"{busy.url}/extensions/{ext}", {"ring_groups": groups}), 200)

    path = f"{busy.url}/ring-groups"
    grow(SMALL)
    small = list_statements(app, api, path, SMALL)
    grow(LARGE)
    large = list_statements(app, api, path, LARGE)
    assert_same_count(small, large)
    assert all(g["members"][:2] == ["200", "201"] for g in api.get(path).get_json())


def test_list_queues_statements_do_not_grow_with_queues_and_agents(app, api, busy):
    path = f"{busy.url}/queues"
    busy.add_queues(SMALL)
    small = list_statements(app, api, path, SMALL)
    busy.add_queues(LARGE)
    large = list_statements(app, api, path, LARGE)
    assert_same_count(small, large)
    queue = next(q for q in api.get(path).get_json() if q["number"] == "703")
    assert sorted((a["extension"], a["endpoint"]) for a in queue["agents"]) == [
        ("200", "home"), ("203", "remote")]


def test_list_tenants_statements_do_not_grow_with_tenants(app, api):
    reseller = api.reseller()["id"]

    def grow(upto):
        for index in range(len(api.ok(api.get("/tenants"), 200)), upto):
            api.tenant(f"Tenant {index}", reseller_id=reseller if index % 2 else None)

    grow(SMALL)
    small = list_statements(app, api, "/tenants", SMALL)
    grow(LARGE)
    large = list_statements(app, api, "/tenants", LARGE)
    assert_same_count(small, large)


def test_list_tenants_with_reseller_key_statements_do_not_grow(app, api):
    reseller = api.reseller()["id"]
    seller = api.as_(api.key("reseller", reseller_id=reseller))

    def grow(upto):
        for index in range(len(api.ok(seller.get("/tenants"), 200)), upto):
            api.tenant(f"Theirs {index}", reseller_id=reseller)
            api.tenant(f"Not theirs {index}")

    grow(SMALL)
    small = list_statements(app, seller, "/tenants", SMALL)
    grow(LARGE)
    large = list_statements(app, seller, "/tenants", LARGE)
    assert_same_count(small, large)


def test_list_api_keys_statements_do_not_grow_with_keys(app, api):
    """Tenant keys show their tenant's trunk number: loaded with the page, not per key."""
    reseller = api.reseller()["id"]
    # The platform key of the `api` fixture is listed too.
    listed = 1

    def grow(upto):
        nonlocal listed
        while listed < upto:
            if listed % 2:
                trunk = api.tenant(f"Keyed {listed}", reseller_id=reseller)["trunk_number"]
                api.key("tenant", trunk_number=trunk)
            else:
                api.key("reseller", reseller_id=reseller)
            listed += 1

    grow(SMALL)
    small = list_statements(app, api, "/api-keys", SMALL)
    grow(LARGE)
    large = list_statements(app, api, "/api-keys", LARGE)
    assert_same_count(small, large)
    assert sum(1 for k in api.get("/api-keys").get_json() if k["trunk_number"]) == LARGE // 2
