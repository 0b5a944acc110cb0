"""Who is asking, and what they may see.

Every query of tenant-owned data goes through :func:`visible_tenants`, so a reseller or a
tenant can never reach another's rows: what they may not see is simply not found.
"""

from dataclasses import dataclass

from sqlalchemy import select

from .errors import DomainError, NotFound
from .models import Role, Tenant


class Forbidden(DomainError):
    """The caller's role may not perform this kind of operation at all."""


@dataclass(frozen=True)
class Principal:
    role: Role
    name: str
    key_id: str | None = None
    reseller_id: int | None = None
    tenant_id: int | None = None

    @property
    def is_platform(self):
        return self.role == Role.PLATFORM

    def audit_fields(self):
        return {"actor_role": self.role.value, "actor_key_id": self.key_id, "actor_name": self.name}


def platform_principal(name):
    """The operator at the console (CLI)."""
    return Principal(role=Role.PLATFORM, name=name)


def require_role(principal, *roles):
    if principal.role not in roles:
        raise Forbidden(f"a {principal.role.value} key may not do this")


def visible_tenants(principal, stmt=None):
    """Restrict a select of tenants to those the principal may see."""
    stmt = select(Tenant) if stmt is None else stmt
    if principal.role == Role.RESELLER:
        stmt = stmt.where(Tenant.reseller_id == principal.reseller_id)
    elif principal.role == Role.TENANT:
        stmt = stmt.where(Tenant.id == principal.tenant_id)
    return stmt


def get_visible_tenant(session, principal, trunk_number, *, for_update=False):
    stmt = visible_tenants(principal).where(Tenant.trunk_number == str(trunk_number))
    if for_update:
        stmt = stmt.with_for_update()
    tenant = session.scalars(stmt).one_or_none()
    if tenant is None:
        raise NotFound(f"tenant {trunk_number} not found")
    return tenant


def can_see_reseller(principal, reseller_id):
    if principal.role == Role.PLATFORM:
        return True
    return principal.role == Role.RESELLER and principal.reseller_id == reseller_id
