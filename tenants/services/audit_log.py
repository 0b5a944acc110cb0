from sqlalchemy import or_, select

from ..models import AuditEvent, Role, Tenant
from ..scope import get_visible_tenant, visible_tenants


def list_audit_events(session, principal, *, trunk_number=None, action=None):
    """Newest first, within the caller's scope."""
    stmt = select(AuditEvent).order_by(AuditEvent.id.desc())
    if trunk_number is not None:
        tenant = get_visible_tenant(session, principal, trunk_number)
        stmt = stmt.where(AuditEvent.tenant_id == tenant.id)
    elif principal.role == Role.RESELLER:
        stmt = stmt.where(or_(
            AuditEvent.reseller_id == principal.reseller_id,
            AuditEvent.tenant_id.in_(visible_tenants(principal, select(Tenant.id))),
        ))
    elif principal.role == Role.TENANT:
        stmt = stmt.where(AuditEvent.tenant_id == principal.tenant_id)
    if action is not None:
        stmt = stmt.where(AuditEvent.action == action)
    return stmt
