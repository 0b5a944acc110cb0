"""A tenant's outbound trunks: the SIP gateways that reach external numbers."""

from sqlalchemy import select

from .. import outbox
from ..db import commit
from ..errors import Conflict, NotFound
from ..models import Extension, TenantTrunk
from ..scope import get_visible_tenant


def list_trunks(session, principal, trunk_number):
    tenant = get_visible_tenant(session, principal, trunk_number)
    return select(TenantTrunk).where(TenantTrunk.tenant_id == tenant.id).order_by(TenantTrunk.name)


def _load(session, tenant, name):
    trunk = session.scalars(
        select(TenantTrunk).where(TenantTrunk.tenant_id == tenant.id, TenantTrunk.name == name)
    ).one_or_none()
    if trunk is None:
        raise NotFound(f"trunk {name!r} not found in tenant {tenant.trunk_number}")
    return trunk


def get_trunk(session, principal, trunk_number, name):
    return _load(session, get_visible_tenant(session, principal, trunk_number), name)


def _ensure_name_free(session, tenant, name):
    if session.scalar(select(TenantTrunk.id).where(
        TenantTrunk.tenant_id == tenant.id, TenantTrunk.name == name)) is not None:
        raise Conflict(f"trunk {name!r} exists already", fields={"name": ["is taken"]})


def create_trunk(session, principal, trunk_number, *, name, gateway):
    tenant = get_visible_tenant(session, principal, trunk_number)
    _ensure_name_free(session, tenant, name)
    trunk = TenantTrunk(tenant_id=tenant.id, name=name, gateway=gateway)
    trunk.tenant = tenant
    session.add(trunk)
    outbox.record_change(session, "tenant", tenant)
    commit(session, f"trunk {name!r} exists already")
    return trunk


def update_trunk(session, principal, trunk_number, name, *, new_name=None, gateway=None):
    tenant = get_visible_tenant(session, principal, trunk_number)
    trunk = _load(session, tenant, name)
    if new_name is not None and new_name != trunk.name:
        _ensure_name_free(session, tenant, new_name)
        trunk.name = new_name
        # Extensions that ring an external number through it name it in their payload.
        for ext in session.scalars(select(Extension).where(Extension.dual_trunk_id == trunk.id)):
            ext.tenant = tenant
            outbox.record_change(session, "extension", ext)
    if gateway is not None:
        trunk.gateway = gateway
    outbox.record_change(session, "tenant", tenant)
    commit(session)
    return trunk


def delete_trunk(session, principal, trunk_number, name):
    tenant = get_visible_tenant(session, principal, trunk_number)
    trunk = _load(session, tenant, name)
    users = session.scalars(
        select(Extension.number).where(Extension.dual_trunk_id == trunk.id).order_by(Extension.number)
    ).all()
    if users:
        raise Conflict(f"trunk {name!r} is used by the dual registration of extension(s) "
                       + ", ".join(users))
    session.delete(trunk)
    outbox.record_change(session, "tenant", tenant)
    commit(session)
