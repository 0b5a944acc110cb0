"""Fixtures of the API tests: two resellers, each with one tenant, and a key for each."""

from types import SimpleNamespace

import pytest

from tenants.scope import platform_principal
from tenants.services.api_keys import create_api_key
from tenants.services.resellers import create_reseller
from tenants.services.tenants import create_tenant


def new_key(client, role, **fields):
    """A new API key in clear, created over HTTP by `client`'s key."""
    body = {"role": role, "name": f"{role} key", **fields}
    return client.ok(client.post("/api-keys", body), 201)["key"]


@pytest.fixture
def world(app, api):
    """Side A and side B: reseller, its tenant, a reseller key and a tenant key each.

    Tests put objects on side A and check that side B's keys cannot see them. Built with
    the services directly (it is the setup of most API tests, so it should be cheap).
    """
    operator = platform_principal("world")
    sides = {}
    with app.extensions["trunkline"]["sessions"]() as s:
        s.info["principal"] = operator
        for side in ("a", "b"):
            reseller = create_reseller(s, operator, name=f"Reseller {side.upper()}")
            tenant = create_tenant(s, operator, name=f"Tenant {side.upper()}",
                                   reseller_id=reseller.id)
            _, reseller_key = create_api_key(s, operator, role="reseller", name="reseller key",
                                             reseller_id=reseller.id)
            _, tenant_key = create_api_key(s, operator, role="tenant", name="tenant key",
                                           trunk_number=tenant.trunk_number)
            sides[side] = SimpleNamespace(
                reseller_id=reseller.id, trunk=tenant.trunk_number,
                keys={"reseller": reseller_key, "tenant": tenant_key},
            )
    taken = {sides["a"].trunk, sides["b"].trunk}
    missing = SimpleNamespace(
        reseller_id=max(sides["a"].reseller_id, sides["b"].reseller_id) + 1000,
        trunk=next(str(n) for n in range(99999, 10000, -1) if str(n) not in taken),
        keys={},
    )
    return SimpleNamespace(a=sides["a"], b=sides["b"], missing=missing, platform=api)


@pytest.fixture
def tenant_a(api, world):
    """A client with tenant A's key, and its trunk number as `.trunk`."""
    client = api.as_(world.a.keys["tenant"])
    client.trunk = world.a.trunk
    return client
