"""Tenants: hosted customers, known publicly by their five-digit trunk number."""

import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .. import outbox
from ..db import commit
from ..edgeview import KINDS
from ..errors import Conflict, Invalid
from ..models import Reseller, Role, RingMode, Tenant
from ..scope import can_see_reseller, get_visible_tenant, require_role, visible_tenants
from .dialplan import ensure_number_free

TRUNK_MIN, TRUNK_MAX = 10000, 99999
_RANDOM_TRIES = 16


def _free_trunk_number(session):
    """A random free trunk number. Sequential numbers would let anyone who knows one
    tenant's SIP user IDs guess its neighbours'."""
    for _ in range(_RANDOM_TRIES):
        candidate = str(secrets.randbelow(TRUNK_MAX - TRUNK_MIN + 1) + TRUNK_MIN)
        if session.scalar(select(Tenant.id).where(Tenant.trunk_number == candidate)) is None:
            return candidate
    # The platform is nearly full: pick among what is left.
    used = set(session.scalars(select(Tenant.trunk_number)))
    free = [n for n in range(TRUNK_MIN, TRUNK_MAX + 1) if str(n) not in used]
    if not free:
        raise Conflict("every trunk number is taken")
    return str(secrets.choice(free))


def _check_feature_codes(session, tenant, codes):
    merged = {**tenant.feature_codes, **codes}
    if len(set(merged.values())) != len(merged):
        raise Invalid("feature_codes", "two feature codes may not be the same")
    if tenant.id is not None:
        for name, code in codes.items():
            if code != tenant.feature_codes.get(name):
                ensure_number_free(session, tenant, code, field=f"feature_codes.{name}")


def _apply_settings(session, tenant, *, feature_codes=None, dual_default_ring_mode=None):
    if feature_codes:
        _check_feature_codes(session, tenant, feature_codes)
        if "ring_mode" in feature_codes:
            tenant.ring_mode_code = feature_codes["ring_mode"]
        if "voicemail" in feature_codes:
            tenant.voicemail_code = feature_codes["voicemail"]
    if dual_default_ring_mode is not None:
        tenant.dual_default_ring_mode = RingMode(dual_default_ring_mode).value


def _owner(session, principal, reseller_id):
    if principal.role == Role.RESELLER:
        if reseller_id not in (None, principal.reseller_id):
            raise Invalid("reseller_id", f"no reseller {reseller_id}")
        return principal.reseller_id
    if reseller_id is not None and session.get(Reseller, reseller_id) is None:
        raise Invalid("reseller_id", f"no reseller {reseller_id}")
    return reseller_id


def create_tenant(session, principal, *, name, reseller_id=None, trunk_number=None,
                  feature_codes=None, dual_default_ring_mode=None):
    require_role(principal, Role.PLATFORM, Role.RESELLER)
    reseller_id = _owner(session, principal, reseller_id)
    if trunk_number is not None and session.scalar(
        select(Tenant.id).where(Tenant.trunk_number == trunk_number)
    ) is not None:
        raise Conflict(f"trunk number {trunk_number} is taken",
                       fields={"trunk_number": ["is taken"]})
    for _ in range(_RANDOM_TRIES):
        tenant = Tenant(
            name=name, reseller_id=reseller_id,
            trunk_number=trunk_number or _free_trunk_number(session),
            ring_mode_code="36", voicemail_code="*97",
            dual_default_ring_mode=RingMode.BOTH.value,
        )
        _apply_settings(session, tenant, feature_codes=feature_codes,
                        dual_default_ring_mode=dual_default_ring_mode)
        try:
            # Another transaction may have taken the same number since we looked.
            with session.begin_nested():
                session.add(tenant)
                session.flush()
        except IntegrityError:
            if trunk_number is not None:
                raise Conflict(f"trunk number {trunk_number} is taken",
                               fields={"trunk_number": ["is taken"]}) from None
            continue
        break
    else:
        raise Conflict("could not allocate a trunk number; try again")
    outbox.record_change(session, "tenant", tenant)
    commit(session, f"trunk number {tenant.trunk_number} is taken")
    return tenant


def list_tenants(principal):
    return visible_tenants(principal).order_by(Tenant.trunk_number)


def get_tenant(session, principal, trunk_number):
    return get_visible_tenant(session, principal, trunk_number)


def update_tenant(session, principal, trunk_number, *, name=None, reseller_id=..., 
                  feature_codes=None, dual_default_ring_mode=None):
    tenant = get_visible_tenant(session, principal, trunk_number, for_update=True)
    if reseller_id is not ...:
        # Moving a tenant between resellers is the platform's call.
        if not principal.is_platform and reseller_id != tenant.reseller_id:
            raise Invalid("reseller_id", "only the platform may move a tenant")
        if reseller_id is not None and (
            not can_see_reseller(principal, reseller_id) or session.get(Reseller, reseller_id) is None
        ):
            raise Invalid("reseller_id", f"no reseller {reseller_id}")
        tenant.reseller_id = reseller_id
    if name is not None:
        tenant.name = name
    _apply_settings(session, tenant, feature_codes=feature_codes,
                    dual_default_ring_mode=dual_default_ring_mode)
    outbox.record_change(session, "tenant", tenant)
    commit(session)
    return tenant


def delete_tenant(session, principal, trunk_number):
    require_role(principal, Role.PLATFORM, Role.RESELLER)
    tenant = get_visible_tenant(session, principal, trunk_number, for_update=True)
    # The database deletes the tenant's rows by cascade, behind the outbox's back: every
    # object of the tenant that the edges hold gets its own delete entry, so that no edge
    # goes on trusting the tenant's networks (or anything else it keeps by its own key).
    for kind in KINDS.values():
        if kind.model is not Tenant and "tenant_id" in kind.model.__table__.c:
            for obj in session.scalars(select(kind.model).where(kind.model.tenant_id == tenant.id)):
                outbox.record_deletion(session, kind.name, obj)
    outbox.record_deletion(session, "tenant", tenant)
    session.delete(tenant)
    commit(session)
