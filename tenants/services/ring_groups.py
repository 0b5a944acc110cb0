"""Ring groups of a tenant. Extensions subscribe to them (both endpoints ring as one)."""

from sqlalchemy import select
from sqlalchemy.orm import joinedload, selectinload

from .. import outbox
from ..db import commit
from ..errors import NotFound
from ..models import RingGroup
from ..scope import get_visible_tenant
from .dialplan import ensure_number_free

_EAGER = (joinedload(RingGroup.tenant), selectinload(RingGroup.members))


def list_ring_groups(session, principal, trunk_number):
    tenant = get_visible_tenant(session, principal, trunk_number)
    return (select(RingGroup).where(RingGroup.tenant_id == tenant.id)
            .options(*_EAGER).order_by(RingGroup.number))


def get_ring_group(session, principal, trunk_number, number):
    tenant = get_visible_tenant(session, principal, trunk_number)
    group = session.scalars(
        select(RingGroup).where(RingGroup.tenant_id == tenant.id, RingGroup.number == str(number))
        .options(*_EAGER)
    ).unique().one_or_none()
    if group is None:
        raise NotFound(f"ring group {number} not found in tenant {tenant.trunk_number}")
    return group


def create_ring_group(session, principal, trunk_number, *, number, name,
                      strategy="simultaneous", ring_seconds=20):
    tenant = get_visible_tenant(session, principal, trunk_number)
    ensure_number_free(session, tenant, number)
    group = RingGroup(tenant_id=tenant.id, number=number, name=name,
                      strategy=getattr(strategy, "value", strategy), ring_seconds=ring_seconds)
    group.tenant = tenant
    group.members = []
    session.add(group)
    outbox.record_change(session, "ring_group", group)
    commit(session, f"{number} exists already")
    return group


def update_ring_group(session, principal, trunk_number, number, **changes):
    group = get_ring_group(session, principal, trunk_number, number)
    for field in ("name", "strategy", "ring_seconds"):
        if field in changes:
            value = changes[field]
            setattr(group, field, getattr(value, "value", value))
    outbox.record_change(session, "ring_group", group)
    commit(session)
    return group


def delete_ring_group(session, principal, trunk_number, number):
    group = get_ring_group(session, principal, trunk_number, number)
    for member in group.members:
        outbox.record_change(session, "extension", member)
    outbox.record_deletion(session, "ring_group", group)
    session.delete(group)
    commit(session)
