import pytest
from sqlalchemy import select

from tenants.errors import Conflict
from tenants.models import ApiKey, Role
from tenants.scope import Forbidden, Principal
from tenants.models import utcnow
from tenants.services import api_keys, audit_log, bans, resellers, tenants

from .conftest import ROOT


def test_allocated_trunk_numbers_are_five_digits_and_not_sequential(session):
    numbers = [tenants.create_tenant(session, ROOT, name=f"t{i}").trunk_number for i in range(20)]
    assert all(len(n) == 5 and 10000 <= int(n) <= 99999 for n in numbers)
    steps = {int(b) - int(a) for a, b in zip(numbers, numbers[1:])}
    assert steps != {1}


def test_allocation_falls_back_to_the_free_numbers_when_random_picks_collide(
    session, monkeypatch
):
    tenants.create_tenant(session, ROOT, name="first", trunk_number="10000")
    monkeypatch.setattr(tenants.secrets, "randbelow", lambda _n: 0)  # always picks 10000
    assert tenants.create_tenant(session, ROOT, name="second").trunk_number != "10000"


def test_a_given_trunk_number_that_is_taken_conflicts(session, tenant):
    with pytest.raises(Conflict) as err:
        tenants.create_tenant(session, ROOT, name="again", trunk_number="12345")
    assert "trunk_number" in err.value.fields


def test_reseller_creates_tenants_only_for_itself(session):
    mine = resellers.create_reseller(session, ROOT, name="Mine")
    theirs = resellers.create_reseller(session, ROOT, name="Theirs")
    as_mine = Principal(role=Role.RESELLER, name="r", reseller_id=mine.id)
    tenant = tenants.create_tenant(session, as_mine, name="Customer")
    assert tenant.reseller_id == mine.id
    from tenants.errors import Invalid

    with pytest.raises(Invalid):
        tenants.create_tenant(session, as_mine, name="Other", reseller_id=theirs.id)


def test_tenant_keys_cannot_create_tenants(session, tenant):
    as_tenant = Principal(role=Role.TENANT, name="t", tenant_id=tenant.id)
    with pytest.raises(Forbidden):
        tenants.create_tenant(session, as_tenant, name="x")


def test_reseller_with_tenants_cannot_be_deleted(session):
    reseller = resellers.create_reseller(session, ROOT, name="R")
    tenants.create_tenant(session, ROOT, name="T", reseller_id=reseller.id)
    with pytest.raises(Conflict):
        resellers.delete_reseller(session, ROOT, reseller.id)


def test_api_key_is_stored_hashed_and_authenticates_until_revoked(session, tenant):
    key, token = api_keys.create_api_key(session, ROOT, role="tenant", name="portal",
                                         trunk_number="12345")
    stored = session.scalars(select(ApiKey).where(ApiKey.id == key.id)).one()
    assert token.split(".")[1] not in stored.secret_hash
    principal = api_keys.authenticate(session, token)
    assert (principal.role, principal.tenant_id) == (Role.TENANT, tenant.id)
    assert stored.last_used_at is not None
    assert api_keys.authenticate(session, token + "x") is None
    api_keys.revoke_api_key(session, ROOT, key.key_id)
    assert api_keys.authenticate(session, token) is None


@pytest.mark.parametrize("token", [None, "", "Bearer", "tlk_nope.secret", "tlk_.x", "x" * 5000])
def test_authenticate_refuses_garbage(session, token):
    assert api_keys.authenticate(session, token) is None


def test_deleting_a_tenant_removes_its_keys(session, tenant):
    _key, token = api_keys.create_api_key(session, ROOT, role="tenant", name="portal",
                                          trunk_number="12345")
    tenants.delete_tenant(session, ROOT, "12345")
    assert api_keys.authenticate(session, token) is None


def test_a_new_tenant_never_inherits_a_deleted_tenants_audit_log_or_bans(session):
    # Audit records and bans keep a tenant's id without a foreign key: the id must never
    # be handed out again (SQLite reuses the highest id of a deleted row unless told not to).
    gone = tenants.create_tenant(session, ROOT, name="Gone", trunk_number="12345")
    now = utcnow()
    for _ in range(5):
        bans.record_failure(session, address="192.0.2.7", user_id="12345101",
                            reason="wrong_password", at=now)
    as_gone = Principal(role=Role.TENANT, name="t", tenant_id=gone.id)
    assert session.scalars(bans.list_bans(session, as_gone, now=now)).all() != []
    tenants.delete_tenant(session, ROOT, "12345")

    new = tenants.create_tenant(session, ROOT, name="New", trunk_number="23456")
    as_new = Principal(role=Role.TENANT, name="t", tenant_id=new.id)
    seen = session.scalars(audit_log.list_audit_events(session, as_new)).all()
    assert [(e.action, e.object_id) for e in seen] == [("tenant.create", "23456")]
    assert session.scalars(bans.list_bans(session, as_new, now=now)).all() == []
