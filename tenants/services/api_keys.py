"""API keys: random, stored hashed, shown once, revocable, scoped by role."""

import datetime as dt

from sqlalchemy import or_, select
from sqlalchemy.orm import joinedload

from .. import crypto
from ..db import commit
from ..errors import Invalid, NotFound
from ..models import ApiKey, Reseller, Role, Tenant, utcnow
from ..tokens import find_by_token, touch
from ..scope import (
    Principal, can_see_reseller, get_visible_tenant, require_role, visible_tenants,
)

KEY_PREFIX = "tlk"
# Recording every use would turn every read into a write; a minute's precision is plenty.
LAST_USED_PRECISION = dt.timedelta(seconds=60)


def create_api_key(session, principal, *, role, name, reseller_id=None, trunk_number=None):
    """A new key within the caller's scope; returns (ApiKey, the key in clear)."""
    role = Role(role)
    tenant = None
    # A key never creates a key of a higher role: refused for the role (403), like
    # creating a tenant with a tenant key, whatever the rest of the body says.
    if role == Role.PLATFORM:
        require_role(principal, Role.PLATFORM)
        if reseller_id is not None or trunk_number is not None:
            raise Invalid("role", "a platform key belongs to no reseller or tenant")
    elif role == Role.RESELLER:
        require_role(principal, Role.PLATFORM, Role.RESELLER)
        if trunk_number is not None:
            raise Invalid("trunk_number", "a reseller key belongs to no tenant")
        if reseller_id is None and principal.role == Role.RESELLER:
            reseller_id = principal.reseller_id
        if reseller_id is None:
            raise Invalid("reseller_id", "required for a reseller key")
        if not can_see_reseller(principal, reseller_id) or session.get(Reseller, reseller_id) is None:
            raise Invalid("reseller_id", f"no reseller {reseller_id}")
    else:
        if reseller_id is not None:
            raise Invalid("reseller_id", "a tenant key belongs to a tenant, not a reseller")
        if trunk_number is None and principal.role == Role.TENANT:
            tenant = session.get(Tenant, principal.tenant_id)
        elif trunk_number is None:
            raise Invalid("trunk_number", "required for a tenant key")
        else:
            try:
                tenant = get_visible_tenant(session, principal, trunk_number)
            except NotFound:
                raise Invalid("trunk_number", f"no tenant {trunk_number}") from None
    token, key_id, secret_hash = crypto.generate_token(KEY_PREFIX)
    key = ApiKey(
        key_id=key_id, secret_hash=secret_hash, name=name, role=role.value,
        reseller_id=reseller_id, tenant_id=tenant.id if tenant else None,
    )
    key.tenant = tenant
    session.add(key)
    commit(session)
    return key, token


def authenticate(session, token):
    """The principal a key stands for, or None for a missing, malformed, revoked or wrong key."""
    key = find_by_token(session, ApiKey, KEY_PREFIX, token)
    if key is None:
        return None
    touch(session, key, "last_used_at", utcnow(), LAST_USED_PRECISION)
    return Principal(
        role=Role(key.role), name=key.name, key_id=key.key_id,
        reseller_id=key.reseller_id, tenant_id=key.tenant_id,
    )


def list_api_keys(principal):
    stmt = select(ApiKey).options(joinedload(ApiKey.tenant)).order_by(ApiKey.id)
    if principal.role == Role.RESELLER:
        tenant_ids = visible_tenants(principal, select(Tenant.id))
        stmt = stmt.where(or_(ApiKey.reseller_id == principal.reseller_id,
                              ApiKey.tenant_id.in_(tenant_ids)))
    elif principal.role == Role.TENANT:
        stmt = stmt.where(ApiKey.tenant_id == principal.tenant_id)
    return stmt


def get_api_key(session, principal, key_id):
    key = session.scalars(list_api_keys(principal).where(ApiKey.key_id == key_id)).one_or_none()
    if key is None:
        raise NotFound(f"API key {key_id} not found")
    return key


def revoke_api_key(session, principal, key_id):
    key = get_api_key(session, principal, key_id)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        commit(session)
    return key


